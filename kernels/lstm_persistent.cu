/*
Persistent whole-sequence LSTM forward (Diamos et al. 2016, "Persistent RNNs"): one launch runs
all T steps, and the recurrent weights stay on chip, in shared memory, for the whole sequence.

Why: the per-step path (kernels/lstm_cupy.py) re-reads W_hh (4H·H elements) from L2/HBM at
every step for a GEMM that, at small batch B, has almost no reuse. Here every block owns HS
consecutive hidden units — all four gates of them, so the pointwise math and c never leave the
block — and keeps their 4·HS rows of W_hh in shared memory. Only h crosses blocks: at every step
each block reads all of h_{t-1} (B·H) and writes its HS columns of h_t.

Grid-wide barrier: cooperative groups, cg::this_grid().sync(), once per step (h_t must be complete
before any block starts step t+1). That needs a cooperative launch (every block resident at
once): CuPy's RawModule(enable_cooperative_groups=True) launches with cuLaunchCooperativeKernel.
The launcher picks HS so that there are at most as many blocks as SMs (one block per SM).

Inputs (C-contiguous, T = n_steps; the scalar type is `real`):
  xg     (T, B, 4H)    x W_ihᵀ + b_ih + b_hh for every step: one GEMM before the launch
  w_hh   (4H, H)       PyTorch's layout, gate order (i, f, g, o)
  h_all  (T+1, B, H)   h_all[0] = h0 on entry; the kernel writes h_all[1..T] (h_all[1:] is the output)
  c_all  (T+1, B, H)   c_all[0] = c0 on entry; the kernel writes c_all[1..T]
Outputs also (the cache of kernels/lstm_cupy.py, so the backward is shared with the per-step path):
  gates  (T, B, 4H)    activated (i, f, g, o)
  tanh_c (T, B, H)

Shared memory per block, in elements of `real` (lstm_persistent_smem_elems):
  W slice   4·HS·H      stored transposed, Ws[k·4HS + q], q = gate·HS + jj: at fixed k the threads
                        of a warp read consecutive words (no bank conflicts)
  h_{t-1}   B·H         staged from global memory (through L2: __ldcg, L1 is not coherent)
  partials  ntasks·ksplit  dot products split over k when there are fewer (b, q) tasks than threads
  c         B·HS        the block's cell state, carried across steps
So the weights fit on chip while 4·HS·H + B·H + ... <= 227 KiB (sm_90's per-block limit), e.g.
float32, 132 SMs: H = 1024 -> HS = 8, W slice 128 KiB, plus h 4 KiB per batch row.

Organised like kernels/lstm_pointwise.cu: every phase of a step is a __host__ __device__
function of (block, thread); the __global__ kernel calls the phases with __syncthreads() and
grid.sync() between them, and the extern "C" host function lstm_persistent_forward1_host_*
runs the same phases block by block, thread by thread, on the CPU (for the tests).

version 1: the design above (one block per SM, weights in shared memory, k-split dot products).

Build the CPU test library:
  nvcc -O2 -shared -Xcompiler -fPIC -arch=sm_90 kernels/lstm_persistent.cu -o lstm_persistent.so
Registers and static shared memory (the weights are dynamic shared memory, sized at launch):
  nvcc -arch=sm_90 --resource-usage -c kernels/lstm_persistent.cu -o /dev/null
*/

#include "lstm_cell.cuh"  // lstm_unit_forward: the same per-element math as the per-step path

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

// The tiling, the same on host and device.
struct PersistentShape {
    int n_steps, B, H, HS, NT;  // steps, batch, hidden, hidden units per block, threads per block
    HD int G() const { return 4 * HS; }  // gate rows per block
    HD int ntasks() const { return B * G(); }  // dot products per step per block: (b, q)
    HD int ksplit() const { int s = NT / ntasks(); return s > 1 ? s : 1; }
    HD int chunk() const { return (H + ksplit() - 1) / ksplit(); }  // k range of one partial
    // shared-memory offsets (elements)
    HD long off_h() const { return (long)G() * H; }
    HD long off_part() const { return off_h() + (long)B * H; }
    HD long off_c() const { return off_part() + (long)ntasks() * ksplit(); }
    HD long smem_elems() const { return off_c() + (long)B * HS; }
};

// phase 0 (once): W_hh rows of this block's units -> shared (transposed); c0 -> shared
template <typename real>
HD void persistent_load(const PersistentShape& s, int blk, int tid, const real* w_hh,
                        const real* c_all, real* smem) {
    const int G = s.G(), H = s.H, j0 = blk * s.HS;
    for (long e = tid; e < (long)G * H; e += s.NT) {  // coalesced along k in global memory
        const int q = (int)(e / H), k = (int)(e - (long)q * H);
        const int gate = q / s.HS, j = j0 + q - gate * s.HS;
        smem[(long)k * G + q] = j < H ? w_hh[((long)gate * H + j) * H + k] : real(0);
    }
    real* cs = smem + s.off_c();
    for (int e = tid; e < s.B * s.HS; e += s.NT) {
        const int b = e / s.HS, j = j0 + e - b * s.HS;
        cs[e] = j < H ? c_all[(long)b * H + j] : real(0);
    }
}

// phase 1 (every step): h_{t-1} (all B·H of it, written by every block) -> shared
template <typename real>
HD void persistent_stage_h(const PersistentShape& s, int t, int tid, const real* h_all, real* smem) {
    real* hs = smem + s.off_h();
    const real* src = h_all + (long)t * s.B * s.H;
    for (int e = tid; e < s.B * s.H; e += s.NT) hs[e] = load_cg(src + e);
}

// phase 2: partial dot products. Work item w = (k-slice sl, task), task = (b, q):
//   part[w] = Σ_{k in slice sl} W[q, k] · h_{t-1}[b, k]
template <typename real>
HD void persistent_partial_dots(const PersistentShape& s, int tid, real* smem) {
    const int G = s.G(), nt = s.ntasks(), ks = s.ksplit(), chunk = s.chunk();
    const real* Ws = smem;
    const real* hs = smem + s.off_h();
    real* part = smem + s.off_part();
    for (int w = tid; w < nt * ks; w += s.NT) {
        const int sl = w / nt, task = w - sl * nt, b = task / G, q = task - b * G;
        const int k0 = sl * chunk, k1 = k0 + chunk < s.H ? k0 + chunk : s.H;
        real acc = real(0);
        for (int k = k0; k < k1; ++k) acc += Ws[(long)k * G + q] * hs[(long)b * s.H + k];
        part[w] = acc;
    }
}

// phase 3: sum the partials, add xg, the pointwise LSTM math; write h_t, c_t and the cache
template <typename real>
HD void persistent_pointwise(const PersistentShape& s, int t, int blk, int tid, const real* xg,
                             real* h_all, real* c_all, real* gates, real* tanh_c, real* smem) {
    const int G = s.G(), nt = s.ntasks(), ks = s.ksplit(), H = s.H, B = s.B, j0 = blk * s.HS;
    const real* part = smem + s.off_part();
    real* cs = smem + s.off_c();
    for (int e = tid; e < B * s.HS; e += s.NT) {
        const int b = e / s.HS, jj = e - b * s.HS, j = j0 + jj;
        if (j >= H) continue;
        const long row4 = ((long)t * B + b) * 4 * H;  // (t, b) row of (T, B, 4H)
        real a[4];
        for (int gate = 0; gate < 4; ++gate) {
            const int task = b * G + gate * s.HS + jj;
            real acc = xg[row4 + gate * H + j];
            for (int sl = 0; sl < ks; ++sl) acc += part[sl * nt + task];
            a[gate] = acc;
        }
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

#if defined(__CUDACC__)
template <typename real>
__device__ void lstm_persistent_forward1(const real* xg, const real* w_hh, real* h_all, real* c_all,
                                         real* gates, real* tanh_c, int n_steps, int B, int H, int HS) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    real* smem = reinterpret_cast<real*>(smem_raw);
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    const PersistentShape s{n_steps, B, H, HS, (int)blockDim.x};
    const int blk = blockIdx.x, tid = threadIdx.x;
    persistent_load(s, blk, tid, w_hh, c_all, smem);
    for (int t = 0; t < n_steps; ++t) {
        persistent_stage_h(s, t, tid, h_all, smem);
        __syncthreads();
        persistent_partial_dots(s, tid, smem);
        __syncthreads();
        persistent_pointwise(s, t, blk, tid, xg, h_all, c_all, gates, tanh_c, smem);
        grid.sync();  // h_t complete (and visible) in every block before step t+1 reads it
    }
}

// grid: ceil(H / HS) blocks (<= co-resident blocks), block: NT threads,
// dynamic shared memory: lstm_persistent_smem_elems(...) * sizeof(real)
#define LSTM_PERSISTENT_KERNEL(real, SUFFIX)                                                       \
    extern "C" __global__ void lstm_persistent_forward1_##SUFFIX(                                 \
        const real* xg, const real* w_hh, real* h_all, real* c_all, real* gates, real* tanh_c,    \
        int n_steps, int B, int H, int HS) {                                                       \
        lstm_persistent_forward1<real>(xg, w_hh, h_all, c_all, gates, tanh_c, n_steps, B, H, HS); \
    }
LSTM_PERSISTENT_KERNEL(float, f32)
LSTM_PERSISTENT_KERNEL(double, f64)
#endif

#if !defined(__CUDACC_RTC__)
// The kernel's schedule on the CPU: each step runs every block's phases in turn. Blocks only
// share h_all, which step t reads at row t and writes at row t+1, so running blocks one after
// another is equivalent to running them at once with a barrier at the end of the step.
template <typename real>
void lstm_persistent_forward1_host(const real* xg, const real* w_hh, real* h_all, real* c_all,
                                   real* gates, real* tanh_c, int n_steps, int B, int H, int HS, int NT) {
    const PersistentShape s{n_steps, B, H, HS, NT};
    const int nblocks = (H + HS - 1) / HS;
    std::vector<std::vector<real>> smem(nblocks, std::vector<real>(s.smem_elems()));
    for (int blk = 0; blk < nblocks; ++blk)
        for (int tid = 0; tid < NT; ++tid) persistent_load(s, blk, tid, w_hh, c_all, smem[blk].data());
    for (int t = 0; t < n_steps; ++t)
        for (int blk = 0; blk < nblocks; ++blk) {
            real* sm = smem[blk].data();
            for (int tid = 0; tid < NT; ++tid) persistent_stage_h(s, t, tid, h_all, sm);
            for (int tid = 0; tid < NT; ++tid) persistent_partial_dots(s, tid, sm);
            for (int tid = 0; tid < NT; ++tid)
                persistent_pointwise(s, t, blk, tid, xg, h_all, c_all, gates, tanh_c, sm);
        }
}

extern "C" void lstm_persistent_forward1_host_f32(const float* xg, const float* w_hh, float* h_all,
                                                  float* c_all, float* gates, float* tanh_c, int n_steps,
                                                  int B, int H, int HS, int NT) {
    lstm_persistent_forward1_host<float>(xg, w_hh, h_all, c_all, gates, tanh_c, n_steps, B, H, HS, NT);
}
extern "C" void lstm_persistent_forward1_host_f64(const double* xg, const double* w_hh, double* h_all,
                                                  double* c_all, double* gates, double* tanh_c, int n_steps,
                                                  int B, int H, int HS, int NT) {
    lstm_persistent_forward1_host<double>(xg, w_hh, h_all, c_all, gates, tanh_c, n_steps, B, H, HS, NT);
}

// dynamic shared memory per block, in elements (kernels/lstm_cupy.py computes the same in Python)
extern "C" long lstm_persistent_smem_elems(int B, int H, int HS, int NT) {
    return PersistentShape{1, B, H, HS, NT}.smem_elems();
}
#endif
