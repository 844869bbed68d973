/*
Persistent whole-sequence LSTM, forward and backward (Diamos et al. 2016, "Persistent RNNs"):
one launch runs all T steps, and the recurrent weights stay on chip, in shared memory, for the
whole sequence.

Why: the per-step path (kernels/kernel_set.py) re-reads W_hh (4H·H elements) from L2/HBM at
every step for a GEMM that, at small batch B, has almost no reuse. Here every block owns HS
consecutive hidden units — all four gates of them, so the pointwise math and the cell state
never leave the block — and keeps the part of W_hh those units need in shared memory. Only
h (forward) or da (backward) crosses blocks, once per step.

Grid-wide barrier: cooperative groups, cg::this_grid().sync(), once per step (step t needs all of
h_{t-1}, or all of da_{t+1}). That needs a cooperative launch (every block resident at once):
CuPy's RawModule(enable_cooperative_groups=True) launches with cuLaunchCooperativeKernel. The
launcher picks HS so that there are at most as many blocks as SMs (one block per SM).

Forward (T = n_steps; arrays C-contiguous, scalar type `real`):
  xg     (T, B, 4H)    x W_ihᵀ + b_ih + b_hh for every step: one GEMM before the launch
  w_hh   (4H, H)       PyTorch's layout, gate order (i, f, g, o)
  h_all  (T+1, B, H)   h_all[0] = h0 on entry; the kernel writes h_all[1..T] (h_all[1:] is the output)
  c_all  (T+1, B, H)   c_all[0] = c0 on entry; the kernel writes c_all[1..T]
  gates  (T, B, 4H)    out: activated (i, f, g, o)       } the cache of the recurrence driver,
  tanh_c (T, B, H)     out: tanh(c_t)                    } shared with the per-step path
  per step, block-local:  a[b, q] = xg[t, b, q] + Σ_k W_hh[q, k] h_{t-1}[b, k]  for its 4·HS rows q

Backward (the same cache; dh_{t-1} = da_t W_hh is the only thing that crosses blocks):
  dout (T, B, H), dh_n, dc_n (B, H)   upstream gradients (zeros where there are none)
  da (T, B, 4H) out: dxg = dhg of every step;  dh0, dc0 (B, H) out
  per step, block-local:  dh[b, j] = dout[t, b, j] + Σ_k da_{t+1}[b, k] W_hh[k, j]  for its HS units j
  then the pointwise backward (kernels/lstm_cell.cuh); dc stays in the block. dW_ih, dW_hh and dx
  are three big GEMMs after the launch (cuBLAS), as on the per-step path.

Both directions are "per step, a batch of small matrix-vector products out[b, r] = Σ_k W[k, r]·v[b, k]
with W on chip": Gemv below. Shared memory per block, in elements of `real`:
                       forward (R = 4·HS rows, K = H)   backward (R = HS columns, K = 4H)
  W slice  K·R         Ws[k·4HS + q], q = gate·HS + jj   Ws[k·HS + jj] = W_hh[k, j0 + jj]
  v        B·K         h_{t-1}                           da_{t+1}
  partials B·R·ksplit  dot products split over k when there are fewer tasks (b, r) than threads
  state    B·HS        c                                 dc
(W is stored k-major, so at fixed k the threads of a warp read consecutive words: no bank
conflicts; v is staged through L2 with __ldcg, since L1 is not coherent across blocks.)
Forward fits while 4·HS·H + B·H + ... <= 227 KiB (sm_90's per-block limit): float32 on 132 SMs,
H = 1024 -> HS = 8, W slice 128 KiB + 4 KiB per batch row. Backward stages da (B·4H), 4x more per
batch row, so it fits at smaller B·H; the launcher checks and says so.

Organised like kernels/lstm_pointwise.cu: every phase of a step is a __host__ __device__ function of
(block, thread); the __global__ kernels call the phases with __syncthreads() and grid.sync() between
them, and the extern "C" host functions lstm_persistent_{forward,backward}1_host_* run the same
phases block by block, thread by thread, on the CPU (tests/test_cuda_c_host.py).

version 1: the design above (one block per SM, weights in shared memory, k-split dot products).

Build the CPU test library:
  nvcc -O2 -shared -Xcompiler -fPIC -arch=sm_90 kernels/lstm_persistent.cu -o lstm_persistent.so
Registers and static shared memory (the weights are dynamic shared memory, sized at launch):
  nvcc -arch=sm_90 --resource-usage -c kernels/lstm_persistent.cu -o /dev/null
*/

#include "lstm_cell.cuh"  // lstm_unit_forward/_backward: the per-step path's per-element math

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#endif
#if !defined(__CUDACC_RTC__)
#include <vector>
#endif

// a load of data written by other blocks in this launch: through L2 on the device
template <typename real>
HD real load_cg(const real* p) {
#if defined(__CUDA_ARCH__)
    return __ldcg(p);
#else
    return *p;
#endif
}

// ----------------------------------------------------------------------------------------------
// The tiling and the shared-memory layout, the same on host and device.

struct Gemv {  // out[b, r] = Σ_k Ws[k·R + r] · vs[b·K + k] for b < B, r < R, by NT threads
    int B, R, K, NT;
    HD int ntasks() const { return B * R; }
    HD int ksplit() const { int s = NT / ntasks(); return s > 1 ? s : 1; }
    HD int chunk() const { return (K + ksplit() - 1) / ksplit(); }  // k range of one partial
    HD int nparts() const { return ntasks() * ksplit(); }
};

struct PersistentShape {
    int B, H, HS, NT;  // batch, hidden, hidden units per block, threads per block
    bool backward;
    HD Gemv gemv() const { return backward ? Gemv{B, HS, 4 * H, NT} : Gemv{B, 4 * HS, H, NT}; }
    // shared-memory offsets (elements): W | v | partials | state
    HD long off_v() const { return 4L * HS * H; }
    HD long off_part() const { return off_v() + (long)B * gemv().K; }
    HD long off_state() const { return off_part() + gemv().nparts(); }
    HD long smem_elems() const { return off_state() + (long)B * HS; }
};

// ----------------------------------------------------------------------------------------------
// Phases shared by both directions

// once: this block's slice of W_hh -> shared, k-major; the block's state (c0 or dc_n) -> shared
template <typename real>
HD void persistent_load(const PersistentShape& s, int blk, int tid, const real* w_hh, const real* state0,
                        real* smem) {
    const int H = s.H, HS = s.HS, j0 = blk * HS;
    for (long e = tid; e < 4L * HS * H; e += s.NT) {
        if (!s.backward) {  // rows q = gate·HS + jj of W_hh, element k; read along k (coalesced)
            const int q = (int)(e / H), k = (int)(e - (long)q * H);
            const int gate = q / HS, j = j0 + q - gate * HS;
            smem[(long)k * 4 * HS + q] = j < H ? w_hh[((long)gate * H + j) * H + k] : real(0);
        } else {  // columns j0 + jj of W_hh, every row k
            const int k = (int)(e / HS), jj = (int)(e - (long)k * HS), j = j0 + jj;
            smem[e] = j < H ? w_hh[(long)k * H + j] : real(0);
        }
    }
    real* st = smem + s.off_state();
    for (int e = tid; e < s.B * HS; e += s.NT) {
        const int b = e / HS, j = j0 + e - b * HS;
        st[e] = j < H ? state0[(long)b * H + j] : real(0);
    }
}

// every step: the vector every block reads (B·K, written by every block) -> shared
template <typename real>
HD void persistent_stage(const PersistentShape& s, int tid, const real* src, real* smem) {
    real* vs = smem + s.off_v();
    const long n = (long)s.B * s.gemv().K;
    for (long e = tid; e < n; e += s.NT) vs[e] = load_cg(src + e);
}

// every step: partial dot products; work item w = (k-slice sl, task = b·R + r)
template <typename real>
HD void persistent_partial_dots(const PersistentShape& s, int tid, real* smem) {
    const Gemv g = s.gemv();
    const int nt = g.ntasks(), chunk = g.chunk();
    const real* Ws = smem;
    const real* vs = smem + s.off_v();
    real* part = smem + s.off_part();
    for (int w = tid; w < g.nparts(); w += s.NT) {
        const int sl = w / nt, task = w - sl * nt, b = task / g.R, r = task - b * g.R;
        const int k0 = sl * chunk, k1 = k0 + chunk < g.K ? k0 + chunk : g.K;
        real acc = real(0);
        for (int k = k0; k < k1; ++k) acc += Ws[(long)k * g.R + r] * vs[(long)b * g.K + k];
        part[w] = acc;
    }
}

template <typename real>
HD real persistent_dot(const PersistentShape& s, const real* smem, int task) {
    const Gemv g = s.gemv();
    const real* part = smem + s.off_part();
    real acc = real(0);
    for (int sl = 0; sl < g.ksplit(); ++sl) acc += part[sl * g.ntasks() + task];
    return acc;
}

// ----------------------------------------------------------------------------------------------
// Forward: the pointwise phase of step t

template <typename real>
HD void persistent_forward_pointwise(const PersistentShape& s, int t, int blk, int tid, const real* xg,
                                     real* h_all, real* c_all, real* gates, real* tanh_c, real* smem) {
    const int H = s.H, B = s.B, HS = s.HS, j0 = blk * HS;
    real* cs = smem + s.off_state();
    for (int e = tid; e < B * HS; e += s.NT) {
        const int b = e / HS, jj = e - b * HS, j = j0 + jj;
        if (j >= H) continue;
        const long row4 = ((long)t * B + b) * 4 * H;  // (t, b) row of (T, B, 4H)
        real a[4];
        for (int gate = 0; gate < 4; ++gate)
            a[gate] = xg[row4 + gate * H + j] + persistent_dot(s, smem, b * 4 * HS + gate * HS + jj);
        real i, f, g, o, c, tc, h;
        lstm_unit_forward(a[0], a[1], a[2], a[3], cs[e], i, f, g, o, c, tc, h);
        cs[e] = c;
        const long n = ((long)(t + 1) * B + b) * H + j;  // (t+1, b, j) of (T+1, B, H)
        h_all[n] = h;
        c_all[n] = c;
        gates[row4 + j] = i;
        gates[row4 + H + j] = f;
        gates[row4 + 2 * H + j] = g;
        gates[row4 + 3 * H + j] = o;
        tanh_c[((long)t * B + b) * H + j] = tc;
    }
}

// ----------------------------------------------------------------------------------------------
// Backward: the pointwise phase of step t (t = -1: write dh0, dc0 instead)

template <typename real>
HD void persistent_backward_pointwise(const PersistentShape& s, int t, int n_steps, int blk, int tid,
                                      const real* dout, const real* dh_n, const real* gates, const real* c_all,
                                      const real* tanh_c, real* da, real* dh0, real* dc0, real* smem) {
    const int H = s.H, B = s.B, HS = s.HS, j0 = blk * HS;
    real* dcs = smem + s.off_state();
    for (int e = tid; e < B * HS; e += s.NT) {
        const int b = e / HS, jj = e - b * HS, j = j0 + jj;
        if (j >= H) continue;
        // the gradient reaching h_t from step t+1: da_{t+1} W_hh (or dh_n after the last step)
        const real carried = t == n_steps - 1 ? dh_n[(long)b * H + j] : persistent_dot(s, smem, b * HS + jj);
        if (t < 0) {
            dh0[(long)b * H + j] = carried;
            dc0[(long)b * H + j] = dcs[e];
            continue;
        }
        const long n = ((long)t * B + b) * H + j, row4 = ((long)t * B + b) * 4 * H;
        real da_i, da_f, da_g, da_o, dc_prev;
        lstm_unit_backward(dout[n] + carried, dcs[e], gates[row4 + j], gates[row4 + H + j], gates[row4 + 2 * H + j],
                           gates[row4 + 3 * H + j], c_all[n], tanh_c[n], da_i, da_f, da_g, da_o, dc_prev);
        da[row4 + j] = da_i;
        da[row4 + H + j] = da_f;
        da[row4 + 2 * H + j] = da_g;
        da[row4 + 3 * H + j] = da_o;
        dcs[e] = dc_prev;
    }
}

// ----------------------------------------------------------------------------------------------
// Kernels: the phases in order, with the barriers

#if defined(__CUDACC__)
template <typename real>
__device__ void lstm_persistent_forward1(const real* xg, const real* w_hh, real* h_all, real* c_all, real* gates,
                                         real* tanh_c, int n_steps, int B, int H, int HS) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    real* smem = reinterpret_cast<real*>(smem_raw);
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistentShape s{B, H, HS, (int)blockDim.x, false};
    const int blk = blockIdx.x, tid = threadIdx.x;
    persistent_load(s, blk, tid, w_hh, c_all, smem);  // c_all[0] = c0
    for (int t = 0; t < n_steps; ++t) {
        persistent_stage(s, tid, h_all + (long)t * B * H, smem);  // h_{t-1}
        __syncthreads();
        persistent_partial_dots(s, tid, smem);
        __syncthreads();
        persistent_forward_pointwise(s, t, blk, tid, xg, h_all, c_all, gates, tanh_c, smem);
        grid.sync();  // h_t complete (and visible) in every block before step t+1 reads it
    }
}

template <typename real>
__device__ void lstm_persistent_backward1(const real* dout, const real* dh_n, const real* dc_n, const real* gates,
                                          const real* c_all, const real* tanh_c, const real* w_hh, real* da,
                                          real* dh0, real* dc0, int n_steps, int B, int H, int HS) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    real* smem = reinterpret_cast<real*>(smem_raw);
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistentShape s{B, H, HS, (int)blockDim.x, true};
    const int blk = blockIdx.x, tid = threadIdx.x;
    persistent_load(s, blk, tid, w_hh, dc_n, smem);
    __syncthreads();
    for (int t = n_steps - 1; t >= -1; --t) {
        if (t < n_steps - 1) {
            persistent_stage(s, tid, da + (long)(t + 1) * B * 4 * H, smem);  // da_{t+1}, every block's
            __syncthreads();
            persistent_partial_dots(s, tid, smem);
            __syncthreads();
        }
        persistent_backward_pointwise(s, t, n_steps, blk, tid, dout, dh_n, gates, c_all, tanh_c, da, dh0, dc0, smem);
        if (t >= 0) grid.sync();  // da_t complete in every block before step t-1 reads it
    }
}

// grid: ceil(H / HS) blocks (<= co-resident blocks), block: NT threads,
// dynamic shared memory: lstm_persistent_smem_elems(...) * sizeof(real)
#define LSTM_PERSISTENT_KERNELS(real, SUFFIX)                                                         \
    extern "C" __global__ void lstm_persistent_forward1_##SUFFIX(                                    \
        const real* xg, const real* w_hh, real* h_all, real* c_all, real* gates, real* tanh_c,       \
        int n_steps, int B, int H, int HS) {                                                          \
        lstm_persistent_forward1<real>(xg, w_hh, h_all, c_all, gates, tanh_c, n_steps, B, H, HS);    \
    }                                                                                                 \
    extern "C" __global__ void lstm_persistent_backward1_##SUFFIX(                                   \
        const real* dout, const real* dh_n, const real* dc_n, const real* gates, const real* c_all,  \
        const real* tanh_c, const real* w_hh, real* da, real* dh0, real* dc0, int n_steps, int B,    \
        int H, int HS) {                                                                              \
        lstm_persistent_backward1<real>(dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0,  \
                                        n_steps, B, H, HS);                                           \
    }
LSTM_PERSISTENT_KERNELS(float, f32)
LSTM_PERSISTENT_KERNELS(double, f64)
#endif

// ----------------------------------------------------------------------------------------------
// The kernels' schedule on the CPU: each step runs every block's phases in turn. Blocks share
// only the staged vector, which a step reads at one time index and writes at another, so running
// the blocks one after another is equivalent to running them at once with a barrier per step.

#if !defined(__CUDACC_RTC__)
template <typename real>
void lstm_persistent_forward1_host(const real* xg, const real* w_hh, real* h_all, real* c_all, real* gates,
                                   real* tanh_c, int n_steps, int B, int H, int HS, int NT) {
    const PersistentShape s{B, H, HS, NT, false};
    const int nblocks = (H + HS - 1) / HS;
    std::vector<std::vector<real>> smem(nblocks, std::vector<real>(s.smem_elems()));
    for (int blk = 0; blk < nblocks; ++blk)
        for (int tid = 0; tid < NT; ++tid) persistent_load(s, blk, tid, w_hh, c_all, smem[blk].data());
    for (int t = 0; t < n_steps; ++t)
        for (int blk = 0; blk < nblocks; ++blk) {
            real* sm = smem[blk].data();
            for (int tid = 0; tid < NT; ++tid) persistent_stage(s, tid, h_all + (long)t * B * H, sm);
            for (int tid = 0; tid < NT; ++tid) persistent_partial_dots(s, tid, sm);
            for (int tid = 0; tid < NT; ++tid)
                persistent_forward_pointwise(s, t, blk, tid, xg, h_all, c_all, gates, tanh_c, sm);
        }
}

template <typename real>
void lstm_persistent_backward1_host(const real* dout, const real* dh_n, const real* dc_n, const real* gates,
                                    const real* c_all, const real* tanh_c, const real* w_hh, real* da, real* dh0,
                                    real* dc0, int n_steps, int B, int H, int HS, int NT) {
    const PersistentShape s{B, H, HS, NT, true};
    const int nblocks = (H + HS - 1) / HS;
    std::vector<std::vector<real>> smem(nblocks, std::vector<real>(s.smem_elems()));
    for (int blk = 0; blk < nblocks; ++blk)
        for (int tid = 0; tid < NT; ++tid) persistent_load(s, blk, tid, w_hh, dc_n, smem[blk].data());
    for (int t = n_steps - 1; t >= -1; --t)
        for (int blk = 0; blk < nblocks; ++blk) {
            real* sm = smem[blk].data();
            if (t < n_steps - 1) {
                for (int tid = 0; tid < NT; ++tid) persistent_stage(s, tid, da + (long)(t + 1) * B * 4 * H, sm);
                for (int tid = 0; tid < NT; ++tid) persistent_partial_dots(s, tid, sm);
            }
            for (int tid = 0; tid < NT; ++tid)
                persistent_backward_pointwise(s, t, n_steps, blk, tid, dout, dh_n, gates, c_all, tanh_c, da, dh0, dc0,
                                              sm);
        }
}

#define LSTM_PERSISTENT_HOST(real, SUFFIX)                                                            \
    extern "C" void lstm_persistent_forward1_host_##SUFFIX(                                          \
        const real* xg, const real* w_hh, real* h_all, real* c_all, real* gates, real* tanh_c,       \
        int n_steps, int B, int H, int HS, int NT) {                                                  \
        lstm_persistent_forward1_host<real>(xg, w_hh, h_all, c_all, gates, tanh_c, n_steps, B, H, HS, NT); \
    }                                                                                                 \
    extern "C" void lstm_persistent_backward1_host_##SUFFIX(                                         \
        const real* dout, const real* dh_n, const real* dc_n, const real* gates, const real* c_all,  \
        const real* tanh_c, const real* w_hh, real* da, real* dh0, real* dc0, int n_steps, int B,    \
        int H, int HS, int NT) {                                                                      \
        lstm_persistent_backward1_host<real>(dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0, \
                                             n_steps, B, H, HS, NT);                                  \
    }
LSTM_PERSISTENT_HOST(float, f32)
LSTM_PERSISTENT_HOST(double, f64)

// dynamic shared memory per block, in elements (kernels/lstm_cuda_c.py computes the same in Python)
extern "C" long lstm_persistent_smem_elems(int B, int H, int HS, int NT, int backward) {
    return PersistentShape{B, H, HS, NT, backward != 0}.smem_elems();
}
#endif
