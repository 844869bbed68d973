"""Token-level distillation: the soft-target cross-entropy (checked against finite differences
and PyTorch), the teachers' targets (minis2s/training/distill.py) and ``--distill-from``."""
import json

import numpy as np
import pytest
import torch
from conftest import F64_TOL, GRADCHECK_TOL, SAME_SUMS_F64, check_close
from test_cli import assert_clean_error, assert_ok, minis2s

from minis2s import DataConfig, ModelConfig, Seq2SeqTask, gradcheck, manual_seed, ops
from minis2s.data import Vocab
from minis2s.data.examples import dates
from minis2s.g2p import PRETRAINED_ENSEMBLES
from minis2s.models.ensemble import Ensemble
from minis2s.nn import CrossEntropyLoss
from minis2s.training import TrainConfig, train
from minis2s.training.distill import TeacherTargets
from minis2s.training.distributed import block
from minis2s.training.trainer import loss_and_grad

N, V = 7, 5


def soft_rows(rng, n=N, v=V):
    """(n, v) random distributions: Dirichlet draws, never a zero entry."""
    return np.maximum(rng.dirichlet(np.ones(v), size=n), 1e-6)


def targets_with_ignored(ignore_index):
    """(N,) targets, two of them ignored."""
    return np.array([1, ignore_index, 3, 2, ignore_index, 4, 0 if ignore_index != 0 else 1])


# ---- the loss ----------------------------------------------------------------------------------
@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_soft_cross_entropy_backward_matches_finite_differences(rng, weight, ignore_index):
    logits, soft, y = 2.0 * rng.standard_normal((N, V)), soft_rows(rng), targets_with_ignored(ignore_index)
    state = {}

    def forward():
        loss, state["cache"] = ops.cross_entropy_forward(logits, y, ignore_index, soft, weight)
        return np.asarray(loss)

    def backward(dloss):
        dz = ops.cross_entropy_backward(dloss, state["cache"])
        assert np.all(dz[y == ignore_index] == 0.0), "ignored rows must get no gradient"
        return {"logits": dz}

    result = gradcheck(forward, backward, {"logits": logits})
    assert result.max_rel_error <= GRADCHECK_TOL, f"soft cross_entropy λ={weight}: {result}"


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_soft_cross_entropy_matches_torch_probability_targets_float64(rng, weight):
    ignore_index = 0
    logits, soft, y = 3.0 * rng.standard_normal((N, V)), soft_rows(rng), targets_with_ignored(ignore_index)
    soft[y == ignore_index] = np.nan  # rows the loss ignores are never read
    loss_fn = CrossEntropyLoss(ignore_index=ignore_index, soft_weight=weight)
    loss = loss_fn(logits, y, soft)
    dz = loss_fn.backward(1.0)

    keep = y != ignore_index  # torch's probability targets have no ignore_index: drop those rows
    q = (1 - weight) * np.eye(V)[y[keep]] + weight * soft[keep]
    tz = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tz[torch.tensor(keep)], torch.tensor(q), reduction="mean")
    tloss.backward()
    check_close("loss", loss, tloss.item(), F64_TOL)
    check_close("dlogits", dz, tz.grad.numpy(), F64_TOL)


def test_soft_weight_zero_or_no_soft_rows_is_exactly_the_plain_cross_entropy(rng):
    logits, soft, y = rng.standard_normal((N, V)).astype(np.float32), soft_rows(rng), targets_with_ignored(-100)
    plain, cache = ops.cross_entropy_forward(logits, y)
    dz = ops.cross_entropy_backward(0.7, cache)
    for kw in ({"soft": soft, "soft_weight": 0.0}, {"soft": None, "soft_weight": 0.4}):
        loss, cache = ops.cross_entropy_forward(logits, y, **kw)
        assert loss == plain and np.array_equal(ops.cross_entropy_backward(0.7, cache), dz), kw


def test_soft_targets_equal_to_the_one_hot_ones_give_the_plain_loss(rng):
    logits, y = rng.standard_normal((N, V)), targets_with_ignored(-100)
    onehot = np.eye(V)[np.where(y < 0, 0, y)]
    plain, _ = ops.cross_entropy_forward(logits, y)
    soft, _ = ops.cross_entropy_forward(logits, y, soft=onehot, soft_weight=0.5)
    check_close("loss", soft, plain, 1e-14)


@pytest.mark.parametrize("soft,weight,exc,msg", [
    (np.full((N, V + 1), 0.2), 0.5, ValueError, r"soft must have shape \(7, 5\)"),
    (np.full((N, V), 1, dtype=np.int64), 0.5, TypeError, r"soft must be float32 or float64"),
    (np.full((N, V), 0.2), 1.5, ValueError, r"soft_weight must be in \[0, 1\], got 1.5"),
])
def test_cross_entropy_refuses_bad_soft_targets(soft, weight, exc, msg):
    with pytest.raises(exc, match=msg):
        CrossEntropyLoss(soft_weight=weight)(np.zeros((N, V)), np.zeros(N, dtype=np.int64), soft)


# ---- the teachers' targets ---------------------------------------------------------------------
def dates_task(**model):
    pairs = dates(140, seed=3)
    cfg = ModelConfig(**{"hidden": 12, "layers": 1, "embedding": 6, "dropout": 0.0, "dtype": "float64", **model})
    return Seq2SeqTask(pairs[:120], pairs[120:], data=DataConfig(tokens="char"), model=cfg)


@pytest.fixture(scope="module")
def teachers():
    """Two random teachers that read the sources differently: seq2seq reversed, attention not."""
    manual_seed(11)
    a, b = dates_task(arch="seq2seq", reverse_source=True), dates_task(arch="attention")
    return [a.translator(a.build_model()), b.translator(b.build_model())]


def test_teacher_targets_are_the_ensemble_mean_along_the_reference(teachers):
    student = dates_task()
    targets = TeacherTargets(teachers, student, batch_size=16)
    ensemble = Ensemble([t.model for t in teachers], reverse_source=[t.config.reverse_source for t in teachers])
    batch = student.train_batches(np.random.default_rng(0), 10)[2]
    soft = targets.for_batch(batch)  # (T-1, B, V)
    assert soft.shape == batch.trg[1:].shape + (len(student.trg),) and soft.dtype == np.float32
    for col in (0, batch.size - 1):
        i = batch.index[col]
        src = np.array(student.src.encode(student.train_pairs.src[i])[0])[:, None]  # (S, 1), reading order
        state = ensemble.init_decoder_state(src, np.array([src.shape[0]]))
        reference = student.train_trg[i] + [Vocab.eos_id]
        inputs = [Vocab.sos_id] + student.train_trg[i]
        for t, (y_prev, _) in enumerate(zip(inputs, reference)):  # teacher forcing along the reference
            logp, state = ensemble.decode_step(np.array([y_prev]), state)
            check_close(f"column {col} step {t}", soft[t, col], np.exp(logp[0]), 1e-6)


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_teacher_targets_at_a_temperature_are_the_mean_of_each_teachers_tempered_softmax(teachers, temperature):
    # softmax(z / T) = p^(1/T) / Σ p^(1/T) for p = softmax(z): each teacher's own targets at T = 1,
    # raised and renormalised, then averaged. 1e-5: the targets are stored in float32 (ε 6e-8),
    # and p^(1/T) at T = 0.5 squares that rounding.
    student = dates_task()
    tempered = TeacherTargets(teachers, student, temperature=temperature)
    alone = [TeacherTargets([t], student).probs.astype(np.float64) for t in teachers]  # (N, V) each
    raised = [p ** (1 / temperature) for p in alone]
    expected = sum(r / r.sum(axis=1, keepdims=True) for r in raised) / len(raised)
    check_close(f"targets at T = {temperature}", tempered.probs, expected, 1e-5)
    plain = TeacherTargets(teachers, student)
    entropy = {k: tt._sharpness(student)["entropy"] for k, tt in (("plain", plain), ("tempered", tempered))}
    assert (entropy["tempered"] > entropy["plain"]) == (temperature > 1), entropy


@pytest.mark.parametrize("temperature, exc", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                              (float("inf"), ValueError), (True, TypeError), ("2", TypeError)])
def test_teacher_targets_refuse_a_bad_temperature(teachers, temperature, exc):
    with pytest.raises(exc, match=r"^temperature must be"):
        TeacherTargets(teachers, dates_task(), temperature=temperature)


def test_teacher_targets_follow_a_batch_through_take(teachers):
    student = dates_task()
    targets = TeacherTargets(teachers, student, batch_size=32)
    batch = student.train_batches(np.random.default_rng(1), 12)[0]
    columns = np.array([3, 0, 7])
    assert np.array_equal(targets.for_batch(batch.take(columns)), targets.for_batch(batch)[:, columns])
    wrong = batch.take(columns)
    wrong.index = wrong.index[::-1].copy()
    if not np.array_equal(targets.lengths[wrong.index], targets.lengths[batch.index[columns]]):
        with pytest.raises(ValueError, match=r"batch: its targets are not the training pairs"):
            targets.for_batch(wrong)


def test_shards_with_soft_targets_sum_to_the_batch_gradient_float64(teachers):
    student = dates_task(arch="attention")
    targets = TeacherTargets(teachers, student)
    model = student.build_model()
    batch = student.train_batches(np.random.default_rng(0), 23)[0]
    loss_fn = CrossEntropyLoss(ignore_index=student.pad_id, soft_weight=0.5)
    whole = loss_and_grad(model, batch, loss_fn, 1.0, np.random.default_rng(7), soft=targets.for_batch(batch))
    expected = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    tokens = int((batch.trg[1:] != student.pad_id).sum())
    total = 0.0
    for r in range(3):
        shard = batch.take(np.arange(*block(batch.size, r, 3)))
        total += loss_and_grad(model, shard, loss_fn, 1.0, np.random.default_rng(7), tokens=tokens,
                               soft=targets.for_batch(shard))
    check_close("loss", total, whole, SAME_SUMS_F64)
    for n, p in model.named_parameters():
        check_close(n, p.grad, expected[n], SAME_SUMS_F64)


def test_distill_weight_zero_trains_exactly_as_without_a_teacher(teachers, tmp_path):
    weights = []
    for name, extra in (("plain", {}), ("distill0", {"distill_from": "teachers", "distill_weight": 0.0})):
        student = dates_task()
        manual_seed(0)
        model = student.build_model()
        config = TrainConfig(epochs=1, batch_size=20, max_steps=4, **extra)
        train(student, model, config, tmp_path / name, teachers=teachers if extra else None, log=lambda m: None)
        weights.append({n: p.data.copy() for n, p in model.named_parameters()})
    for n in weights[0]:
        assert np.array_equal(weights[0][n], weights[1][n]), n


def test_a_teacher_with_another_target_vocabulary_is_refused(teachers):
    other = Seq2SeqTask([("ab", "x y"), ("ba", "y x")], data=DataConfig(tokens="char", trg_tokens="space"))
    with pytest.raises(ValueError, match=r"^teacher Translator\(Seq2Seq\): its target vocabulary \(\d+ symbols\) is not "
                                         r"the student's"):
        TeacherTargets(teachers[:1], other)


# ---- the command line --------------------------------------------------------------------------
def test_g2p_train_distills_from_the_shipped_ensemble_and_resumes(tmp_path):
    teachers = f"distilling from {len(PRETRAINED_ENSEMBLES['ensemble'])} teacher(s)"  # every member teaches
    p = minis2s("g2p", "train", "--train-limit", "120", "--hidden", "16", "--layers", "1", "--embedding", "8",
                "--epochs", "1", "--batch-size", "32", "--distill-from", "ensemble", "--distill-weight", "0.3",
                "--distill-temperature", "2", "--max-steps", "2", "--out", "run", "--quiet", cwd=tmp_path)
    assert_ok(p)
    assert teachers in p.stderr and "mean teacher probability of the reference" in p.stderr
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert train["distill_from"] == "ensemble" and train["distill_weight"] == 0.3
    assert train["distill_temperature"] == 2.0 and "at temperature 2" in p.stderr
    p = minis2s("g2p", "train", "--resume", "--out", "run", "--quiet", cwd=tmp_path)  # recomputed, not saved
    assert_ok(p)
    assert teachers in p.stderr and "best dev WER" in p.stdout


def test_g2p_train_refuses_a_bad_temperature_in_one_line(tmp_path):
    p = minis2s("g2p", "train", "--train-limit", "50", "--distill-from", "seq2seq", "--distill-temperature", "0",
                "--out", "run", "--quiet", cwd=tmp_path)
    assert_clean_error(p, "distill_temperature", last_line_only=True)
    assert not (tmp_path / "run").exists()


def test_g2p_train_refuses_a_teacher_of_another_vocabulary_in_one_line(tmp_path):
    p = minis2s("g2p", "train", "--train-limit", "50", "--hidden", "8", "--layers", "1", "--embedding", "4",
                "--distill-from", "stress", "--out", "run", "--quiet", cwd=tmp_path)
    assert_clean_error(p, "teacher ", "g2p-stress", "target vocabulary (73 symbols) is not the student's (43)",
                       last_line_only=True)
    assert not (tmp_path / "run").exists(), "a bad teacher must fail before the run folder is made"
