from minis2s.models.attention import AttentionDecoder, AttentionEncoder, AttentionSeq2Seq
from minis2s.models.config import ModelConfig, build_model
from minis2s.models.ensemble import Ensemble
from minis2s.models.seq2seq import Decoder, Encoder, Seq2Seq

__all__ = ["AttentionDecoder", "AttentionEncoder", "AttentionSeq2Seq", "Decoder", "Encoder", "Ensemble", "ModelConfig",
           "Seq2Seq", "build_model"]
