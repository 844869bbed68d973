from minis2s.models.seq2seq import Decoder, Encoder, Seq2Seq

__all__ = ["Decoder", "Encoder", "Seq2Seq"]
