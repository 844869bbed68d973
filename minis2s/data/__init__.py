"""Data: vocabularies, padded/bucketed batches, and datasets that ship inside PyPI packages."""
from minis2s.data.batching import Batch, make_batches, pad_sequences
from minis2s.data.vocab import Vocab

__all__ = ["Batch", "Vocab", "make_batches", "pad_sequences"]
