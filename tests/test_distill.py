"""Token-level distillation: the soft-target cross-entropy (checked against finite differences
and PyTorch), the teachers' targets (minis2s/training/distill.py) and ``--distill-from``."""
import numpy as np
import pytest
import torch
from conftest import F64_TOL, GRADCHECK_TOL, check_close

from minis2s import gradcheck, ops
from minis2s.nn import CrossEntropyLoss

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
