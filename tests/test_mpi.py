"""Data-parallel training over MPI computes what one process computes (issue 17).

- ``mpiexec -n 2`` and ``-n 4`` (oversubscribed on 2 cores: MPICH needs no flag) train the
  same 20 steps as one process — float64, dropout 0, a small attention model on dates — and
  end with the same weights within 1e-12 relative: only the order of the gradient sums differs
  (measured: ~3e-16; printed with ``-s``). The dev metrics are the same.
- Two runs with the same N are bit-identical (weights and Adam's moments).
- A run stopped at step 10 under 2 ranks and resumed under 4 matches the uninterrupted
  one-process run within 1e-12 (the run state is global).
- The collectives and the NCCL path without a GPU (tests/mpi_checks.py under mpiexec -n 3).
- Without MPI: the shards' gradients, each scaled by the whole batch's token count, sum to the
  batch's gradient (1e-12); a plain python never imports mpi4py; launched as one of N processes
  without mpi4py is a clear error.
Skipped, with the reason, when mpi4py or mpiexec is missing (``pip install "minis2s[mpi]"``).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAME_SUMS_F64, check_close

from minis2s import DataConfig, ModelConfig, Seq2SeqTask
from minis2s.checkpoint import read_model_dir
from minis2s.data.examples import dates
from minis2s.gradcheck import rel_error
from minis2s.nn import CrossEntropyLoss
from minis2s.training.distributed import Communicator, block, launched_size
from minis2s.training.trainer import loss_and_grad

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401

    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not (HAVE_MPI4PY and MPIEXEC),
                               reason="needs mpi4py and mpiexec: pip install 'minis2s[mpi]' (mpi4py + the mpich wheel)")

TRAIN_ARGS = ["--train", "data/train.tsv", "--dev", "data/dev.tsv", "--arch", "attention", "--hidden", "16",
              "--layers", "1", "--embedding", "8", "--batch-size", "30", "--epochs", "2", "--dropout", "0",
              "--dtype", "float64", "--lr", "3e-3", "--checkpoint-every", "5", "--quiet"]


def _env():
    pythonpath = [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(pythonpath))
    for key in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):  # pytest itself may run under a launcher
        env.pop(key, None)
    return env


def run(n, *args, cwd):
    """``python -m minis2s ARGS`` alone (n = 0) or under ``mpiexec -n N``."""
    cmd = [sys.executable, "-m", "minis2s", *args]
    if n:
        cmd = [MPIEXEC, "-n", str(n), *cmd]
    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, f"{' '.join(cmd)}: exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p


def weights(folder):
    return read_model_dir(folder)[1]


def max_rel_difference(a, b) -> float:
    assert a.keys() == b.keys()
    return max(rel_error(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, 2 ranks (twice), 4 ranks: 20 steps each (an epoch is 12 steps: 360 pairs
    / 30, so the run crosses an epoch end and its dev evaluation); and 2 ranks stopped at step
    10, then resumed under 4 to step 20."""
    d = tmp_path_factory.mktemp("mpi")
    (d / "data").mkdir()
    pairs = dates(400, seed=3)
    (d / "data" / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs[:360]))
    (d / "data" / "dev.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs[360:]))
    out = {}
    for name, n in (("n1", 0), ("n2", 2), ("n2-again", 2), ("n4", 4)):
        out[name] = run(n, "train", *TRAIN_ARGS, "--out", name, "--max-steps", "20", cwd=d)
    run(2, "train", *TRAIN_ARGS, "--out", "resumed", "--max-steps", "10", cwd=d)
    out["resumed"] = run(4, "train", "--out", "resumed", "--resume", "--max-steps", "20", "--quiet", cwd=d)
    return d, out


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
def test_n_ranks_train_the_weights_of_one_process_float64(runs, n):
    d, _ = runs
    one, many = weights(d / "n1" / "last"), weights(d / f"n{n}" / "last")
    err = max_rel_difference(one, many)
    print(f"\n-n {n} vs one process after 20 steps: max relative difference {err:.2e}")
    for k in one:
        check_close(f"-n {n} {k}", many[k], one[k], SAME_SUMS_F64)
    assert json.loads((d / f"n{n}" / "last" / "model.json").read_text())["step"] == 20


@needs_mpi
def test_n_ranks_log_the_metrics_of_one_process(runs):
    d, out = runs
    one = [json.loads(line) for line in (d / "n1" / "metrics.jsonl").read_text().splitlines()]
    for n in (2, 4):
        many = [json.loads(line) for line in (d / f"n{n}" / "metrics.jsonl").read_text().splitlines()]
        assert len(many) == len(one) == 1
        for key in ("dev_exact", "dev_wer", "dev_cer", "dev_bleu", "dev_chrf", "step", "epoch"):
            assert many[0][key] == one[0][key], (n, key, many[0][key], one[0][key])
        assert abs(many[0]["train_loss"] - one[0]["train_loss"]) <= SAME_SUMS_F64 * one[0]["train_loss"]
        # rank 0 alone speaks: one line per epoch, one report
        assert out[f"n{n}"].stderr.count("epoch=1 ") == 1 and out[f"n{n}"].stdout.count("best dev") == 1


@needs_mpi
def test_two_runs_with_the_same_number_of_ranks_are_bit_identical(runs):
    d, _ = runs
    a, b = weights(d / "n2" / "last"), weights(d / "n2-again" / "last")
    assert all(np.array_equal(a[k], b[k]) for k in a), [k for k in a if not np.array_equal(a[k], b[k])]
    from minis2s.safetensors import load_file

    ma = load_file(str(d / "n2" / "checkpoints" / "step-00000020" / "optimizer.safetensors"))
    mb = load_file(str(d / "n2-again" / "checkpoints" / "step-00000020" / "optimizer.safetensors"))
    assert ma.keys() == mb.keys() and all(np.array_equal(ma[k], mb[k]) for k in ma)


@needs_mpi
def test_a_run_stopped_under_2_ranks_resumes_under_4_as_if_never_stopped(runs):
    d, out = runs
    assert "resumed" in out["resumed"].stderr and "from step 10" in out["resumed"].stderr
    err = max_rel_difference(weights(d / "n1" / "last"), weights(d / "resumed" / "last"))
    print(f"\nstopped at 10 under -n 2, resumed under -n 4 to 20, vs one process: max relative difference {err:.2e}")
    assert err <= SAME_SUMS_F64


@needs_mpi
def test_collectives_and_the_nccl_path_without_a_gpu():
    p = subprocess.run([MPIEXEC, "-n", "3", sys.executable, os.path.join(REPO, "tests", "mpi_checks.py")],
                       env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0 and p.stdout.strip() == "ok", f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"


# ---- without MPI --------------------------------------------------------------------------
def test_shards_scaled_by_the_whole_batch_tokens_sum_to_the_batch_gradient_float64():
    pairs = dates(120, seed=5)
    task = Seq2SeqTask(pairs[:100], pairs[100:], data=DataConfig(tokens="char"),
                       model=ModelConfig(arch="attention", hidden=12, layers=1, embedding=6, dropout=0.0,
                                         dtype="float64"))
    model = task.build_model()
    batch = task.train_batches(np.random.default_rng(0), 23)[0]
    loss_fn = CrossEntropyLoss(ignore_index=task.pad_id)
    whole = loss_and_grad(model, batch, loss_fn, 0.5, np.random.default_rng(7))
    expected = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    tokens = int((batch.trg[1:] != task.pad_id).sum())
    total = 0.0
    for r in range(3):  # three shards, each with the coins one process drew
        lo, hi = block(batch.size, r, 3)
        total += loss_and_grad(model, batch.take(np.arange(lo, hi)), loss_fn, 0.5, np.random.default_rng(7),
                               tokens=tokens)
    assert abs(total - whole) <= SAME_SUMS_F64 * whole
    for n, p in model.named_parameters():
        check_close(n, p.grad, expected[n], SAME_SUMS_F64)


def test_blocks_cover_every_column_once():
    for n in range(12):
        for size in range(1, 6):
            cols = [c for r in range(size) for c in range(*block(n, r, size))]
            assert cols == list(range(n)), (n, size, cols)


def test_one_process_collectives_are_the_identity():
    comm = Communicator()
    a = np.arange(4.0)
    assert comm.allreduce_sum(a) is a and comm.broadcast_(a) is a and comm.bcast("x") == "x"
    assert comm.map_batches(lambda x: x + 1, [1, 2]) == [2, 3] and comm.from_root(lambda: 5) == 5
    assert comm.shard(a) is a and comm.is_root


def test_plain_python_never_imports_mpi4py_and_a_launch_without_it_is_refused():
    code = ("import sys; from minis2s.training.distributed import world; c = world(); "
            "print(type(c).__name__, c.size, 'mpi4py' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["Communicator", "1", "False"], p.stdout
    assert launched_size({"PMI_SIZE": "4"}) == 4 and launched_size({}) == 1
    code = ("import sys; sys.modules['mpi4py'] = None\nfrom minis2s.training.distributed import world\n"
            "try:\n    world()\nexcept RuntimeError as e:\n    print(e)")
    p = subprocess.run([sys.executable, "-c", code], env={**_env(), "PMI_SIZE": "2"}, capture_output=True,
                       text=True, check=True)
    assert "one of 2" in p.stdout and "pip install 'minis2s[mpi]'" in p.stdout, p.stdout
