"""Every public entry point refuses bad input early, with an error that names the argument and
says what is wrong — instead of NumPy silently wrapping id -1 to the last row, broadcasting a
mis-shaped state, or failing deep inside an op.

Each test is one kind of mistake; ``match=`` pins the argument's name and the complaint.
"""
import math
import re

import numpy as np
import pytest
import torch

from minis2s import (
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2Seq,
    Decoder,
    Encoder,
    Seq2Seq,
    no_grad,
    optim,
)
from minis2s.nn import GRU, LSTM, RNN, Attention, CrossEntropyLoss, Dropout, Embedding, Linear

F64 = np.float64
S, T, B, L, H, E = 5, 4, 3, 2, 6, 5
SRC_V, TRG_V = 11, 9


def make_model(cell="lstm", dtype=F64, hidden=H, layers=L):
    enc = Encoder(SRC_V, hidden, E, layers, cell=cell, dtype=dtype)
    dec = Decoder(TRG_V, hidden, E, layers, cell=cell, dtype=dtype)
    return Seq2Seq(enc, dec, "cpu")


@pytest.fixture
def model():
    return make_model()


def good_batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, SRC_V, (S, B)), rng.integers(0, TRG_V, (T, B))


def snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def assert_unchanged(module, before):
    after = module.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=f"{k} changed by a refused call")
        assert after[k].dtype == before[k].dtype, k


# ---- token ids: Embedding, Encoder, Decoder, Seq2Seq ---------------------------------------------

BAD_IDS = [
    # (ids, exception, message) — what a batch of ids for a vocabulary of 9 must not be
    (np.array([[1, -1], [2, 3]]), ValueError, r"negative id -1"),
    (np.array([[1, 2], [9, 3]]), ValueError, r"id 9, out of range \[0, 9\)"),
    (np.array([[1, 2], [100, 3]]), ValueError, r"id 100, out of range"),
    (np.array([[1.0, 2.0], [3.0, 4.0]]), TypeError, r"must be an integer array, got dtype float64"),
    (np.array([[True, False], [True, True]]), TypeError, r"must be an integer array, got dtype bool"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, r"must be an integer array"),
    (np.array([[1, 2], [3, None]], dtype=object), TypeError, r"must be an integer array, got dtype object"),
    (np.zeros((0, 2), dtype=np.int64), ValueError, r"is empty"),
]


@pytest.mark.parametrize("ids,exc,msg", BAD_IDS)
def test_embedding_refuses_bad_ids(ids, exc, msg):
    emb = Embedding(9, 4, dtype=F64)
    with pytest.raises(exc, match=r"^ids " + msg if msg.startswith("is") else r"^ids .*" + msg):
        emb(ids)
    assert not emb._tape, "a refused forward left a cache behind"


def test_embedding_refuses_a_ragged_list():
    with pytest.raises(TypeError, match=r"ids must be an integer array, got list"):
        Embedding(9, 4)([[1, 2], [3]])


@pytest.mark.parametrize("ids,exc,msg", BAD_IDS)
@pytest.mark.parametrize("which", ["src", "trg"])
def test_seq2seq_refuses_bad_ids(which, ids, exc, msg):
    """Both vocabularies have 9 entries here, so the messages of BAD_IDS apply to src and trg."""
    model = Seq2Seq(Encoder(TRG_V, H, E, L, dtype=F64), Decoder(TRG_V, H, E, L, dtype=F64), "cpu")
    src, trg = good_batch()
    src %= TRG_V
    if which == "src":
        src = ids
        trg = trg[:, : max(ids.shape[1], 1)]
    else:
        trg = ids
        src = src[:, : max(ids.shape[1], 1)]
    with pytest.raises(exc, match=rf"^{which} .*" + msg):
        model(src, trg)


def test_seq2seq_refuses_src_id_beyond_the_source_vocabulary(model):
    """src is checked against the encoder's vocabulary (11), trg against the decoder's (9)."""
    src, trg = good_batch()
    src[0, 0] = SRC_V
    with pytest.raises(ValueError, match=rf"src contains id {SRC_V}, out of range \[0, {SRC_V}\)"):
        model(src, trg)
    src[0, 0] = TRG_V  # valid for the encoder even though it is out of the decoder's range
    model(src, trg)


@pytest.mark.parametrize("which,shape", [("src", (S,)), ("src", (S, B, 1)), ("trg", (T,)), ("trg", (T, B, 2))])
def test_seq2seq_refuses_wrong_number_of_dimensions(model, which, shape):
    src, trg = good_batch()
    bad = np.zeros(shape, dtype=np.int64)
    args = (bad, trg) if which == "src" else (src, bad)
    with pytest.raises(ValueError, match=rf"{which} must have 2 dimensions, got shape {re.escape(str(shape))}"):
        model(*args)


@pytest.mark.parametrize("which", ["src", "trg"])
def test_seq2seq_refuses_empty_sequences(model, which):
    src, trg = good_batch()
    args = (src[:0], trg) if which == "src" else (src, trg[:0])
    with pytest.raises(ValueError, match=rf"{which} is empty"):
        model(*args)


def test_seq2seq_refuses_src_trg_batch_mismatch(model):
    src, trg = good_batch()
    with pytest.raises(ValueError, match=rf"src has batch {B} but trg has batch {B - 1}"):
        model(src, trg[:, : B - 1])


def test_encoder_and_decoder_refuse_bad_ids():
    enc = Encoder(SRC_V, H, E, L, dtype=F64)
    dec = Decoder(TRG_V, H, E, L, dtype=F64)
    with pytest.raises(ValueError, match=r"src contains negative id -1"):
        enc(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"src must have 2 dimensions"):
        enc(np.array([0, 1]))
    h = np.zeros((L, 2, H))
    with pytest.raises(ValueError, match=r"input contains negative id -1"):
        dec(np.array([0, -1]), h, h)
    with pytest.raises(ValueError, match=rf"input contains id {TRG_V}, out of range"):
        dec(np.array([0, TRG_V]), h, h)
    with pytest.raises(TypeError, match=r"input must be an integer array, got dtype float64"):
        dec(np.array([0.0, 1.0]), h, h)
    with pytest.raises(ValueError, match=r"input must have 1 dimensions"):
        dec(np.array([[0, 1]]), h, h)


# ---- teacher forcing, lengths, generator ---------------------------------------------------------


@pytest.mark.parametrize("ratio", [-0.1, 1.5, -1, 2, math.nan, math.inf])
def test_seq2seq_refuses_teacher_forcing_ratio_outside_0_1(model, ratio):
    with pytest.raises(ValueError, match=r"teacher_forcing_ratio must be in \[0, 1\]"):
        model(*good_batch(), teacher_forcing_ratio=ratio)


@pytest.mark.parametrize("ratio", ["0.5", None, True, [0.5], np.array([0.5])])
def test_seq2seq_refuses_teacher_forcing_ratio_that_is_not_a_number(model, ratio):
    with pytest.raises(TypeError, match=r"teacher_forcing_ratio must be a real number"):
        model(*good_batch(), teacher_forcing_ratio=ratio)


@pytest.mark.parametrize("ratio", [0, 1, 0.0, 1.0, np.float32(0.25), np.float64(0.75)])
def test_seq2seq_accepts_teacher_forcing_ratio_in_0_1(model, ratio):
    model(*good_batch(), teacher_forcing_ratio=ratio, generator=np.random.default_rng(0))


BAD_LENGTHS = [
    (np.array([S, 0, 2]), ValueError, r"must be >= 1 \(empty sequences are not allowed\), got 0"),
    (np.array([S, -1, 2]), ValueError, r"must be >= 1 \(empty sequences are not allowed\), got -1"),
    (np.array([S, S + 1, 2]), ValueError, rf"must be <= {S} \(the padded length\), got {S + 1}"),
    (np.array([S, 2]), ValueError, rf"has 2 entries but the batch has {B}"),
    (np.array([S, 2, 2, 1]), ValueError, rf"has 4 entries but the batch has {B}"),
    (np.array([5.0, 2.0, 2.0]), TypeError, r"must be an integer array"),
    (np.array([[S, 2, 2]]), ValueError, r"must have 1 dimensions"),
]


@pytest.mark.parametrize("lengths,exc,msg", BAD_LENGTHS)
def test_seq2seq_refuses_bad_src_lengths(model, lengths, exc, msg):
    with pytest.raises(exc, match=r"src_lengths .*" + msg if not msg.startswith("must") else r"src_lengths " + msg):
        model(*good_batch(), src_lengths=lengths)


BAD_TRG_LENGTHS = [  # trg is (T, B) = (4, 3); a row needs <sos> and one target
    (np.array([T, 1, 2]), ValueError, r"trg_lengths must be >= 2 \(<sos> and one target\), got 1"),
    (np.array([T, 0, 2]), ValueError, r"trg_lengths must be >= 1 \(empty sequences are not allowed\), got 0"),
    (np.array([T, T + 1, 2]), ValueError, rf"trg_lengths must be <= {T} \(the padded length\), got {T + 1}"),
    (np.array([T, 2]), ValueError, rf"trg_lengths has 2 entries but the batch has {B}"),
    (np.array([4.0, 2.0, 2.0]), TypeError, r"trg_lengths must be an integer array"),
]


@pytest.mark.parametrize("lengths,exc,msg", BAD_TRG_LENGTHS)
def test_seq2seq_refuses_bad_trg_lengths(model, lengths, exc, msg):
    with pytest.raises(exc, match=msg):
        model(*good_batch(), trg_lengths=lengths)


@pytest.mark.parametrize("lengths,exc,msg", BAD_LENGTHS)
@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_recurrent_refuses_bad_lengths(cls, lengths, exc, msg):
    rnn = cls(4, H, dtype=F64)
    x = np.zeros((S, B, 4))
    with pytest.raises(exc, match=r"lengths .*" + msg if not msg.startswith("must") else r"lengths " + msg):
        rnn(x, None, lengths)


def test_encoder_refuses_bad_src_lengths():
    enc = Encoder(SRC_V, H, E, L, dtype=F64)
    with pytest.raises(ValueError, match=r"lengths must be >= 1"):
        enc(good_batch()[0], np.array([S, 0, 1]))


def test_seq2seq_refuses_a_generator_that_is_not_a_numpy_generator(model):
    with pytest.raises(TypeError, match=r"generator must be a numpy.random.Generator, got int"):
        model(*good_batch(), generator=0)


# ---- Seq2Seq construction and device -------------------------------------------------------------


def test_seq2seq_refuses_mismatched_hidden_size():
    enc = Encoder(SRC_V, 6, E, L, dtype=F64)
    dec = Decoder(TRG_V, 8, E, L, dtype=F64)
    with pytest.raises(ValueError, match=r"encoder hidden_dim 6 != decoder hidden_dim 8"):
        Seq2Seq(enc, dec, "cpu")


def test_seq2seq_refuses_mismatched_num_layers():
    enc = Encoder(SRC_V, H, E, 1, dtype=F64)
    dec = Decoder(TRG_V, H, E, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"encoder num_layers 1 != decoder num_layers 2"):
        Seq2Seq(enc, dec, "cpu")


def test_seq2seq_refuses_mismatched_cell():
    enc = Encoder(SRC_V, H, E, L, cell="lstm", dtype=F64)
    dec = Decoder(TRG_V, H, E, L, cell="gru", dtype=F64)
    with pytest.raises(ValueError, match=r"encoder cell 'lstm' != decoder cell 'gru'"):
        Seq2Seq(enc, dec, "cpu")


def test_seq2seq_refuses_mismatched_dtype():
    enc = Encoder(SRC_V, H, E, L, dtype=np.float32)
    dec = Decoder(TRG_V, H, E, L, dtype=np.float64)
    with pytest.raises(TypeError, match=r"encoder dtype float32 != decoder dtype float64"):
        Seq2Seq(enc, dec, "cpu")


def test_seq2seq_refuses_a_torch_encoder():
    import torch_seed  # the skeleton's torch Encoder, kept in tests/ so a clone alone runs this test

    enc = torch_seed.Encoder(SRC_V, H, E, L)
    dec = Decoder(TRG_V, H, E, L)
    with pytest.raises(TypeError, match=r"needs a minis2s Encoder and Decoder"):
        Seq2Seq(enc, dec, "cpu")


@pytest.mark.parametrize("cell", ["lstmm", "LSTM", "transformer", None])
def test_encoder_and_decoder_refuse_unknown_cell(cell):
    with pytest.raises(ValueError, match=r"cell must be one of \['gru', 'lstm', 'rnn'\]"):
        Encoder(SRC_V, H, E, L, cell=cell)
    with pytest.raises(ValueError, match=r"cell must be one of"):
        Decoder(TRG_V, H, E, L, cell=cell)


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda0", "tpu", ""])
def test_seq2seq_refuses_unknown_device(device):
    enc, dec = Encoder(SRC_V, H, E, L), Decoder(TRG_V, H, E, L)
    with pytest.raises(ValueError, match=rf"device must be 'cpu' or 'cuda', got {re.escape(repr(device))}"):
        Seq2Seq(enc, dec, device)


@pytest.mark.parametrize("device", [0, torch.device("cpu")])
def test_seq2seq_refuses_device_that_is_not_a_string(device):
    enc, dec = Encoder(SRC_V, H, E, L), Decoder(TRG_V, H, E, L)
    with pytest.raises(TypeError, match=r"device must be a str"):
        Seq2Seq(enc, dec, device)


def test_module_to_refuses_unknown_device(model):
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'gpu'"):
        model.to(device="gpu")
    assert_unchanged(model, before)


# ---- attention: the Attention module, AttentionSeq2Seq's parts, the model settings --------------


def test_attention_module_refuses_bad_settings():
    with pytest.raises(ValueError, match="kind"):
        Attention("luong", 3, 3)
    with pytest.raises(ValueError, match="query_size == key_size"):
        Attention("dot", 3, 4)
    assert [n for n, _ in Attention("bahdanau", 3, 4, 5).named_parameters()] == ["weight_query", "weight_key", "v"]


def test_attention_seq2seq_refuses_mismatched_parts_and_a_backward_without_forward():
    enc = AttentionEncoder(5, 2, 3, 1, dtype=F64)
    with pytest.raises(ValueError, match="key_dim"):
        AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 1, 6, dtype=F64))
    with pytest.raises(ValueError, match="num_layers"):
        AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 2, 4, dtype=F64))
    model = AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 1, 4, dtype=F64))
    with pytest.raises(RuntimeError, match="without a matching forward"):
        model.backward(np.zeros((3, 2, 4)))


def test_build_model_checks_the_attention_settings():
    """The settings are checked when the ModelConfig is made, before any model is built."""
    from minis2s.g2p import G2PTask
    from minis2s.models import ModelConfig, build_model

    task = G2PTask(ModelConfig(), train_words={"a": [["AH"]]}, dev_words={})
    sizes = (len(task.src_vocab), len(task.trg_vocab))
    model = build_model(ModelConfig(arch="attention", hidden=6, layers=2, attention="dot"), *sizes)
    assert isinstance(model, AttentionSeq2Seq) and model.encoder.rnn.hidden_size == 3
    for bad, msg in [({"cell": "gru"}, "LSTM"), ({"hidden": 7}, "even"),
                     ({"attention": "luong"}, "attention must be one of")]:
        with pytest.raises(ValueError, match=msg):
            ModelConfig(arch="attention", **bad)
        with pytest.raises(ValueError, match=msg):  # and the same from a model.json's settings
            ModelConfig.from_dict({"arch": "attention", **bad})
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="transformer")


# ---- dtypes --------------------------------------------------------------------------------------

BAD_DTYPES = [np.int32, np.int64, np.float16, "float16", np.complex128, bool, "banana", object]

CONSTRUCTORS = {
    "Embedding": lambda dtype: Embedding(5, 3, dtype=dtype),
    "Linear": lambda dtype: Linear(3, 2, dtype=dtype),
    "LSTM": lambda dtype: LSTM(3, 2, dtype=dtype),
    "GRU": lambda dtype: GRU(3, 2, dtype=dtype),
    "RNN": lambda dtype: RNN(3, 2, dtype=dtype),
    "Encoder": lambda dtype: Encoder(5, 2, 3, 1, dtype=dtype),
    "Decoder": lambda dtype: Decoder(5, 2, 3, 1, dtype=dtype),
}


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_module_construction_refuses_dtype_other_than_float32_float64(name, dtype):
    with pytest.raises(TypeError, match=r"^dtype must be float32 or float64"):
        CONSTRUCTORS[name](dtype)


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
def test_module_to_refuses_dtype_other_than_float32_float64_and_changes_nothing(model, dtype):
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"^dtype must be float32 or float64"):
        model.to(dtype=dtype)
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", "float64"])
def test_module_construction_accepts_float32_float64(name, dtype):
    m = CONSTRUCTORS[name](dtype)
    assert all(p.data.dtype == np.dtype(dtype) for p in m.parameters())


@pytest.mark.parametrize("module_dtype,x_dtype", [(np.float64, np.float32), (np.float32, np.float64)])
def test_inputs_of_the_other_float_dtype_are_refused(module_dtype, x_dtype):
    """No silent up/down-casting: a float32 batch into a float64 model is a bug to report."""
    want, got = np.dtype(module_dtype).name, np.dtype(x_dtype).name
    lin = Linear(3, 2, dtype=module_dtype)
    with pytest.raises(TypeError, match=rf"x has dtype {got} but the module's parameters are {want}"):
        lin(np.zeros((2, 3), dtype=x_dtype))
    for cls in (LSTM, GRU, RNN):
        rnn = cls(3, 2, dtype=module_dtype)
        with pytest.raises(TypeError, match=rf"x has dtype {got} but the module's parameters are {want}"):
            rnn(np.zeros((4, 2, 3), dtype=x_dtype))
    lstm = LSTM(3, 2, dtype=module_dtype)
    x = np.zeros((4, 2, 3), dtype=module_dtype)
    h_ok, h_bad = np.zeros((1, 2, 2), dtype=module_dtype), np.zeros((1, 2, 2), dtype=x_dtype)
    with pytest.raises(TypeError, match=rf"h0 has dtype {got}"):
        lstm(x, (h_bad, h_ok))
    with pytest.raises(TypeError, match=rf"c0 has dtype {got}"):
        lstm(x, (h_ok, h_bad))


@pytest.mark.parametrize("x_dtype", [np.int64, np.int32, np.float16, np.complex128, bool])
def test_inputs_that_are_not_float32_float64_are_refused(x_dtype):
    lin, lstm = Linear(3, 2, dtype=F64), LSTM(3, 2, dtype=F64)
    with pytest.raises(TypeError, match=r"x must be float32 or float64, got dtype"):
        lin(np.zeros((2, 3), dtype=x_dtype))
    with pytest.raises(TypeError, match=r"x must be float32 or float64, got dtype"):
        lstm(np.zeros((4, 2, 3), dtype=x_dtype))


@pytest.mark.parametrize("x", [[[0.0, 1.0, 2.0]], 1.0, None, "x"], ids=repr)
def test_inputs_that_are_not_arrays_are_refused(x):
    with pytest.raises(TypeError, match=r"x must be an array, got"):
        Linear(3, 2, dtype=F64)(x)
    with pytest.raises(TypeError, match=r"x must be an array, got"):
        LSTM(3, 2, dtype=F64)(x)


# ---- constructor sizes and probabilities ---------------------------------------------------------


@pytest.mark.parametrize(
    "make,exc,msg",
    [
        (lambda: Linear(0, 3), ValueError, r"in_features must be >= 1, got 0"),
        (lambda: Linear(3, -2), ValueError, r"out_features must be >= 1, got -2"),
        (lambda: Linear(2.5, 3), TypeError, r"in_features must be an int, got float"),
        (lambda: Linear(True, 3), TypeError, r"in_features must be an int, got bool"),
        (lambda: Embedding(0, 3), ValueError, r"num_embeddings must be >= 1"),
        (lambda: Embedding(4, "3"), TypeError, r"embedding_dim must be an int, got str"),
        (lambda: LSTM(3, 0), ValueError, r"hidden_size must be >= 1"),
        (lambda: LSTM(0, 3), ValueError, r"input_size must be >= 1"),
        (lambda: GRU(3, 3, num_layers=0), ValueError, r"num_layers must be >= 1"),
        (lambda: RNN(3, 3, num_layers=1.0), TypeError, r"num_layers must be an int"),
        (lambda: LSTM(3, 3, 2, dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: LSTM(3, 3, 2, dropout=-0.1), ValueError, r"dropout must be in \[0, 1\)"),
        (lambda: Dropout(1.5), ValueError, r"p must be in \[0, 1\)"),
        (lambda: Dropout("0.1"), TypeError, r"p must be a real number"),
        (lambda: Encoder(SRC_V, H, E, L, dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
        (lambda: Encoder(0, H, E, L), ValueError, r"num_embeddings must be >= 1"),
        (lambda: Decoder(TRG_V, 0, E, L), ValueError, r"hidden_size must be >= 1"),
        (lambda: Decoder(TRG_V, H, E, 0), ValueError, r"num_layers must be >= 1"),
    ],
)
def test_constructors_refuse_bad_sizes(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


# ---- Linear / recurrent layer inputs and initial states ------------------------------------------


def test_linear_refuses_wrong_feature_size():
    lin = Linear(3, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"x has 4 features in its last axis, expected 3"):
        lin(np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"x has 1 features in its last axis, expected 3"):
        lin(np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"x must have at least 1 dimension"):
        lin(np.zeros(()))
    with pytest.raises(ValueError, match=r"x is empty"):
        lin(np.zeros((0, 3)))


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_recurrent_refuses_wrong_feature_size_and_dimensions(cls):
    rnn = cls(3, H, num_layers=2, dtype=F64)
    with pytest.raises(ValueError, match=r"x has 4 features, expected input_size=3"):
        rnn(np.zeros((T, B, 4)))
    with pytest.raises(ValueError, match=r"x must have 3 dimensions, got shape \(4, 3\)"):
        rnn(np.zeros((T, 3)))
    with pytest.raises(ValueError, match=r"x must have 3 dimensions"):
        rnn(np.zeros((1, T, B, 3)))
    with pytest.raises(ValueError, match=r"x is empty"):
        rnn(np.zeros((0, B, 3)))


@pytest.mark.parametrize("shape", [(L, B, H + 1), (L + 1, B, H), (L, B + 1, H), (B, H), (1, L, B, H)])
def test_lstm_refuses_initial_state_of_wrong_shape(shape):
    lstm = LSTM(3, H, num_layers=L, dtype=F64)
    x, ok, bad = np.zeros((T, B, 3)), np.zeros((L, B, H)), np.zeros(shape)
    with pytest.raises(ValueError, match=r"h0 must have"):
        lstm(x, (bad, ok))
    with pytest.raises(ValueError, match=r"c0 must have"):
        lstm(x, (ok, bad))


@pytest.mark.parametrize("shape", [(L, B, H + 1), (L + 1, B, H), (L, B + 1, H), (B, H)])
@pytest.mark.parametrize("cls", [GRU, RNN])
def test_gru_rnn_refuse_initial_state_of_wrong_shape(cls, shape):
    rnn = cls(3, H, num_layers=L, dtype=F64)
    with pytest.raises(ValueError, match=r"h0 must have"):
        rnn(np.zeros((T, B, 3)), np.zeros(shape))


@pytest.mark.parametrize("state", [np.zeros((L, B, H)), (np.zeros((L, B, H)),), [np.zeros((L, B, H))] * 3])
def test_lstm_refuses_state_that_is_not_a_pair(state):
    lstm = LSTM(3, H, num_layers=L, dtype=F64)
    with pytest.raises(TypeError, match=r"state must be a tuple \(h0, c0\) or None"):
        lstm(np.zeros((T, B, 3)), state)


def test_decoder_refuses_state_of_wrong_shape():
    dec = Decoder(TRG_V, H, E, L, dtype=F64)
    ids, ok = np.array([1, 2, 3]), np.zeros((L, 3, H))
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 6\), got \(2, 2, 6\)"):
        dec(ids, np.zeros((L, 2, H)), ok)
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 6\), got \(2, 3, 5\)"):
        dec(ids, ok, np.zeros((L, 3, H - 1)))


def test_decoder_refuses_wrong_float_dtype_state():
    dec = Decoder(TRG_V, H, E, L, dtype=F64)
    ok = np.zeros((L, 3, H))
    with pytest.raises(TypeError, match=r"has dtype float32 but the module's parameters are float64"):
        dec(np.array([1, 2, 3]), ok.astype(np.float32), ok)


# ---- CrossEntropyLoss ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "targets,exc,msg",
    [
        (np.array([0, 5, 1]), ValueError, r"targets must be in \[0, 5\) or equal ignore_index=-100"),
        (np.array([0, -1, 1]), ValueError, r"targets must be in \[0, 5\)"),
        (np.array([0, 1]), ValueError, r"targets has shape \(2,\), expected \(3,\)"),
        (np.array([[0, 1, 2]]), ValueError, r"targets has shape \(1, 3\), expected \(3,\)"),
        (np.array([0.0, 1.0, 2.0]), TypeError, r"targets must be an integer array"),
        (np.array([True, False, True]), TypeError, r"targets must be an integer array"),
        ([0, 1, 2], TypeError, r"targets must be an integer array"),
        (np.array([-100, -100, -100]), ValueError, r"targets: every target equals ignore_index"),
    ],
)
def test_cross_entropy_refuses_bad_targets(targets, exc, msg):
    loss = CrossEntropyLoss()
    with pytest.raises(exc, match=msg):
        loss(np.zeros((3, 5)), targets)
    assert not loss._tape


@pytest.mark.parametrize("value,exc,msg", [
    (1.5, ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
    (-0.1, ValueError, r"label_smoothing must be in \[0, 1\], got -0.1"),
    ("0.1", TypeError, r"label_smoothing must be a real number, got str"),
])
def test_cross_entropy_refuses_a_bad_label_smoothing(value, exc, msg):
    with pytest.raises(exc, match=msg):
        CrossEntropyLoss(label_smoothing=value)


def test_g2p_train_refuses_a_bad_label_smoothing(tmp_path, capsys):
    from minis2s.cli import main

    assert main(["g2p", "train", "--out", str(tmp_path / "run"), "--label-smoothing", "2"]) != 0
    assert "label_smoothing must be <= 1.0, got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cross_entropy_refuses_all_targets_ignored_with_custom_ignore_index():
    with pytest.raises(ValueError, match=r"every target equals ignore_index"):
        CrossEntropyLoss(ignore_index=0)(np.zeros((3, 5)), np.array([0, 0, 0]))


def test_cross_entropy_refuses_bad_logits():
    loss = CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"logits must have 2 dimensions"):
        loss(np.zeros(5), np.array([0]))
    with pytest.raises(TypeError, match=r"logits must be float32 or float64"):
        loss(np.zeros((3, 5), dtype=np.int64), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"logits must be an array"):
        loss([[0.0, 1.0]], np.array([0]))


# ---- backward without forward --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,backward",
    [
        (lambda: Linear(3, 2, dtype=F64), lambda m: m.backward(np.zeros((1, 2)))),
        (lambda: Embedding(5, 2, dtype=F64), lambda m: m.backward(np.zeros((1, 2)))),
        (lambda: LSTM(3, 2, dtype=F64), lambda m: m.backward(np.zeros((1, 1, 2)))),
        (lambda: GRU(3, 2, dtype=F64), lambda m: m.backward(np.zeros((1, 1, 2)))),
        (lambda: Dropout(0.5), lambda m: m.backward(np.zeros(3))),
        (lambda: CrossEntropyLoss(), lambda m: m.backward()),
        (lambda: Decoder(5, 2, 3, 1, dtype=F64), lambda m: m.backward(np.zeros((1, 5)))),
        (lambda: Encoder(5, 2, 3, 1, dtype=F64), lambda m: m.backward(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)))),
    ],
    ids=["Linear", "Embedding", "LSTM", "GRU", "Dropout", "CrossEntropyLoss", "Decoder", "Encoder"],
)
def test_backward_without_forward_is_refused(make, backward):
    with pytest.raises(RuntimeError, match=r"backward called without a matching forward"):
        backward(make())


def test_seq2seq_backward_without_forward_twice_or_after_no_grad_is_refused(model):
    src, trg = good_batch()
    dout = np.ones((T, B, TRG_V))
    with pytest.raises(RuntimeError, match=r"Seq2Seq.backward called without a matching forward"):
        model.backward(dout)
    model(src, trg)
    model.backward(dout)
    with pytest.raises(RuntimeError, match=r"without a matching forward"):
        model.backward(dout)  # the caches are used up
    with no_grad():
        model(src, trg)
    with pytest.raises(RuntimeError, match=r"without a matching forward"):
        model.backward(dout)


def test_seq2seq_backward_refuses_misshaped_gradient(model):
    model(*good_batch())
    with pytest.raises(ValueError, match=rf"doutputs must have shape \({T}, {B}, {TRG_V}\), got"):
        model.backward(np.ones((T, B, TRG_V + 1)))
    with pytest.raises(ValueError, match=r"doutputs must have 3 dimensions"):
        model.backward(np.ones((T, B)))


# ---- state dicts ---------------------------------------------------------------------------------


def bad_state_dicts(good):
    """(label, state dict, exception, message) for every way a state dict can be wrong."""
    keys = list(good)
    last = keys[-1]
    cases = []
    sd = dict(good)
    del sd[last]
    cases.append(("missing key", sd, KeyError, rf"missing keys \[.{re.escape(last)}.\]"))
    sd = dict(good, **{"encoder.rnn.weight_ih_l9": good[keys[0]]})
    cases.append(("unexpected key", sd, KeyError, r"unexpected keys \[.encoder.rnn.weight_ih_l9.\]"))
    sd = dict(good)
    sd[last] = np.zeros(good[last].shape + (1,))
    cases.append(("extra dim", sd, ValueError, rf"state_dict\[.{re.escape(last)}.\] has shape"))
    sd = dict(good)
    sd[last] = good[last].T.copy() if good[last].ndim == 2 else good[last][:-1]
    cases.append(("wrong shape", sd, ValueError, rf"state_dict\[.{re.escape(last)}.\] has shape"))
    for label, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        sd = dict(good)
        sd[last] = good[last].copy()
        sd[last].flat[0] = value
        cases.append((label, sd, ValueError, rf"state_dict\[.{re.escape(last)}.\] contains NaN or infinite"))
    for label, value in (("None", None), ("str", "weights"), ("list", good[last].tolist()),
                         ("float", 1.0), ("bool array", np.ones(good[last].shape, dtype=bool)),
                         ("complex array", good[last].astype(np.complex128)),
                         ("object array", good[last].astype(object))):
        sd = dict(good)
        sd[last] = value
        cases.append((label, sd, TypeError, rf"state_dict\[.{re.escape(last)}.\]"))
    return cases


BAD_STATE_DICT_LABELS = ["missing key", "unexpected key", "extra dim", "wrong shape", "nan", "inf", "-inf",
                         "None", "str", "list", "float", "bool array", "complex array", "object array"]


@pytest.mark.parametrize("label", BAD_STATE_DICT_LABELS)
def test_load_state_dict_refuses_bad_state_and_leaves_the_module_unchanged(model, label):
    """The bad entry is the last key, so a load that copied as it went would already have
    overwritten every other parameter when it failed."""
    good = {k: v + 1.0 for k, v in model.state_dict().items()}
    cases = {c[0]: c[1:] for c in bad_state_dicts(good)}
    assert list(cases) == BAD_STATE_DICT_LABELS
    sd, exc, msg = cases[label]
    before = snapshot(model)
    with pytest.raises(exc, match=msg):
        model.load_state_dict(sd)
    assert_unchanged(model, before)


def test_load_state_dict_refuses_torch_tensor_with_nan(model):
    good = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    key = "decoder.fc_out.bias"
    good[key] = good[key].clone()
    good[key][0] = float("nan")
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"state_dict\[.{re.escape(key)}.\] contains NaN"):
        model.load_state_dict(good)
    assert_unchanged(model, before)


@pytest.mark.parametrize("sd", [None, [("a", np.zeros(1))], "state", np.zeros(3)], ids=repr)
def test_load_state_dict_refuses_a_non_mapping(model, sd):
    with pytest.raises(TypeError, match=r"state_dict must be a mapping"):
        model.load_state_dict(sd)


def test_load_state_dict_non_strict_skips_unexpected_and_missing_keys(model):
    sd = model.state_dict()
    new = np.full_like(sd["decoder.fc_out.bias"], 0.5)
    model.load_state_dict({"decoder.fc_out.bias": new, "extra.weight": np.zeros(2)}, strict=False)
    np.testing.assert_array_equal(model.decoder.fc_out.bias.data, new)
    np.testing.assert_array_equal(model.decoder.fc_out.weight.data, sd["decoder.fc_out.weight"])


def test_load_state_dict_non_strict_still_refuses_bad_values(model):
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"has shape"):
        model.load_state_dict({"decoder.fc_out.bias": np.zeros(2)}, strict=False)
    assert_unchanged(model, before)


# ---- optimisers ----------------------------------------------------------------------------------

OPTIMISERS = {"SGD": optim.SGD, "Adam": optim.Adam}


@pytest.mark.parametrize("lr", [0, 0.0, -0.1, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_refuses_lr_not_positive(model, name, lr):
    with pytest.raises(ValueError, match=rf"lr must be a positive finite number, got {re.escape(repr(lr))}"):
        OPTIMISERS[name](model.parameters(), lr=lr)


@pytest.mark.parametrize("lr", ["0.1", None, True, [0.1]], ids=repr)
@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_refuses_lr_that_is_not_a_number(model, name, lr):
    with pytest.raises(TypeError, match=r"lr must be a real number"):
        OPTIMISERS[name](model.parameters(), lr=lr)


@pytest.mark.parametrize("lr", [1, 0.1, np.float32(0.1), np.float64(1e-3)], ids=repr)
def test_optimiser_accepts_positive_lr_of_any_real_type(model, lr):
    assert optim.SGD(model.parameters(), lr=lr).lr == float(lr)


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_refuses_empty_or_non_parameter_params(model, name):
    with pytest.raises(ValueError, match=r"params is empty"):
        OPTIMISERS[name]([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must be a minis2s Parameter, got ndarray"):
        OPTIMISERS[name]([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must be a minis2s Parameter, got Tensor"):
        OPTIMISERS[name]([torch.zeros(3, requires_grad=True)], lr=0.1)


@pytest.mark.parametrize(
    "make,exc,msg",
    [
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.1), ValueError, r"momentum must be in \[0, 1\]"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=1.5), ValueError, r"momentum must be in \[0, 1\]"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4), ValueError, r"weight_decay must be a finite number >= 0"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=math.nan), ValueError, r"weight_decay must be a finite"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay="0.1"), TypeError, r"weight_decay must be a real number"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, r"nesterov needs momentum > 0"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
        (lambda p: optim.Adam(p, betas=(0.9,)), ValueError, r"betas must be a pair"),
        (lambda p: optim.Adam(p, betas=0.9), ValueError, r"betas must be a pair"),
        (lambda p: optim.Adam(p, eps=0.0), ValueError, r"eps must be a positive finite number"),
        (lambda p: optim.Adam(p, eps=-1e-8), ValueError, r"eps must be a positive finite number"),
        (lambda p: optim.Adam(p, weight_decay=-0.01), ValueError, r"weight_decay must be a finite number >= 0"),
        (lambda p: optim.Adam(p, weight_decay=math.inf), ValueError, r"weight_decay must be a finite"),
    ],
)
def test_optimiser_refuses_bad_hyperparameters(model, make, exc, msg):
    with pytest.raises(exc, match=msg):
        make(model.parameters())


@pytest.mark.parametrize("max_norm", [0, -1.0, math.nan])
def test_clip_grad_norm_refuses_max_norm_not_positive(model, max_norm):
    with pytest.raises(ValueError, match=r"max_norm must be a positive finite number"):
        optim.clip_grad_norm_(model.parameters(), max_norm)


def test_clip_grad_norm_refuses_max_norm_that_is_not_a_number(model):
    with pytest.raises(TypeError, match=r"max_norm must be a real number"):
        optim.clip_grad_norm_(model.parameters(), "1.0")


def trained_adam(model):
    opt = optim.Adam(model.parameters(), lr=0.01)
    src, trg = good_batch()
    model(src, trg, generator=np.random.default_rng(0))
    model.backward(np.ones((T, B, TRG_V)))
    opt.step()
    return opt


def test_optimiser_load_state_dict_refuses_bad_state_and_changes_nothing(model):
    opt = trained_adam(model)
    good = opt.state_dict()
    fresh = optim.Adam(model.parameters(), lr=0.5)

    def assert_fresh_unchanged():
        assert fresh.lr == 0.5 and all(not s for s in fresh.state)

    with pytest.raises(ValueError, match=r"optimiser state has 1 entries for \d+ parameters"):
        fresh.load_state_dict({"lr": 0.01, "state": good["state"][:1]})
    assert_fresh_unchanged()
    with pytest.raises(KeyError, match=r"optimiser state_dict must be a mapping with keys 'lr' and 'state'"):
        fresh.load_state_dict({"state": good["state"]})
    with pytest.raises(KeyError, match=r"'lr' and 'state'"):
        fresh.load_state_dict(None)
    with pytest.raises(ValueError, match=r"state_dict\['lr'\] must be a positive finite number"):
        fresh.load_state_dict({"lr": -1.0, "state": good["state"]})
    assert_fresh_unchanged()
    last = len(good["state"]) - 1
    for value, msg in ((np.zeros(3), r"has shape \(3,\), expected"),
                       (np.full_like(good["state"][last]["exp_avg"], np.nan), r"contains NaN or infinite")):
        bad = {"lr": 0.01, "state": [dict(s) for s in good["state"]]}
        bad["state"][last]["exp_avg"] = value
        with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[{last}\]\['exp_avg'\] " + msg):
            fresh.load_state_dict(bad)
        assert_fresh_unchanged()
    fresh.load_state_dict(good)
    assert fresh.lr == 0.01 and fresh.state[0]["step"] == 1


@pytest.mark.parametrize("kwargs,fragment", [
    ({"batch_size": -1}, "batch_size must be >= 1"), ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"max_len": 0}, "max_len must be >= 1"), ({"beam": True}, "beam must be an int"),
    ({"nbest": 3, "beam": 2}, "cannot exceed the beam width"),
])
def test_g2p_and_translate_refuse_bad_decoding_arguments(kwargs, fragment):
    """Once answered silently wrong ([None, None] for batch_size=-1, a full answer for
    max_len=0, beam=True taken as 1); refused now, by the one decoding entry both use."""
    from minis2s.g2p import G2P

    g2p = G2P("seq2seq")
    with pytest.raises((ValueError, TypeError), match=fragment):
        g2p.predict(["hello", "world"], **kwargs)
    with pytest.raises(TypeError, match="not one str"):
        g2p("hello")  # once: each letter pronounced as a word


def test_a_model_json_reverse_source_missing_or_a_string_cannot_mislead(tmp_path):
    """Once: without reverse_source (defaulting to True) or with the string "false", the shipped
    attention model said hello -> AA L AH. Missing now means the architecture's own default (no
    reversal for attention); a string is refused, naming the setting."""
    import json
    import shutil

    from minis2s.checkpoint import CheckpointError, seal_model_dir
    from minis2s.g2p import G2P, PRETRAINED_MODELS

    folder = tmp_path / "att"
    shutil.copytree(PRETRAINED_MODELS["attention"], folder)
    meta = json.loads((folder / "model.json").read_text())
    del meta["model"]["reverse_source"]
    (folder / "model.json").write_text(json.dumps(meta))
    seal_model_dir(folder)  # edited by hand and vouched for: its content is still checked
    assert G2P(str(folder))(["hello"]) == [["HH", "EH", "L", "OW"]]
    meta["model"]["reverse_source"] = "false"
    (folder / "model.json").write_text(json.dumps(meta))
    seal_model_dir(folder)
    with pytest.raises(CheckpointError, match="reverse_source must be a bool, got str 'false'"):
        G2P(str(folder))
