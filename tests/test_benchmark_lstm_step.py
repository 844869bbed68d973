"""benchmarks/lstm_step.py's own logic: it validates before it times, and a wrong implementation
stops it with the tensor, the error and the tolerance; the H100 figures are estimates with the
shape the formula promises; the persistent kernel's launch plan respects the chip's limits."""
import importlib.util
from pathlib import Path

import pytest

from minis2s import ops

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "lstm_step.py"
spec = importlib.util.spec_from_file_location("lstm_step", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_implementation_validates_with_two_layers(dtype):
    impl = bench.Functional("numpy_ref", "cpu", ops.lstm_forward, ops.lstm_backward)
    assert bench.validate(impl, B=3, I=5, H=8, L=2, dtype=dtype) <= bench.TOLERANCE[dtype]


def test_torch_cpu_validates():
    pytest.importorskip("torch")
    assert bench.validate(bench.Torch("torch_cpu", "cpu"), B=2, I=4, H=6, L=2, dtype="float64") <= 1e-9


def test_a_wrong_backward_stops_the_benchmark_naming_the_tensor():
    def bad_backward(dout, dh_n, dc_n, cache):
        grads = list(ops.lstm_backward(dout, dh_n, dc_n, cache))
        grads[4] = grads[4] * 1.001  # dw_hh off by 0.1%
        return tuple(grads)

    impl = bench.Functional("broken", "cpu", ops.lstm_forward, bad_backward)
    with pytest.raises(SystemExit, match=r"VALIDATION FAILED: broken .* dw_hh_l0: relative error"):
        bench.validate(impl, B=2, I=3, H=4, L=1, dtype="float64")


def test_estimates_grow_with_the_problem_and_the_persistent_forward_is_cheaper_at_batch_1():
    small = bench.estimate_h100("cupy_cuda_c", 32, 1, 512, 512, 1, 4)
    large = bench.estimate_h100("cupy_cuda_c", 32, 64, 1024, 1024, 1, 4)
    persistent = bench.estimate_h100("persistent", 32, 1, 512, 512, 1, 4)
    assert 0 < small[0] < small[1] and large[0] > small[0] and large[1] > small[1]
    assert persistent[0] < small[0]


def test_persistent_plan_on_an_h100_fits_h1024_at_batch_8_but_not_h2048():
    fit = {(r["H"], r["B"]): r for r in bench.persistent_fit([1, 8])}
    assert fit[(1024, 8)]["fits"] and not fit[(2048, 1)]["fits"]
    for r in fit.values():
        assert r["blocks"] <= bench.H100["sms"]
        assert r["fits"] == (r["smem_bytes"] <= bench.H100["smem_bytes_per_block"])


def test_gemm_flops_follow_deepbench_basis():
    T, B, H = 25, 64, 512
    assert bench.gemm_flops(T, B, H, H, 1) == 16 * T * B * H * H
    assert bench.gemm_flops(T, B, 3, H, 2) == 8 * T * B * H * (3 + H) + 8 * T * B * H * 2 * H
