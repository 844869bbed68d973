"""The CUDA C kernels proven on the CPU, without a GPU.

Every .cu file is compiled with nvcc twice: ``--resource-usage -c`` for sm_90 (the device code
compiles, and no kernel spills registers), and ``-shared`` into a temporary library whose
``extern "C"`` host loops run the *same* ``__host__ __device__`` element bodies as the
``__global__`` kernels. Those host loops, called through ctypes, are checked against the float64
reference: float32 within 1e-5 relative, float64 within 1e-12. What stays untested without a
device is only each ``__global__`` wrapper's line of index arithmetic (blockIdx·blockDim +
threadIdx -> element) and, for the persistent kernels, the barriers themselves: their host twins
run the same phases block by block, which is what the barriers make the device do.

The recurrence driver runs the kernel sets here too (kernels/kernel_set.py), on NumPy arrays
with the host twins as its kernel set: GEMMs, masks and the backward's bookkeeping are the
GPU path's code.
"""
import numpy as np
import pytest
from minis2s.kernels import cuda_host, lstm_cuda_c
from minis2s.kernels.harness import (
    check_kernel_set,
    check_pointwise_backward,
    check_pointwise_forward,
)

pytestmark = pytest.mark.skipif(cuda_host.nvcc_path() is None,
                                reason="nvcc not found: the CUDA C sources cannot be compiled here")

DTYPES = [np.float32, np.float64]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
EXPECTED_KERNELS = {
    "lstm_pointwise": [f"lstm_pointwise_{d}{v}_{s}" for d in ("forward", "backward") for v in (1, 2)
                       for s in ("f32", "f64")],
    "lstm_persistent": [f"lstm_persistent_{d}1_{s}" for d in ("forward", "backward") for s in ("f32", "f64")],
}


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """{stem: path of the .so} for every .cu file, built once for this module."""
    out = tmp_path_factory.mktemp("cuda_host")
    return {f.stem: cuda_host.build_shared_library(f, out) for f in cuda_host.cu_files()}


def test_kernel_directory_holds_the_cuda_sources():
    assert sorted(f.stem for f in cuda_host.cu_files()) == sorted(EXPECTED_KERNELS)


@pytest.mark.parametrize("cu", sorted(EXPECTED_KERNELS))
def test_cu_file_compiles_for_sm90_with_no_register_spills(cu):
    usage = cuda_host.resource_usage(cuda_host.KERNEL_DIR / f"{cu}.cu")
    assert sorted(usage) == sorted(EXPECTED_KERNELS[cu]), f"kernels reported by nvcc: {sorted(usage)}"
    for name, u in usage.items():
        assert u["spill_store_bytes"] == 0 and u["spill_load_bytes"] == 0, f"{name} spills: {u}"
        assert u["registers"] <= 255, f"{name}: {u}"


# (B, H): one unit; H not a multiple of 4 (version 1 only); several rows
SHAPES_V1 = [(1, 1), (2, 5), (3, 8), (4, 33)]
SHAPES_V2 = [(1, 4), (3, 8), (5, 12), (2, 64)]


def _shapes(version):
    return SHAPES_V1 if version == 1 else SHAPES_V2


@dtypes
@pytest.mark.parametrize("version", [1, 2])
def test_pointwise_forward_host_matches_reference(libs, version, dtype, rng):
    kernels = cuda_host.HostKernels(dtype, libs["lstm_pointwise"], version)
    for B, H in _shapes(version):
        check_pointwise_forward(kernels, dtype, B, H, rng)


@dtypes
@pytest.mark.parametrize("version", [1, 2])
def test_pointwise_backward_host_matches_reference(libs, version, dtype, rng):
    kernels = cuda_host.HostKernels(dtype, libs["lstm_pointwise"], version)
    for B, H in _shapes(version):
        check_pointwise_backward(kernels, dtype, B, H, rng)


def test_pointwise_version2_refuses_h_not_a_multiple_of_the_pack(libs):
    kernels = cuda_host.HostKernels(np.float32, libs["lstm_pointwise"], 2)
    with pytest.raises(ValueError, match="H % 4 == 0"):
        check_pointwise_forward(kernels, np.float32, 2, 6, np.random.default_rng(0))


@dtypes
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", ["all_grads", "no_dout", "no_state_grads", "lengths"])
def test_sequence_driver_with_host_kernels_matches_reference(libs, version, dtype, case, rng):
    kernels = cuda_host.HostKernels(dtype, libs["lstm_pointwise"], version)
    T, B, I, H = 5, 3, 6, 8
    upstream = {"no_dout": ("dh_n", "dc_n"), "no_state_grads": ("dout",)}.get(case, ("dout", "dh_n", "dc_n"))
    lengths = np.array([5, 2, 4]) if case == "lengths" else None
    check_kernel_set(kernels, dtype, T, B, I, H, rng, lengths=lengths, upstream=upstream)


# (T, B, H, HS, NT): the persistent kernel's tilings, run block by block on the CPU
PERSISTENT_TILINGS = [
    (6, 3, 10, 4, 256),  # 3 blocks, the last one half empty; k split 5 ways, chunks uneven
    (4, 2, 16, 4, 32),  # 32 tasks = 32 threads: no k split
    (3, 5, 12, 2, 16),  # 40 tasks > 16 threads: each thread loops over tasks
    (5, 1, 64, 1, 256),  # batch 1, one unit per block (64 blocks), k split 64 ways
    (2, 4, 24, 24, 128),  # one block holds every unit
]


@dtypes
@pytest.mark.parametrize("upstream", [("dout", "dh_n", "dc_n"), ("dh_n", "dc_n"), ("dout",)],
                         ids=["all_grads", "no_dout", "no_state_grads"])
@pytest.mark.parametrize("tiling", PERSISTENT_TILINGS, ids=lambda t: "T{}B{}H{}HS{}NT{}".format(*t))
def test_persistent_forward_and_backward_host_match_reference(libs, tiling, upstream, dtype, rng):
    """Both directions run as the persistent kernels' schedule (block by block, thread by thread)."""
    T, B, H, HS, NT = tiling
    kernels = cuda_host.HostKernels(dtype, libs["lstm_pointwise"], 1, libs["lstm_persistent"], HS=HS, NT=NT)
    assert kernels.sequence_forward is not None and kernels.sequence_backward is not None
    check_kernel_set(kernels, dtype, T, B, 7, H, rng, upstream=upstream)


def test_persistent_kernels_with_lengths_take_the_per_step_path(libs, rng):
    """The persistent kernels have no padding mask: with lengths the driver runs per step."""
    kernels = cuda_host.HostKernels(np.float64, libs["lstm_pointwise"], 1, libs["lstm_persistent"], HS=2, NT=32)
    check_kernel_set(kernels, np.float64, 4, 3, 5, 6, rng, lengths=np.array([4, 1, 3]))


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("B,H,HS,NT", [(1, 512, 4, 256), (8, 1024, 8, 256), (3, 10, 4, 32), (64, 256, 2, 256)])
def test_persistent_shared_memory_formula_is_the_same_in_python_and_c(libs, B, H, HS, NT, backward):
    c_side = cuda_host.persistent_smem_elems_host(libs["lstm_persistent"], B, H, HS, NT, backward)
    assert lstm_cuda_c.persistent_smem_elems(B, H, HS, NT, backward) == c_side


def test_persistent_tiling_puts_at_most_one_block_on_each_sm():
    for H in (1, 100, 256, 512, 1000, 1024, 4096):
        HS, blocks = lstm_cuda_c.persistent_tiling(H, 132)
        assert blocks <= 132 and (blocks - 1) * HS < H <= blocks * HS


def test_host_kernels_refuse_non_contiguous_arrays(libs):
    kernels = cuda_host.HostKernels(np.float64, libs["lstm_pointwise"], 1)
    a = np.zeros((2, 16))
    with pytest.raises(TypeError, match="C-contiguous"):
        kernels.pointwise_forward(a, a, a[:, ::4], a[:, :4], a[:, :4], a, a[:, :4])
