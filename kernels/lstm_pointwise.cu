/*
The LSTM step's pointwise part, fused: forward and backward in one kernel each.

The reference is minis2s/ops/lstm.py (float64 NumPy); this file computes exactly the same
per-element math, in float32 and float64. Shape legend: B batch, H hidden, gate order (i, f, g, o)
as in PyTorch, every array C-contiguous.

Forward, per hidden unit (b, j), with a = xg + hg the gate pre-activations (B, 4H):
    i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)        σ(x) = ½(1 + tanh(x/2))
    c = f·c_prev + i·g;   h = o·tanh(c)
  reads  xg, hg (B, 4H), c_prev (B, H)
  writes h, c, tanh_c (B, H) and gates (B, 4H) = the activated (i, f, g, o): what backward needs.

Backward, per hidden unit, given dh (B, H) and dc_next (B, H):
    dc   = dc_next + dh·o·(1 - tanh²(c))
    da_i = dc·g·i(1-i)   da_f = dc·c_prev·f(1-f)   da_g = dc·i·(1-g²)   da_o = dh·tanh(c)·o(1-o)
    dc_prev = dc·f
  writes da (B, 4H) (the gradient of both xg and hg) and dc_prev (B, H).

How this file is organised (so the CPU can test everything but the thread indexing):
  1. the per-element math: __host__ __device__ inline templates (lstm_unit_forward/_backward),
     in kernels/lstm_cell.cuh so that the persistent kernel runs the very same code;
  2. one "element body" per kernel version: also __host__ __device__, given the element index;
  3. __global__ kernels, extern "C", one per version and dtype, that only compute the element
     index from blockIdx/threadIdx and call the body;
  4. extern "C" host functions (*_host_f32/_f64) that loop over the same element indices and
     call the same bodies: tests/test_cuda_c_host.py loads them through ctypes and checks them
     against the float64 reference.
On the GPU CuPy compiles this file with NVRTC (kernels/lstm_cuda_c.py); NVRTC defines
__CUDACC_RTC__, which leaves out the host-only part 4.

Versions (the numbering of llm.c's dev/cuda):
  version 1: one thread per hidden unit (b, j); scalar loads, coalesced along j.
  version 2: one thread per PACK = 16 / sizeof(T) consecutive units (4 floats or 2 doubles),
             16-byte loads and stores (llm.c's Packed128); needs H % PACK == 0 and 16-byte
             aligned pointers, which the launcher checks (else it uses version 1).

Build the CPU test library:
  nvcc -O2 -shared -Xcompiler -fPIC -arch=sm_90 kernels/lstm_pointwise.cu -o lstm_pointwise.so
Registers and shared memory per kernel:
  nvcc -arch=sm_90 --resource-usage -c kernels/lstm_pointwise.cu -o /dev/null
*/

#include "lstm_cell.cuh"  // 1. the per-element math, shared with kernels/lstm_persistent.cu

// ----------------------------------------------------------------------------------------------
// 2. element bodies

// version 1: element n = b·H + j of a (B, H) array; r = b·4H + j is unit j of gate i in (B, 4H).
template <typename T>
HD void lstm_forward1_element(int n, int H, const T* xg, const T* hg, const T* c_prev,
                              T* h, T* c, T* gates, T* tanh_c) {
    const int b = n / H, j = n - b * H;
    const long r = (long)b * 4 * H + j;
    T i, f, g, o;
    lstm_unit_forward(xg[r] + hg[r], xg[r + H] + hg[r + H], xg[r + 2 * H] + hg[r + 2 * H],
                      xg[r + 3 * H] + hg[r + 3 * H], c_prev[n], i, f, g, o, c[n], tanh_c[n], h[n]);
    gates[r] = i;
    gates[r + H] = f;
    gates[r + 2 * H] = g;
    gates[r + 3 * H] = o;
}

template <typename T>
HD void lstm_backward1_element(int n, int H, const T* dh, const T* dc_next, const T* gates,
                               const T* c_prev, const T* tanh_c, T* da, T* dc_prev) {
    const int b = n / H, j = n - b * H;
    const long r = (long)b * 4 * H + j;
    lstm_unit_backward(dh[n], dc_next[n], gates[r], gates[r + H], gates[r + 2 * H], gates[r + 3 * H],
                       c_prev[n], tanh_c[n], da[r], da[r + H], da[r + 2 * H], da[r + 3 * H], dc_prev[n]);
}

// version 2: 16 bytes per load/store. Pack<T> is llm.c's Packed128.
template <typename T>
struct alignas(16) Pack {
    static constexpr int size = 16 / sizeof(T);
    T v[size];
};
template <typename T>
HD Pack<T> load_pack(const T* p) { return *reinterpret_cast<const Pack<T>*>(p); }
template <typename T>
HD void store_pack(T* p, const Pack<T>& x) { *reinterpret_cast<Pack<T>*>(p) = x; }

// element p covers units n = p·PACK ... p·PACK + PACK-1, all in the same row b (H % PACK == 0)
template <typename T>
HD void lstm_forward2_element(int p, int H, const T* xg, const T* hg, const T* c_prev,
                              T* h, T* c, T* gates, T* tanh_c) {
    constexpr int P = Pack<T>::size;
    const int n = p * P, b = n / H, j = n - b * H;
    const long r = (long)b * 4 * H + j;
    Pack<T> a[4], act[4], cp = load_pack(c_prev + n), c_out, t_out, h_out;
    for (int q = 0; q < 4; ++q) {
        Pack<T> x = load_pack(xg + r + q * H), y = load_pack(hg + r + q * H);
        for (int k = 0; k < P; ++k) a[q].v[k] = x.v[k] + y.v[k];
    }
    for (int k = 0; k < P; ++k)
        lstm_unit_forward(a[0].v[k], a[1].v[k], a[2].v[k], a[3].v[k], cp.v[k], act[0].v[k], act[1].v[k],
                          act[2].v[k], act[3].v[k], c_out.v[k], t_out.v[k], h_out.v[k]);
    for (int q = 0; q < 4; ++q) store_pack(gates + r + q * H, act[q]);
    store_pack(c + n, c_out);
    store_pack(tanh_c + n, t_out);
    store_pack(h + n, h_out);
}

template <typename T>
HD void lstm_backward2_element(int p, int H, const T* dh, const T* dc_next, const T* gates,
                               const T* c_prev, const T* tanh_c, T* da, T* dc_prev) {
    constexpr int P = Pack<T>::size;
    const int n = p * P, b = n / H, j = n - b * H;
    const long r = (long)b * 4 * H + j;
    Pack<T> act[4], d[4], dcp;
    for (int q = 0; q < 4; ++q) act[q] = load_pack(gates + r + q * H);
    Pack<T> dh_ = load_pack(dh + n), dcn = load_pack(dc_next + n), cp = load_pack(c_prev + n),
            tc = load_pack(tanh_c + n);
    for (int k = 0; k < P; ++k)
        lstm_unit_backward(dh_.v[k], dcn.v[k], act[0].v[k], act[1].v[k], act[2].v[k], act[3].v[k], cp.v[k],
                           tc.v[k], d[0].v[k], d[1].v[k], d[2].v[k], d[3].v[k], dcp.v[k]);
    for (int q = 0; q < 4; ++q) store_pack(da + r + q * H, d[q]);
    store_pack(dc_prev + n, dcp);
}

// ----------------------------------------------------------------------------------------------
// 3. kernels: index arithmetic only. Launch with ceil(count / block) blocks, where count is
//    B·H (version 1) or B·H / PACK (version 2).

#define LSTM_POINTWISE_KERNELS(V, T, SUFFIX)                                                         \
    extern "C" __global__ void lstm_pointwise_forward##V##_##SUFFIX(                                 \
        const T* xg, const T* hg, const T* c_prev, T* h, T* c, T* gates, T* tanh_c, int count, int H) { \
        const int e = blockIdx.x * blockDim.x + threadIdx.x;                                         \
        if (e < count) lstm_forward##V##_element<T>(e, H, xg, hg, c_prev, h, c, gates, tanh_c);      \
    }                                                                                                \
    extern "C" __global__ void lstm_pointwise_backward##V##_##SUFFIX(                                \
        const T* dh, const T* dc_next, const T* gates, const T* c_prev, const T* tanh_c, T* da,      \
        T* dc_prev, int count, int H) {                                                              \
        const int e = blockIdx.x * blockDim.x + threadIdx.x;                                         \
        if (e < count) lstm_backward##V##_element<T>(e, H, dh, dc_next, gates, c_prev, tanh_c, da, dc_prev); \
    }

LSTM_POINTWISE_KERNELS(1, float, f32)
LSTM_POINTWISE_KERNELS(1, double, f64)
LSTM_POINTWISE_KERNELS(2, float, f32)
LSTM_POINTWISE_KERNELS(2, double, f64)

// ----------------------------------------------------------------------------------------------
// 4. host loops over the same element bodies (CPU tests through ctypes); not compiled by NVRTC

#if !defined(__CUDACC_RTC__)
#define LSTM_POINTWISE_HOST(V, T, SUFFIX)                                                            \
    extern "C" void lstm_pointwise_forward##V##_host_##SUFFIX(                                       \
        const T* xg, const T* hg, const T* c_prev, T* h, T* c, T* gates, T* tanh_c, int count, int H) { \
        for (int e = 0; e < count; ++e) lstm_forward##V##_element<T>(e, H, xg, hg, c_prev, h, c, gates, tanh_c); \
    }                                                                                                \
    extern "C" void lstm_pointwise_backward##V##_host_##SUFFIX(                                      \
        const T* dh, const T* dc_next, const T* gates, const T* c_prev, const T* tanh_c, T* da,      \
        T* dc_prev, int count, int H) {                                                              \
        for (int e = 0; e < count; ++e)                                                              \
            lstm_backward##V##_element<T>(e, H, dh, dc_next, gates, c_prev, tanh_c, da, dc_prev);    \
    }

LSTM_POINTWISE_HOST(1, float, f32)
LSTM_POINTWISE_HOST(1, double, f64)
LSTM_POINTWISE_HOST(2, float, f32)
LSTM_POINTWISE_HOST(2, double, f64)
#endif
