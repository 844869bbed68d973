"""Batched greedy decoding and beam search.

Both work with any model that offers the decoding interface of ``Seq2Seq``:
``init_decoder_state(src, src_lengths) -> state``, ``decode_step(input (B,), state) ->
(logits (B, V), state)`` and ``select_state(state, index) -> state`` (rows of the batch).
Each sequence ends at its own <eos>; results never include <sos> or <eos>.
"""
from __future__ import annotations

import numpy as np

from minis2s.backend import to_numpy
from minis2s.data.batching import make_batches
from minis2s.nn import no_grad
from minis2s.ops import log_softmax
from minis2s.validate import check_nonnegative_float, check_positive_int


def greedy_decode(model, src, src_lengths=None, *, max_len: int, sos_id: int, eos_id: int):
    """src: (S, B) ids -> list of B token-id lists, argmax at every step, up to ``max_len``."""
    max_len = check_positive_int("max_len", max_len)
    B = src.shape[1]
    out = np.full((max_len, B), eos_id, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    with no_grad():
        state = model.init_decoder_state(src, src_lengths)
        input = np.full(B, sos_id, dtype=np.int64)
        for t in range(max_len):
            logits, state = model.decode_step(input, state)
            input = to_numpy(logits.argmax(axis=1)).astype(np.int64)  # (B,)
            out[t] = np.where(done, eos_id, input)
            done |= input == eos_id
            if done.all():
                break
    return [_until_eos(out[:, b], eos_id) for b in range(B)]


def _until_eos(ids, eos_id):
    ids = [int(i) for i in ids]
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def beam_search(model, src, src_lengths=None, *, beam: int, max_len: int, sos_id: int, eos_id: int,
                nbest: int = 1, alpha: float = 1.0):
    """Beam search of width ``beam`` for every row of ``src`` (S, B) at once.

    Hypotheses are ranked by log-probability / length**alpha (length counts the <eos>), the
    usual length normalisation (alpha 0: none). A row stops when ``beam`` hypotheses have
    ended in <eos>; at ``max_len`` the unfinished ones are ranked too.

    Returns, per row, a list of up to ``nbest`` (token ids, normalised score), best first.
    With beam=1 the result equals greedy_decode.
    """
    k = check_positive_int("beam", beam)
    nbest = check_positive_int("nbest", nbest)
    max_len = check_positive_int("max_len", max_len)
    if nbest > k:
        raise ValueError(f"nbest ({nbest}) cannot exceed the beam width ({k})")
    alpha = check_nonnegative_float("alpha", alpha)
    B = src.shape[1]
    finished = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    with no_grad():
        state = model.init_decoder_state(src, src_lengths)
        state = model.select_state(state, np.repeat(np.arange(B), k))  # (L, B·k, H)
        scores = np.full((B, k), -np.inf)
        scores[:, 0] = 0.0  # one live hypothesis per row at the start
        seqs = np.zeros((B, k, 0), dtype=np.int64)
        input = np.full(B * k, sos_id, dtype=np.int64)
        for t in range(max_len):
            logits, state = model.decode_step(input, state)
            logp = to_numpy(log_softmax(logits, axis=1)).astype(np.float64)  # (B·k, V)
            V = logp.shape[1]
            cand = (scores[:, :, None] + logp.reshape(B, k, V)).reshape(B, k * V)  # (B, k·V)
            top = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * k]  # enough to refill k
            new_scores = np.full((B, k), -np.inf)
            new_beam = np.zeros((B, k), dtype=np.int64)
            new_tok = np.full((B, k), eos_id, dtype=np.int64)
            for b in range(B):
                if done[b]:
                    continue
                j = 0
                for c in top[b]:
                    s = cand[b, c]
                    if s == -np.inf:
                        break
                    src_beam, tok = divmod(int(c), V)
                    if tok == eos_id:
                        finished[b].append((s / (t + 1) ** alpha, seqs[b, src_beam].tolist()))
                    else:
                        new_scores[b, j], new_beam[b, j], new_tok[b, j] = s, src_beam, tok
                        j += 1
                        if j == k:
                            break
                if len(finished[b]) >= k or j == 0:
                    done[b] = True
            if done.all():
                break
            seqs = np.concatenate([seqs[np.arange(B)[:, None], new_beam], new_tok[:, :, None]], axis=2)
            state = model.select_state(state, (np.arange(B)[:, None] * k + new_beam).reshape(-1))
            input = new_tok.reshape(-1)
            scores = np.where(done[:, None], -np.inf, new_scores)
    for b in range(B):  # rows cut off by max_len: rank their live hypotheses too
        if not done[b]:
            for j in range(k):
                if scores[b, j] > -np.inf:
                    finished[b].append((scores[b, j] / seqs.shape[2] ** alpha, seqs[b, j].tolist()))
    results = []
    for b in range(B):
        ranked = sorted(finished[b], key=lambda h: -h[0])[:nbest]
        results.append([(ids, float(score)) for score, ids in ranked])
    return results


# Beam search decodes rows · beam hypotheses side by side: a wide beam takes fewer rows at a
# time, so that memory stays bounded (~MAX_HYPOTHESES decoder states) whatever the beam.
MAX_BEAM, MAX_HYPOTHESES = 1024, 4096


def decode_batched(model, sources, *, sos_id: int, eos_id: int, beam: int = 1, nbest: int = 1,
                   alpha: float = 1.0, batch_size: int = 256, max_len: int | None = None, map_batches=None):
    """Decode a list of source id lists in length-bucketed batches; results in input order.

    Returns, for each source, a list of ``nbest`` (target ids, score) pairs, best first: greedy
    (score 0.0) when ``beam`` and ``nbest`` are 1, beam search otherwise. ``max_len``: the most
    target tokens (default: 2 × the batch's longest source + 10). ``map_batches(fn, batches)``:
    how the batches are decoded (default: in turn; training on several ranks spreads them, see
    minis2s/training/distributed.py), the same batches either way."""
    beam = check_positive_int("beam", beam)
    if beam > MAX_BEAM:
        raise ValueError(f"beam must be at most {MAX_BEAM} (each hypothesis holds the decoder's state and, "
                         f"with attention, a copy of the source's encoding), got {beam}")
    nbest = check_positive_int("nbest", nbest)
    if nbest > beam:
        raise ValueError(f"nbest ({nbest}) cannot exceed the beam width ({beam})")
    batch_size = check_positive_int("batch_size", batch_size)
    batch_size = min(batch_size, max(1, MAX_HYPOTHESES // beam))  # rows · beam hypotheses decode at once
    if max_len is not None:
        max_len = check_positive_int("max_len", max_len)
    alpha = check_nonnegative_float("alpha", alpha)
    results = [None] * len(sources)
    if not sources:
        return results

    def decode(batch):
        kw = {"max_len": max_len or int(batch.src_lengths.max()) * 2 + 10, "sos_id": sos_id, "eos_id": eos_id}
        if beam == 1 and nbest == 1:
            return [[(h, 0.0)] for h in greedy_decode(model, batch.src, batch.src_lengths, **kw)]
        return beam_search(model, batch.src, batch.src_lengths, beam=beam, nbest=nbest, alpha=alpha, **kw)

    batches = make_batches(sources, None, batch_size)
    for batch, hyps in zip(batches, (map_batches or _map)(decode, batches)):
        for j, i in enumerate(batch.index):
            results[i] = hyps[j]
    return results


def _map(fn, items) -> list:
    return [fn(x) for x in items]
