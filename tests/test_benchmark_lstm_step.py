"""benchmarks/lstm_step.py's own logic: it validates before it times, and a wrong implementation
stops it with the tensor, the error and the tolerance; it prints one table, names each missing
implementation once, writes JSON only to --out and the H100 estimates only with --gpu-estimates;
the H100 figures are estimates with the shape the formula promises; the persistent kernel's launch
plan respects the chip's limits. No assertion here is about time."""
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import F64_TOL

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
    assert bench.validate(bench.Torch("torch_cpu", "cpu"), B=2, I=4, H=6, L=2, dtype="float64") <= F64_TOL


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


TINY = ["--T", "3", "--B", "1", "2", "--H", "8", "--warmup", "0", "--repeats", "1"]


@pytest.fixture
def two_missing(monkeypatch):
    """The reference and two implementations missing for one reason: the same on every machine."""
    ref = bench.Functional("numpy_ref", "cpu", ops.lstm_forward, ops.lstm_backward)
    monkeypatch.setattr(bench, "discover", lambda: [
        ("numpy_ref", ref, None), ("gpu_one", None, "no device here"), ("gpu_two", None, "no device here"),
        ("gpu_three", None, "another reason")])


def _results_dir_files():
    return sorted(p.name for p in (bench.ROOT / "benchmarks" / "results").iterdir())


def test_one_table_and_each_missing_implementation_named_once(two_missing, capsys):
    result = bench.main(TINY)
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith(bench.LEAD)]
    assert len(headers) == 1 and "fwd+bwd time ÷ torch" in headers[0]
    assert out.count("(lower=better)") == 1
    assert "unavailable: gpu_one, gpu_two: no device here\n" in out
    assert "unavailable: gpu_three: another reason\n" in out
    for name in ("gpu_one", "gpu_two", "gpu_three"):
        assert out.count(name) == 1, f"{name} appears {out.count(name)} times"
    assert out.count("unavailable") == 2
    rows = [line for line in out.splitlines() if "numpy_ref" in line and line.split()[:1] == ["3"]]
    assert [line.split()[1] for line in rows] == ["1", "2"]  # one row per configuration, once
    assert [(r["impl"], r["config"]["B"], r["status"]) for r in result["rows"]] == [
        ("numpy_ref", 1, "measured"), ("numpy_ref", 2, "measured")]
    assert all(r["validation_max_rel_error"] <= bench.TOLERANCE["float32"] for r in result["rows"])


def test_no_file_is_written_without_out(two_missing, tmp_path, monkeypatch, capsys):
    before = _results_dir_files()
    monkeypatch.chdir(tmp_path)
    bench.main(TINY)
    assert "wrote" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [] and _results_dir_files() == before


def test_out_writes_the_printed_rows_as_json(two_missing, tmp_path, capsys):
    path = tmp_path / "sub" / "lstm.json"
    result = bench.main(TINY + ["--out", str(path)])
    assert f"wrote {path}" in capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"], default=float))
    assert saved["unavailable"] == {"gpu_one": "no device here", "gpu_two": "no device here",
                                    "gpu_three": "another reason"}
    assert saved["args"]["out"] == str(path) and "estimates_h100" not in saved


def test_gpu_estimates_only_with_the_flag(two_missing, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "resource_figures", lambda tmp: {"k_f32": {
        "registers": 32, "spill_store_bytes": 0, "static_smem_bytes": 0}})
    bench.main(TINY)
    plain = capsys.readouterr().out
    assert "H100" not in plain and "registers" not in plain
    result = bench.main(TINY + ["--gpu-estimates", "--out", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    assert "On-paper H100 estimate (NOT a measurement)" in out and "k_f32" in out and "32 registers" in out
    est = json.loads((tmp_path / "e.json").read_text())["estimates_h100"]
    assert [(e["impl"], e["config"]["B"]) for e in est] == [(n, B) for B in (1, 2) for n in bench.GPU_IMPLS]
    assert all(e["basis"] == "on-paper estimate" and 0 < e["fwd_s"] < e["fwdbwd_s"] for e in est)
    assert result["estimates_h100"] == est


def test_a_wrong_implementation_stops_the_run_before_anything_is_timed(monkeypatch, capsys):
    def bad_forward(*a):
        out, state, cache = ops.lstm_forward(*a)
        return out * 1.01, state, cache

    timed = []
    monkeypatch.setattr(bench, "discover", lambda: [
        ("broken", bench.Functional("broken", "cpu", bad_forward, ops.lstm_backward), None)])
    monkeypatch.setattr(bench, "time_impl", lambda impl, *a: timed.append(impl.name))
    with pytest.raises(SystemExit, match=r"VALIDATION FAILED: broken .* out: relative error"):
        bench.main(TINY)
    assert timed == []


def test_torch_cpu_row_is_the_ratio_basis():
    pytest.importorskip("torch")
    result = bench.main(TINY + ["--impl", "numpy_ref", "torch_cpu"])
    ratios = {(r["impl"], r["config"]["B"]): r["ratio_to_torch"] for r in result["rows"]}
    assert ratios[("torch_cpu", 1)] == ratios[("torch_cpu", 2)] == 1.0
    for B in (1, 2):
        row = next(r for r in result["rows"] if r["impl"] == "numpy_ref" and r["config"]["B"] == B)
        assert ratios[("numpy_ref", B)] == row["times"]["seq_fwdbwd"] / next(
            r for r in result["rows"] if r["impl"] == "torch_cpu" and r["config"]["B"] == B)["times"]["seq_fwdbwd"]
