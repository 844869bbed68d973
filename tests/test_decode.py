"""Greedy decoding and beam search.

- beam width 1 equals greedy on random float64 models, batch after batch;
- beam search returns n-best lists sorted by score, each hypothesis ending at its own <eos>
  (results never contain <eos>), a row's results do not depend on the other rows of its batch,
  and ``max_len`` is respected;
- the score reported is the hypothesis's log-probability / length**alpha, recomputed step by step;
- exhaustive enumeration of every sequence up to ``max_len`` on a tiny vocabulary: a wide enough
  beam finds exactly the brute-force n-best, and it is never worse than greedy;
- a hand-built model with a "garden path" (the greedy first token leads nowhere good): beam 2
  finds the known optimum, greedy does not.
- AttentionSeq2Seq: a padded batch gives each row's outputs and attention run alone (float64,
  SAME_SUMS_F64), beam 1 equals greedy and a row's n-best does not depend on the other rows
  (the keys are reordered with the beams), and greedy decoding is the forward's argmax path.

Shapes: S source steps, B batch, V target vocabulary, K beam width.
"""
import itertools

import numpy as np
import pytest
from conftest import ATTENTION_KINDS, SAME_SUMS_F64, check_close, make_attention_seq2seq

from minis2s.data import Vocab
from minis2s.decode import beam_search, greedy_decode
from minis2s.models import Decoder, Encoder, Seq2Seq
from minis2s.ops import log_softmax
from minis2s.random import manual_seed

SOS, EOS = Vocab.sos_id, Vocab.eos_id
F64 = np.float64


def random_model(seed, V=9, SV=13, H=8, E=6, L=2, scale=4.0):
    """A random float64 Seq2Seq whose output layer is scaled up, so its distributions are peaked."""
    manual_seed(seed)
    m = Seq2Seq(Encoder(SV, H, E, L, dtype=F64), Decoder(V, H, E, L, dtype=F64), "cpu").eval()
    m.decoder.fc_out.weight.data *= scale
    return m


class LengthPrior:
    """A random Seq2Seq with a push towards <eos> once a row has emitted about as many tokens as
    its source is long: <eos> logit += 3·(t - src_length + 1). An untrained LSTM alone ends every
    row at the same step (or never); with this the rows of a batch end at their own steps.

    The state is the model's (hidden, cell) plus (1, B, 1) arrays for the length and the step,
    so ``select_state`` (rows on axis 1) reorders them all alike.
    """

    def __init__(self, model):
        self.model = model

    def init_decoder_state(self, src, src_lengths=None):
        B = src.shape[1]
        n = np.full(B, src.shape[0]) if src_lengths is None else np.asarray(src_lengths)
        return (*self.model.init_decoder_state(src, src_lengths), n.reshape(1, B, 1).astype(F64), np.zeros((1, B, 1)))

    def decode_step(self, input, state):
        *inner, n, t = state
        logits, inner = self.model.decode_step(input, tuple(inner))
        logits = logits.copy()
        logits[:, EOS] += 3.0 * (t[0, :, 0] - n[0, :, 0] + 1)
        return logits, (*inner, n, t + 1)

    @staticmethod
    def select_state(state, index):
        return tuple(s[:, index] for s in state)


def random_src(rng, B, SV=13, max_S=7):
    """(S, B) source ids, rows of random lengths 1..max_S padded with <pad>; lengths (B,)."""
    lengths = rng.integers(1, max_S + 1, B)
    src = np.zeros((lengths.max(), B), dtype=np.int64)
    for b, n in enumerate(lengths):
        src[:n, b] = rng.integers(4, SV, n)
    return src, lengths


def sequence_logprob(model, src, src_lengths, ids, ended):
    """Σ log p of ``ids`` (then <eos> if ``ended``) for one source row (S, 1), step by step."""
    state = model.init_decoder_state(src, src_lengths)
    inp, total = np.array([SOS]), 0.0
    for tok in list(ids) + ([EOS] if ended else []):
        logits, state = model.decode_step(inp, state)
        total += float(log_softmax(logits, axis=1)[0, tok])
        inp = np.array([tok])
    return total


def normalised(logp, n_tokens, ended, alpha):
    return logp / (n_tokens + ended) ** alpha


# ---- beam 1 = greedy -----------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.6])
def test_beam_width_1_equals_greedy(alpha):
    rng = np.random.default_rng(0)
    ended_early = cut_off = 0
    for seed in range(4):
        model = random_model(seed) if seed == 0 else LengthPrior(random_model(seed))
        for _ in range(3):  # several batches per model
            src, lengths = random_src(rng, B=7)
            max_len = int(rng.integers(3, 9))
            kw = {"max_len": max_len, "sos_id": SOS, "eos_id": EOS}
            greedy = greedy_decode(model, src, lengths, **kw)
            beam = beam_search(model, src, lengths, beam=1, alpha=alpha, **kw)
            assert [b[0][0] for b in beam] == greedy
            assert all(len(b) == 1 for b in beam)
            ended_early += sum(len(g) < max_len for g in greedy)
            cut_off += sum(len(g) == max_len for g in greedy)
    assert ended_early > 10 and cut_off > 10  # both ways of ending were exercised


# ---- n-best lists --------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_nbest_sorted_each_ending_at_its_own_eos_within_max_len(alpha):
    rng = np.random.default_rng(1)
    model = LengthPrior(random_model(5))
    src, lengths = random_src(rng, B=6)
    K, N, max_len = 4, 3, 6
    results = beam_search(model, src, lengths, beam=K, nbest=N, max_len=max_len, sos_id=SOS, eos_id=EOS, alpha=alpha)
    assert len(results) == 6
    for b, hyps in enumerate(results):
        assert 1 <= len(hyps) <= N
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(ids) for ids, _ in hyps}) == len(hyps)  # distinct hypotheses
        for ids, s in hyps:
            assert EOS not in ids  # ended at its own <eos>, which is not returned
            assert len(ids) <= max_len
            ended = len(ids) < max_len  # max_len tokens: cut off, scored without <eos>
            lp = sequence_logprob(model, src[: lengths[b], b : b + 1], None, ids, ended)
            assert s == pytest.approx(normalised(lp, len(ids), ended, alpha), rel=1e-9, abs=1e-12)
        # the row's results do not depend on the rest of the batch
        alone = beam_search(model, src[: lengths[b], b : b + 1], None, beam=K, nbest=N, max_len=max_len,
                            sos_id=SOS, eos_id=EOS, alpha=alpha)[0]
        assert [ids for ids, _ in alone] == [ids for ids, _ in hyps]
        np.testing.assert_allclose([s for _, s in alone], scores, rtol=SAME_SUMS_F64)


def test_greedy_rows_end_at_their_own_eos():
    rng = np.random.default_rng(2)
    model = LengthPrior(random_model(7))
    src, lengths = random_src(rng, B=8)
    out = greedy_decode(model, src, lengths, max_len=10, sos_id=SOS, eos_id=EOS)
    assert len({len(o) for o in out}) > 1  # rows really ended at different steps
    for b, ids in enumerate(out):
        assert EOS not in ids
        assert ids == greedy_decode(model, src[: lengths[b], b : b + 1], None, max_len=10, sos_id=SOS, eos_id=EOS)[0]


class TableModel:
    """A decoder defined by a table: p(next | prefix) for prefixes (tuples of tokens after <sos>).

    The decoding interface of Seq2Seq, with the state being the whole prefix: (1, B, t) ids.
    Unlisted prefixes use ``default``. Ids: 0 pad, 1 sos, 2 eos, 3 unk, then tokens 4, 5, ...
    """

    def __init__(self, V, table, default):
        self.V, self.table, self.default = V, table, default

    def init_decoder_state(self, src, src_lengths=None):
        return (np.zeros((1, src.shape[1], 0), dtype=np.int64),)

    def decode_step(self, input, state):
        (hist,) = state  # (1, B, t)
        hist = np.concatenate([hist, np.asarray(input)[None, :, None]], axis=2)  # (1, B, t+1)
        probs = np.empty((hist.shape[1], self.V))
        for b in range(hist.shape[1]):
            prefix = tuple(int(i) for i in hist[0, b, 1:])  # drop the <sos>
            p = np.full(self.V, 1e-9)
            for tok, q in self.table.get(prefix, self.default).items():
                p[tok] = q
            probs[b] = p / p.sum()
        return np.log(probs), (hist,)

    @staticmethod
    def select_state(state, index):
        return tuple(s[:, index] for s in state)


A, Bt = 4, 5
GARDEN = {
    (): {A: 0.6, Bt: 0.4},  # greedy takes A ...
    (A,): {A: 0.34, Bt: 0.33, EOS: 0.33},  # ... where nothing is likely
    (Bt,): {EOS: 0.99, A: 0.005, Bt: 0.005},  # B then <eos>: 0.4 * 0.99 = 0.396 is the best sequence
}


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_garden_path_beam_finds_the_known_optimum_greedy_does_not(alpha):
    model = TableModel(6, GARDEN, default={EOS: 0.5, A: 0.25, Bt: 0.25})
    src = np.zeros((1, 2), dtype=np.int64)  # two identical rows: the batch path too
    kw = {"max_len": 6, "sos_id": SOS, "eos_id": EOS}
    greedy = greedy_decode(model, src, **kw)
    assert greedy[0][:2] == [A, A]
    for k in (2, 3, 5):
        best_ids, best_score = beam_search(model, src, beam=k, alpha=alpha, **kw)[1][0]
        assert best_ids == [Bt]
        assert best_score == pytest.approx(np.log(0.4 * 0.99) / 2**alpha)
        g = greedy[0]
        g_logp = np.log(0.6) + np.log(0.34) + sum(np.log(0.25) for _ in g[2:]) + np.log(0.5)
        assert best_score > normalised(g_logp, len(g), True, alpha)
    assert beam_search(model, src, beam=1, alpha=alpha, **kw)[0][0][0] == greedy[0]


def test_max_len_cuts_off_and_scores_unfinished_hypotheses():
    # <eos> is (almost) never likely: every hypothesis runs to max_len and is ranked unfinished
    model = TableModel(6, {}, default={A: 0.7, Bt: 0.3, EOS: 1e-6})
    src = np.zeros((1, 1), dtype=np.int64)
    for max_len in (1, 3, 5):
        assert greedy_decode(model, src, max_len=max_len, sos_id=SOS, eos_id=EOS) == [[A] * max_len]
        hyps = beam_search(model, src, beam=3, nbest=2, max_len=max_len, sos_id=SOS, eos_id=EOS, alpha=1.0)[0]
        assert len(hyps) == 2 and all(len(ids) == max_len for ids, _ in hyps)
        assert hyps[0][0] == [A] * max_len
        p = np.array([0.7, 0.3, 1e-6, 3e-9])  # A, B, eos, and the three other ids at 1e-9
        assert hyps[0][1] == pytest.approx(np.log(0.7 / p.sum()))  # (max_len · log p(A)) / max_len


# ---- brute force: every sequence up to max_len ---------------------------------------------------
def brute_force(model, src, max_len, alpha):
    """Every hypothesis beam search can return for one source row: t < max_len tokens then
    <eos>, or max_len tokens cut off (so the length alone tells which).
    -> [(normalised score, ids)], best first."""
    V = model.decoder.output_dim
    non_eos = [v for v in range(V) if v != EOS]
    out = []
    level = [((), 0.0)]  # (prefix, its log-probability); row i of `states` is prefix i's state
    states, inputs = model.init_decoder_state(src), np.array([SOS])
    for t in range(max_len):
        logits, new_states = model.decode_step(inputs, states)
        logp = log_softmax(logits, axis=1)  # (n, V)
        nxt, rows, toks = [], [], []
        for i, (prefix, lp) in enumerate(level):
            out.append((normalised(lp + logp[i, EOS], t, True, alpha), list(prefix)))
            for v in non_eos:
                nxt.append((prefix + (v,), lp + logp[i, v]))
                rows.append(i)
                toks.append(v)
        level = nxt
        states = model.select_state(new_states, np.array(rows))
        inputs = np.array(toks)
    out += [(normalised(lp, max_len, False, alpha), list(prefix)) for prefix, lp in level]
    return sorted(out, key=lambda h: -h[0])


@pytest.mark.parametrize("alpha", [1.0, 0.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_beam_equals_brute_force_and_beats_greedy(seed, alpha):
    V, max_len = 7, 3  # 6 ids other than <eos>: 1 + 6 + 36 finished, 216 cut off
    model = random_model(seed, V=V, scale=2.0)
    rng = np.random.default_rng(seed)
    src, _ = random_src(rng, B=1, max_S=5)
    truth = brute_force(model, src, max_len, alpha)
    assert len(truth) == 1 + 6 + 36 + 216
    K = 216  # wide enough that nothing is ever pruned
    got = beam_search(model, src, beam=K, nbest=10, max_len=max_len, sos_id=SOS, eos_id=EOS, alpha=alpha)[0]
    assert [ids for ids, _ in got] == [ids for _, ids in truth[:10]]
    np.testing.assert_allclose([s for _, s in got], [s for s, _ in truth[:10]], rtol=1e-10)
    # greedy's sequence is one of the candidates: the optimum is at least as good
    table = {tuple(ids): s for s, ids in truth}
    g = greedy_decode(model, src, max_len=max_len, sos_id=SOS, eos_id=EOS)[0]
    assert got[0][1] >= table[tuple(g)] - 1e-12
    # any width: its best is a real candidate, scored correctly, and no better than the optimum
    for k in (1, 2, 3, 8):
        (ids, s), = beam_search(model, src, beam=k, max_len=max_len, sos_id=SOS, eos_id=EOS, alpha=alpha)[0]
        assert s == pytest.approx(table[tuple(ids)], rel=1e-9)
        assert s <= truth[0][0] + 1e-12


def test_beam_finds_a_planted_optimum_on_a_tiny_vocabulary():
    """Brute force on the garden-path table: beam 2 returns the true best of all sequences."""
    model = TableModel(6, GARDEN, default={EOS: 0.5, A: 0.25, Bt: 0.25})
    max_len = 4
    best, best_ids = -np.inf, None
    for n in range(max_len):
        for ids in itertools.product(range(6), repeat=n):
            if EOS in ids:
                continue
            lp = _table_logprob(model, ids, ended=True)
            if lp / (n + 1) > best:
                best, best_ids = lp / (n + 1), list(ids)
    assert best_ids == [Bt]
    got = beam_search(model, np.zeros((1, 1), dtype=np.int64), beam=2, max_len=max_len, sos_id=SOS, eos_id=EOS)[0][0]
    assert got[0] == best_ids and got[1] == pytest.approx(best)


def _table_logprob(model, ids, ended):
    state = model.init_decoder_state(np.zeros((1, 1), dtype=np.int64))
    inp, total = np.array([SOS]), 0.0
    for tok in list(ids) + ([EOS] if ended else []):
        logp, state = model.decode_step(inp, state)
        total += logp[0, tok]
        inp = np.array([tok])
    return total


# ---- AttentionSeq2Seq: the same decoding, keys reordered with the rows ---------------------------
def padded_source(rng, lengths, vocab=9):
    src = np.zeros((max(lengths), len(lengths)), dtype=np.int64)
    for b, n in enumerate(lengths):
        src[:n, b] = rng.integers(4, vocab, n)
    return src


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_padded_batch_equals_each_row_run_alone(kind):
    """Outputs and attention of every row are those of the row alone (its own length)."""
    manual_seed(11)
    model = make_attention_seq2seq(kind, True, src_vocab=9, trg_vocab=7, He=3, H=6, E=4)
    rng = np.random.default_rng(5)
    lengths = [3, 6, 1, 4]
    src, trg = padded_source(rng, lengths), rng.integers(0, 7, (5, 4))
    out = model(src, trg, 0.0, src_lengths=np.array(lengths), generator=np.random.default_rng(0))
    weights = model.attention_weights.copy()
    for b, n in enumerate(lengths):
        alone = model(src[:n, b : b + 1], trg[:, b : b + 1], 0.0, generator=np.random.default_rng(0))
        check_close(f"outputs of row {b}", out[:, b], alone[:, 0], SAME_SUMS_F64)
        check_close(f"attention of row {b}", weights[:, :n, b], model.attention_weights[:, :, 0], SAME_SUMS_F64)
        assert np.all(weights[:, n:, b] == 0.0)


@pytest.mark.parametrize("kind", ["bahdanau", "general"])
def test_beam_search_with_attention_width_1_equals_greedy_and_rows_are_independent(kind):
    manual_seed(3)
    model = make_attention_seq2seq(kind, True, src_vocab=13, trg_vocab=9, He=4, H=8, E=6).eval()
    model.decoder.fc_out.weight.data *= 4.0  # peaked distributions: greedy paths of several lengths
    rng = np.random.default_rng(2)
    lengths = np.array([5, 2, 7, 3])
    src = padded_source(rng, lengths, 13)
    kw = {"max_len": 8, "sos_id": Vocab.sos_id, "eos_id": Vocab.eos_id}
    greedy = greedy_decode(model, src, lengths, **kw)
    beam1 = beam_search(model, src, lengths, beam=1, **kw)
    assert [r[0][0] for r in beam1] == greedy
    beam4 = beam_search(model, src, lengths, beam=4, nbest=3, **kw)
    for b, n in enumerate(lengths):  # a row's n-best does not depend on the other rows (keys reordered)
        alone = beam_search(model, src[:n, b : b + 1], np.array([n]), beam=4, nbest=3, **kw)[0]
        assert [h for h, _ in alone] == [h for h, _ in beam4[b]]
        np.testing.assert_allclose([s for _, s in alone], [s for _, s in beam4[b]], rtol=SAME_SUMS_F64)
        scores = [s for _, s in beam4[b]]
        assert scores == sorted(scores, reverse=True)


def test_greedy_decoding_follows_the_forward_with_argmax_feedback():
    """decode_step (the decoding interface) and forward (training) are the same computation:
    greedy tokens = the argmax path of forward with teacher forcing 0, row by row."""
    manual_seed(4)
    model = make_attention_seq2seq("bahdanau", True, src_vocab=13, trg_vocab=9, He=4, H=8, E=6).eval()
    model.decoder.fc_out.weight.data *= 4.0
    lengths = np.array([5, 2, 7, 3])
    src = padded_source(np.random.default_rng(8), lengths, 13)
    greedy = greedy_decode(model, src, lengths, max_len=8, sos_id=Vocab.sos_id, eos_id=Vocab.eos_id)
    out = model(src, np.full((9, 4), Vocab.sos_id), 0.0, src_lengths=lengths)
    for b, ids in enumerate(greedy):
        path = [int(i) for i in out[1:, b].argmax(axis=1)]
        assert path[: len(ids)] == ids and (len(ids) == 8 or path[len(ids)] == Vocab.eos_id)


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,msg", [
    ({"beam": 0}, "beam"), ({"beam": 2, "nbest": 3}, "cannot exceed the beam"), ({"beam": 2, "max_len": 0}, "max_len"),
    ({"beam": 2, "nbest": 0}, "nbest"), ({"beam": 2, "alpha": -0.5}, "alpha must be"),
    ({"beam": 2, "alpha": float("nan")}, "alpha must be"),
])
def test_beam_search_refuses_bad_settings(kw, msg):
    model = random_model(0)
    src = np.full((2, 1), 5, dtype=np.int64)
    args = {"max_len": 5, "sos_id": SOS, "eos_id": EOS}
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        beam_search(model, src, **args)


def test_beam_search_refuses_a_bool_alpha():
    with pytest.raises(TypeError, match="alpha must be a real number"):
        beam_search(random_model(0), np.full((2, 1), 5, dtype=np.int64), beam=2, max_len=5, sos_id=SOS, eos_id=EOS,
                    alpha=True)


def test_greedy_refuses_bad_max_len():
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(random_model(0), np.full((2, 1), 5, dtype=np.int64), max_len=0, sos_id=SOS, eos_id=EOS)
