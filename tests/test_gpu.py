"""The GPU paths on a GPU: CuPy + CUDA C, Numba CUDA on CuPy arrays, the persistent kernel, the
whole model with device="cuda", and PyTorch on CUDA as a second reference.

Every test needs CuPy and a device and skips with the reason otherwise, except the one that
checks what a machine without them is told. The kernels are checked with the same harness as
their CPU twins (kernels/harness.py: float32 within 1e-5, float64 within 1e-12 of the
float64 reference; the GPU contracts a·b + c into FMAs, which stays well inside both).
"""
import numpy as np
import pytest
from conftest import F32_TOL, F64_TOL, check_close
from minis2s.kernels.harness import check_kernel_set, check_pointwise_backward, check_pointwise_forward

from minis2s.backend import get_backend, to_numpy


def _gpu_status():
    try:
        get_backend("cuda")
    except RuntimeError as e:
        return str(e)
    return None


NO_GPU = _gpu_status()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no CuPy GPU: {NO_GPU}")
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present: the error path is not reachable")
def test_cuda_paths_without_a_gpu_say_what_is_missing():
    from minis2s.kernels import lstm_cuda_c

    from minis2s import Decoder, Encoder, Seq2Seq

    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        lstm_cuda_c.CudaCKernels()
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        lstm_cuda_c.default_steps()
    with pytest.raises(RuntimeError, match="CuPy|GPU"):
        Seq2Seq(Encoder(5, 4, 3, 1), Decoder(6, 4, 3, 1), "cuda")


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


@pytest.fixture(scope="module")
def cuda_c():
    from minis2s.kernels import lstm_cuda_c

    return {v: lstm_cuda_c.CudaCKernels(version=v) for v in (1, 2)}


@pytest.fixture(scope="module")
def persistent():
    from minis2s.kernels import lstm_cuda_c

    return lstm_cuda_c.CudaCKernels(persistent=True)


@pytest.fixture(scope="module")
def numba_kernels():
    pytest.importorskip("numba.cuda", reason="Numba is not installed")
    from minis2s.kernels import lstm_numba_cuda

    return lstm_numba_cuda.NumbaKernels()


SHAPES = [(1, 1), (2, 5), (3, 8), (64, 512), (7, 1030)]  # H % 4 != 0 falls back to version 1


@needs_gpu
@dtypes
@pytest.mark.parametrize("version", [1, 2])
def test_cuda_c_pointwise_matches_reference(cp, cuda_c, version, dtype, rng):
    for B, H in SHAPES:
        check_pointwise_forward(cuda_c[version], dtype, B, H, rng, xp=cp)
        check_pointwise_backward(cuda_c[version], dtype, B, H, rng, xp=cp)


@needs_gpu
@dtypes
def test_numba_pointwise_on_cupy_arrays_matches_reference(cp, numba_kernels, dtype, rng):
    for B, H in SHAPES:
        check_pointwise_forward(numba_kernels, dtype, B, H, rng, xp=cp)
        check_pointwise_backward(numba_kernels, dtype, B, H, rng, xp=cp)


@needs_gpu
@dtypes
@pytest.mark.parametrize("case", ["all_grads", "lengths"])
def test_cuda_c_sequence_matches_reference(cp, cuda_c, dtype, case, rng):
    lengths = np.array([7, 1, 4]) if case == "lengths" else None
    check_kernel_set(cuda_c[2], dtype, 7, 3, 10, 16, rng, xp=cp, lengths=lengths)


@needs_gpu
@dtypes
def test_numba_sequence_on_cupy_arrays_matches_reference(cp, numba_kernels, dtype, rng):
    check_kernel_set(numba_kernels, dtype, 7, 3, 10, 16, rng, xp=cp)


@needs_gpu
@pytest.mark.parametrize("B,H", [(1, 8), (1, 512), (8, 512), (8, 1024), (3, 200)])
def test_persistent_forward_backward_match_reference(cp, persistent, B, H, rng):
    # float32 over T = 16 steps at H = 1024: F32_TOL (the sequence tolerance of the torch tests)
    check_kernel_set(persistent, np.float32, 16, B, 32, H, rng, xp=cp, tol=F32_TOL)
    assert persistent.last_path["forward"] == "persistent"
    expected = "persistent" if persistent.persistent_plan(B, H, 4, backward=True)["fits"] else "per-step"
    assert persistent.last_path["backward"].startswith(expected)


@needs_gpu
def test_persistent_float64_matches_reference(cp, persistent, rng):
    check_kernel_set(persistent, np.float64, 6, 4, 8, 128, rng, xp=cp)
    assert persistent.last_path == {"forward": "persistent", "backward": "persistent"}


@needs_gpu
def test_persistent_falls_back_per_step_when_the_state_does_not_fit(cp, persistent, rng):
    B, H = 256, 1024
    assert not persistent.persistent_plan(B, H, 4)["fits"]
    check_kernel_set(persistent, np.float32, 3, B, 8, H, rng, xp=cp, tol=F32_TOL)
    assert persistent.last_path["forward"].startswith("per-step")


@needs_gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cupy_lstm_matches_torch_cuda(cp, dtype, rng):
    """The GPU path (kernels/lstm_cuda_c.py's steps through the driver) against torch.nn.LSTM on the GPU (cuDNN): outputs and grads."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from minis2s.kernels import lstm_cuda_c

    torch.backends.cudnn.allow_tf32 = False  # TF32 would differ by ~1e-3 (10-bit mantissa)
    torch.backends.cuda.matmul.allow_tf32 = False
    T, B, I, H = 9, 4, 12, 32
    np_dtype, tol = (np.float64, F64_TOL) if dtype == "float64" else (np.float32, F32_TOL)
    tdt = getattr(torch, dtype)
    lstm = torch.nn.LSTM(I, H).to("cuda", tdt)
    x = torch.tensor(rng.standard_normal((T, B, I)), dtype=tdt, device="cuda", requires_grad=True)
    h0 = torch.tensor(rng.standard_normal((1, B, H)), dtype=tdt, device="cuda", requires_grad=True)
    c0 = torch.tensor(rng.standard_normal((1, B, H)), dtype=tdt, device="cuda", requires_grad=True)
    out_t, (hn_t, cn_t) = lstm(x, (h0, c0))
    dout = rng.standard_normal((T, B, H))
    out_t.backward(torch.tensor(dout, dtype=tdt, device="cuda"))

    def dev(t):
        return cp.asarray(t.detach().cpu().numpy().astype(np_dtype))

    w = [dev(getattr(lstm, n)) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    from minis2s import ops

    steps = lstm_cuda_c.default_steps()
    out, (hn, cn), cache = ops.lstm_forward(dev(x), dev(h0[0]), dev(c0[0]), *w, steps=steps)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = ops.lstm_backward(cp.asarray(dout.astype(np_dtype)), None, None,
                                                                 cache)
    pairs = {"out": (out, out_t), "h_n": (hn, hn_t[0]), "c_n": (cn, cn_t[0]), "dx": (dx, x.grad),
             "dh0": (dh0, h0.grad[0]), "dc0": (dc0, c0.grad[0]), "dw_ih": (dw_ih, lstm.weight_ih_l0.grad),
             "dw_hh": (dw_hh, lstm.weight_hh_l0.grad), "db_ih": (db_ih, lstm.bias_ih_l0.grad),
             "db_hh": (db_hh, lstm.bias_hh_l0.grad)}
    for name, (ours, ref) in pairs.items():
        check_close(name, to_numpy(ours), ref.detach().cpu().numpy(), tol)


@needs_gpu
def test_seq2seq_on_cuda_matches_cpu_float64(cp):
    """The whole model on CuPy arrays: Seq2Seq(enc, dec, "cuda") gives the CPU model's loss, every
    parameter gradient, and the same parameters after an Adam step and a clipped SGD step."""
    from minis2s import Decoder, Encoder, Seq2Seq, manual_seed, optim
    from minis2s.nn import CrossEntropyLoss

    def build(device):
        manual_seed(0)
        enc = Encoder(11, 16, 8, 2, dropout=0.0, dtype=np.float64)
        dec = Decoder(13, 16, 8, 2, dropout=0.0, dtype=np.float64)
        return Seq2Seq(enc, dec, device)

    rng = np.random.default_rng(5)
    src = rng.integers(0, 11, (6, 4))
    trg = rng.integers(0, 13, (5, 4))
    results = {}
    for device in ("cpu", "cuda"):
        model = build(device)
        xp = model.xp
        assert xp.__name__ == ("cupy" if device == "cuda" else "numpy")
        assert model.device == device and model.to("cpu").device == "cpu" and model.to(device).device == device
        loss_fn = CrossEntropyLoss()
        opt = optim.Adam(model.parameters(), lr=1e-2)
        out = model(xp.asarray(src), xp.asarray(trg), 0.5, generator=np.random.default_rng(1))
        V = out.shape[2]
        loss = loss_fn(out[1:].reshape(-1, V), xp.asarray(trg[1:]).reshape(-1))
        dout = xp.zeros_like(out)  # (T, B, V); row 0 is never predicted
        dout[1:] = loss_fn.backward().reshape(out[1:].shape)
        model.backward(dout)
        grads = {k: to_numpy(p.grad) for k, p in model.named_parameters()}
        optim.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        results[device] = (loss, grads, {k: to_numpy(p.data) for k, p in model.named_parameters()})
    check_close("loss", results["cuda"][0], results["cpu"][0], F64_TOL)
    for k in results["cpu"][1]:
        check_close(f"grad {k}", results["cuda"][1][k], results["cpu"][1][k], F64_TOL)
        check_close(f"after step {k}", results["cuda"][2][k], results["cpu"][2][k], F64_TOL)
