"""Shared test helpers: one way to compare (``check_close``, minis2s/gradcheck.py), the
tolerances (minis2s/tolerances.py), a seeded generator, the user's PyTorch skeleton (vendored as
tests/data/seed_skeleton.py), and the AttentionSeq2Seq set-up that the gradient, torch, property,
decoding and training tests share.

Shapes: S source, B batch, Hq/Hk query/key sizes, A attention size, He encoder hidden per
direction, H decoder hidden, E embedding, L layers.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minis2s import AttentionDecoder, AttentionEncoder, AttentionSeq2Seq, ops
from minis2s.gradcheck import check_close, rel_error  # noqa: F401
from minis2s.tolerances import GRADCHECK as GRADCHECK_TOL  # noqa: F401  (the reasons: that module)
from minis2s.tolerances import (
    SAME_SUMS_F64,  # noqa: F401
    TORCH_F64_GRADIENT_FLOOR,  # noqa: F401
)
from minis2s.tolerances import TORCH_F32 as F32_TOL  # noqa: F401
from minis2s.tolerances import TORCH_F64 as F64_TOL  # noqa: F401

# tests/cudasim needs the simulator switched on before numba is imported: a plain `pytest tests`
# leaves it to tests/test_cudasim_process.py, which runs it in a child process with
# NUMBA_ENABLE_CUDASIM=1 (collected here, it could only skip). Named on the command line, it is
# collected as usual.
collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---- the user's PyTorch skeleton, vendored byte for byte ----------------------------------------
SEED_SKELETON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seed_skeleton.py")


def load_seed_skeleton():
    """tests/data/seed_skeleton.py imported as it is: the user's own file (shared/seed_skeleton.py,
    copied byte for byte), not the completed twin tests/torch_seed.py."""
    spec = importlib.util.spec_from_file_location("seed_skeleton", SEED_SKELETON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- attention: the three scores and the whole AttentionSeq2Seq -------------------------------
ATTENTION_KINDS = ["bahdanau", "general", "dot"]


def attention_params(rng, kind, Hq, Hk, A, scale=1.0):
    """Random parameters of one attention score, named as ``ops.ATTENTION_PARAMS[kind]``."""
    shapes = {"bahdanau": [(A, Hq), (A, Hk), (A,)], "general": [(Hq, Hk)], "dot": []}[kind]
    return dict(zip(ops.ATTENTION_PARAMS[kind], (scale * rng.standard_normal(s) for s in shapes)))


def source_mask(lengths, S):
    return np.arange(S)[:, None] < np.asarray(lengths)[None, :]  # (S, B)


def make_attention_seq2seq(kind, input_feeding, *, src_vocab=5, trg_vocab=4, He=2, H=4, E=3, L=2,
                           dropout=0.0, seed=0):
    """A float64 AttentionSeq2Seq: bidirectional encoder (2·He keys), attention ``kind``; its
    weights drawn from ``seed`` alone, so that a hypothesis example replays the same model."""
    rng = np.random.default_rng(seed)
    enc = AttentionEncoder(src_vocab, He, E, L, dropout=dropout, dtype=np.float64, rng=rng)
    dec = AttentionDecoder(trg_vocab, H, E, L, 2 * He, attention=kind, input_feeding=input_feeding,
                           dropout=dropout, dtype=np.float64, rng=rng)
    return AttentionSeq2Seq(enc, dec, rng=rng)
