"""G2P scoring: word error rate and phoneme error rate against multiple references.

For each word the reference closest to the prediction (by edit distance) counts.
WER = share of words with any error; PER = Σ edit distance / Σ length of those references.
"""
from __future__ import annotations


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (unit costs), O(len(a)·len(b))."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def score(predictions, references):
    """predictions: list of phoneme sequences; references: list of lists of sequences.

    Returns dict(wer, per, words, errors, edits, ref_len) with wer/per as fractions.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets")
    if not predictions:
        raise ValueError("predictions is empty")
    errors = edits = ref_len = 0
    for pred, refs in zip(predictions, references):
        if not refs:
            raise ValueError("every word needs at least one reference pronunciation")
        d, ref = min(((edit_distance(pred, r), r) for r in refs), key=lambda t: (t[0], len(t[1])))
        errors += d > 0
        edits += d
        ref_len += len(ref)
    return {"wer": errors / len(predictions), "per": edits / ref_len, "words": len(predictions),
            "errors": errors, "edits": edits, "ref_len": ref_len}
