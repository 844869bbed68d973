"""Scoring predictions against multiple references.

``score`` is G2P's: for each word the reference closest to the prediction (by edit distance)
counts; WER = share of words with any error; PER = Σ edit distance / Σ length of those references.

``sequence_metrics`` is any string-to-string task's: exact match, token and character error
rates (edit distance to the closest reference), and sacrebleu's corpus BLEU and chrF.
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


# ---- generic sequence metrics (any seq2seq task: strings in, strings out) -----------------------
METRICS = ("exact", "wer", "cer", "bleu", "chrf")
LOWER_IS_BETTER = {"exact": False, "wer": True, "cer": True, "bleu": False, "chrf": False}


def _fast_edit_distance(a, b) -> int:
    """``edit_distance(a, b)``, the same number, computed bit-parallel (Myers 1999, in Hyyrö's
    2001 formulation): column j of the DP table is held as two bit vectors of +1/-1 vertical
    deltas (``pv``, ``mv``) over the |a| rows, and each element of ``b`` updates the whole column
    with a dozen integer operations, so the cost is O(|b|) big-int steps instead of |a|·|b|
    Python steps. Elements must be hashable. ``test_fast_edit_distance_matches_reference``
    checks it against ``edit_distance``, the specification.
    """
    a, b = tuple(a), tuple(b)
    # equal prefixes and suffixes never cost anything and are the bulk of a good prediction
    i, n = 0, min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    a, b = a[i:], b[i:]
    j, n = 0, min(len(a), len(b))
    while j < n and a[-1 - j] == b[-1 - j]:
        j += 1
    a, b = a[: len(a) - j], b[: len(b) - j]
    if len(a) > len(b):
        a, b = b, a  # the bit vectors span the shorter sequence
    m = len(a)
    if m == 0:
        return len(b)
    peq: dict = {}  # element -> bit mask of the rows of a holding it
    for i, x in enumerate(a):
        peq[x] = peq.get(x, 0) | (1 << i)
    full, last = (1 << m) - 1, 1 << (m - 1)
    pv, mv, dist = full, 0, m  # column 0: D[i][0] = i, every vertical delta +1
    for y in b:
        eq = peq.get(y, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)  # horizontal +1 deltas
        mh = pv & xh  # horizontal -1 deltas
        if ph & last:
            dist += 1
        elif mh & last:
            dist -= 1
        ph = (ph << 1) | 1  # row 0 grows by one per column: D[0][j] = j
        mh <<= 1
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return dist


def _closest_edits(hyps, refs_per_example) -> tuple[int, int]:
    """Σ edit distance to the closest reference (ties: the shorter) and Σ that reference's length."""
    edits = length = 0
    for hyp, refs in zip(hyps, refs_per_example):
        d, n = min((_fast_edit_distance(hyp, r), len(r)) for r in refs)
        edits += d
        length += n
    return edits, length


def _rate(edits: int, length: int) -> float:
    # every closest reference empty (e.g. only spaces, with str.split): no errors is 0, any is inf
    return edits / length if length else (0.0 if edits == 0 else float("inf"))


def _check_metric_inputs(hypotheses, references) -> None:
    if not isinstance(hypotheses, (list, tuple)) or not isinstance(references, (list, tuple)):
        raise TypeError("hypotheses and references must be lists")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("hypotheses is empty")
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise TypeError(f"hypotheses[{i}] must be a str, got {type(hyp).__name__}")
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)):
            raise TypeError(f"references[{i}] must be a list of reference strings, got {type(refs).__name__}")
        if not refs:
            raise ValueError(f"references[{i}] is empty: every example needs at least one reference")
        for r in refs:
            if not isinstance(r, str):
                raise TypeError(f"references[{i}] holds a {type(r).__name__}, not a str")


def _sacrebleu_scores(hypotheses, references) -> tuple[float, float]:
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError as e:  # pragma: no cover
        raise RuntimeError(f"bleu and chrf need the 'sacrebleu' package ({e}): pip install sacrebleu") from e
    # sacrebleu takes reference *streams*: streams[k][i] is example i's k-th reference. Examples
    # with fewer references are padded with None, which sacrebleu drops (base.py,
    # _cache_references); an empty string would instead count as a real, empty reference.
    k = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(k)]
    return (BLEU().corpus_score(list(hypotheses), streams).score,
            CHRF().corpus_score(list(hypotheses), streams).score)


def sequence_metrics(hypotheses, references, tokenize=str.split) -> dict:
    """Scores of predicted strings against one or more acceptable references each.

    hypotheses[i]: example i's detokenised prediction (str); references[i]: a non-empty list of
    the strings accepted for example i (several when its source occurs more than once).
    Returns ``{"examples": n, "exact", "wer", "cer", "bleu", "chrf"}``:

    * exact: the fraction of examples equal to one of their references;
    * wer: Σ edit distance between ``tokenize(hyp)`` and the closest ``tokenize(ref)`` / Σ that
      reference's token count (closest: fewest edits, then shorter), a fraction;
    * cer: the same over characters (spaces included);
    * bleu, chrf: sacrebleu's corpus BLEU and chrF with its default settings, on its 0-100 scale.
    """
    _check_metric_inputs(hypotheses, references)
    if not callable(tokenize):
        raise TypeError(f"tokenize must be callable, got {type(tokenize).__name__}")
    n = len(hypotheses)
    exact = sum(hyp in refs for hyp, refs in zip(hypotheses, references)) / n
    word_edits, words = _closest_edits([tokenize(h) for h in hypotheses],
                                       [[tokenize(r) for r in refs] for refs in references])
    char_edits, chars = _closest_edits(hypotheses, references)
    bleu, chrf = _sacrebleu_scores(hypotheses, references)
    return {"examples": n, "exact": exact, "wer": _rate(word_edits, words), "cer": _rate(char_edits, chars),
            "bleu": float(bleu), "chrf": float(chrf)}
