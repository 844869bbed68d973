"""minis2s: a sequence-to-sequence (encoder-decoder LSTM) library from scratch in NumPy.

    minis2s.ops        pure forward/backward functions (the float64 reference)
    minis2s.nn         Module, Parameter, Embedding, Linear, LSTM, GRU, RNN, Attention
    minis2s.models     Encoder, Decoder, Seq2Seq (a PyTorch skeleton, completed);
                       AttentionEncoder, AttentionDecoder, AttentionSeq2Seq; Ensemble (decoding only)
    minis2s.optim      SGD, Adam, clip_grad_norm_
    minis2s.gradcheck  finite-difference gradient checks
    minis2s.data       pairs from TSV/JSONL, tokenizers (char, space, sentencepiece), Vocab, batches
    minis2s.task       Seq2SeqTask: any sequence task (data, codecs, model config, metric)
    minis2s.training   TrainConfig, RunState, RunFolder, Trainer, train
    minis2s.trace      with trace(model) as t: every gate, state, attention weight and step gradient
    load_model(DIR)    a trained model folder -> Translator: .translate(strings) -> strings
"""
from minis2s import nn, ops, optim
from minis2s.gradcheck import GradcheckResult, gradcheck, gradcheck_module, rel_error
from minis2s.models import (
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2Seq,
    Decoder,
    Encoder,
    Ensemble,
    Seq2Seq,
)
from minis2s.models.config import ModelConfig
from minis2s.nn import no_grad
from minis2s.random import manual_seed
from minis2s.task import DataConfig, Seq2SeqTask
from minis2s.tracing import trace
from minis2s.training import TrainConfig, train
from minis2s.translator import Translator, load_model

__version__ = "0.1.0"
__all__ = [
    "AttentionDecoder",
    "AttentionEncoder",
    "AttentionSeq2Seq",
    "DataConfig",
    "Decoder",
    "Encoder",
    "Ensemble",
    "GradcheckResult",
    "ModelConfig",
    "Seq2Seq",
    "Seq2SeqTask",
    "TrainConfig",
    "Translator",
    "gradcheck",
    "gradcheck_module",
    "load_model",
    "manual_seed",
    "nn",
    "no_grad",
    "ops",
    "optim",
    "rel_error",
    "trace",
    "train",
]
