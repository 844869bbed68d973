"""Attention over encoder outputs: additive (Bahdanau) and multiplicative (Luong dot, general).

One decoder query q (B, Hq) attends over the encoder outputs k (S, B, Hk) of its own batch row;
``mask`` (S, B) is True at real source positions, False at padding.

    score      bahdanau   e_s = vᵀ tanh(W_q q + W_k k_s)          W_q (A, Hq), W_k (A, Hk), v (A,)
               general    e_s = qᵀ W k_s                          W (Hq, Hk)
               dot        e_s = qᵀ k_s                            (Hq = Hk)
    weights    a = softmax over s of e, restricted to mask: a_s = 0 exactly where mask is False
    context    c = Σ_s a_s k_s                                    (B, Hk)

The keys' side of every score is one projection of the whole source, the same at every decoder
step, so it is split off and computed once per batch (a GEMM over S·B rows, not one per step):

    attention_keys_forward:   proj_s = W_k k_s (bahdanau), W k_s (general), k_s (dot)
    attention_step_forward:   e_s = vᵀ tanh(W_q q + proj_s) (bahdanau) or qᵀ proj_s (general, dot)

Backward, given dc (B, Hk) (and optionally da, the gradient of the returned weights):

    da_s  = dcᵀ k_s (+ da_s)                dk_s += a_s dc                  (context)
    de_s  = a_s (da_s - Σ_r a_r da_r)                                       (softmax; 0 where masked)
    bahdanau   u_s = tanh(W_q q + proj_s), e_s = vᵀ u_s:
               dv = Σ_s de_s u_s          dproj_s = de_s v ⊙ (1 - u_s²)
               dq = W_qᵀ Σ_s dproj_s      dW_q = Σ_s dproj_s qᵀ
    general, dot:   dq = Σ_s de_s proj_s     dproj_s = de_s q
    keys:  dk_s += W_kᵀ dproj_s (bahdanau), Wᵀ dproj_s (general), dproj_s (dot)
           dW_k = Σ dproj_s k_sᵀ,  dW = Σ dproj_s k_sᵀ

``attention_forward`` / ``attention_backward`` run both halves: the whole op in one call, the
specification the tests check by finite differences. Shapes: S source steps, B batch, Hq query
size, Hk key size, A attention size. Parameters are tuples in the order of ``ATTENTION_PARAMS``.
"""
from __future__ import annotations

from minis2s.backend import array_module

# kind -> the names of its parameters, in the order the functions below take and return them
ATTENTION_PARAMS = {
    "bahdanau": ("weight_query", "weight_key", "v"),
    "general": ("weight",),
    "dot": (),
}


def _check_kind(kind):
    if kind not in ATTENTION_PARAMS:
        raise ValueError(f"attention kind must be one of {sorted(ATTENTION_PARAMS)}, got {kind!r}")


def attention_keys_forward(kind, keys, params):
    """keys: (S, B, Hk) -> proj (S, B, A|Hq|Hk), cache. Computed once per source batch."""
    _check_kind(kind)
    if kind == "bahdanau":
        w_key = params[1]  # (A, Hk)
        proj = keys @ w_key.T  # (S, B, A)
    elif kind == "general":
        (w,) = params  # (Hq, Hk)
        proj = keys @ w.T  # (S, B, Hq): W k_s for every s at once
    else:
        proj = keys  # (S, B, Hk)
    return proj, (kind, keys, params)


def attention_keys_backward(dproj, cache):
    """dproj: (S, B, ·) -> dkeys (S, B, Hk), dparams (a tuple in ATTENTION_PARAMS order, None
    for parameters the keys' half does not use)."""
    kind, keys, params = cache
    if kind == "bahdanau":
        w_key = params[1]
        dkeys = dproj @ w_key  # (S, B, Hk)
        dw_key = dproj.reshape(-1, dproj.shape[2]).T @ keys.reshape(-1, keys.shape[2])  # (A, Hk)
        return dkeys, (None, dw_key, None)
    if kind == "general":
        (w,) = params
        dkeys = dproj @ w  # (S, B, Hk)
        dw = dproj.reshape(-1, dproj.shape[2]).T @ keys.reshape(-1, keys.shape[2])  # (Hq, Hk)
        return dkeys, (dw,)
    return dproj, ()


def masked_softmax_forward(scores, mask):
    """scores: (S, B), mask: (S, B) bool (every column has a True) -> weights (S, B), cache.

    Masked positions never enter the sum and get weight exactly 0 (``where``, not a large
    negative number added to the score, so no -inf or NaN can appear).
    """
    xp = array_module(scores)
    m = xp.max(xp.where(mask, scores, -xp.inf), axis=0, keepdims=True)  # (1, B): max over real s
    e = xp.where(mask, xp.exp(xp.where(mask, scores, m) - m), 0.0)  # (S, B)
    a = e / e.sum(axis=0, keepdims=True)  # (S, B)
    return a, a


def masked_softmax_backward(dweights, cache):
    """dweights: (S, B) -> dscores (S, B): a ⊙ (da - Σ_s a_s da_s); 0 where masked (a = 0)."""
    a = cache
    return a * (dweights - (a * dweights).sum(axis=0, keepdims=True))


def attention_step_forward(kind, query, keys, proj, mask, params):
    """query: (B, Hq); keys: (S, B, Hk); proj: from attention_keys_forward; mask: (S, B) bool.

    Returns context (B, Hk), weights (S, B) and the cache.
    """
    _check_kind(kind)
    xp = array_module(query)
    u = None
    if kind == "bahdanau":
        w_query, _, v = params  # (A, Hq), (A, Hk), (A,)
        u = xp.tanh(proj + (query @ w_query.T)[None])  # (S, B, A)
        scores = u @ v  # (S, B)
    else:
        scores = xp.einsum("sbh,bh->sb", proj, query)  # (S, B): qᵀ proj_s
    weights, softmax_cache = masked_softmax_forward(scores, mask)  # (S, B)
    context = xp.einsum("sb,sbh->bh", weights, keys)  # (B, Hk)
    cache = (kind, query, keys, proj, params, u, weights, softmax_cache)
    return context, weights, cache


def attention_step_backward(dcontext, cache, dweights=None):
    """dcontext: (B, Hk); dweights: (S, B) or None.

    Returns dquery (B, Hq), dkeys (S, B, Hk) (through the context only), dproj (same shape as
    proj), dparams (a tuple in ATTENTION_PARAMS order, None where the step does not use one).
    """
    kind, query, keys, proj, params, u, weights, softmax_cache = cache
    xp = array_module(dcontext)
    da = xp.einsum("bh,sbh->sb", dcontext, keys)  # (S, B): dcᵀ k_s
    if dweights is not None:
        da = da + dweights
    dkeys = weights[:, :, None] * dcontext[None]  # (S, B, Hk): a_s dc
    de = masked_softmax_backward(da, softmax_cache)  # (S, B)
    if kind == "bahdanau":
        w_query, _, v = params
        dv = xp.einsum("sb,sba->a", de, u)  # (A,)
        dproj = de[:, :, None] * v * (1.0 - u * u)  # (S, B, A): d(W_q q + proj_s)
        dqp = dproj.sum(axis=0)  # (B, A): W_q q is shared by every s
        dquery = dqp @ w_query  # (B, Hq)
        dw_query = dqp.T @ query  # (A, Hq)
        return dquery, dkeys, dproj, (dw_query, None, dv)
    dquery = xp.einsum("sb,sbh->bh", de, proj)  # (B, Hq)
    dproj = de[:, :, None] * query[None]  # (S, B, Hq)
    return dquery, dkeys, dproj, (None,) * len(params)


def attention_forward(kind, query, keys, mask, params):
    """The whole op: query (B, Hq), keys (S, B, Hk), mask (S, B) bool, params (ATTENTION_PARAMS
    order) -> context (B, Hk), weights (S, B), cache."""
    proj, keys_cache = attention_keys_forward(kind, keys, params)
    context, weights, step_cache = attention_step_forward(kind, query, keys, proj, mask, params)
    return context, weights, (keys_cache, step_cache)


def attention_backward(dcontext, cache, dweights=None):
    """dcontext (B, Hk), dweights (S, B) or None -> dquery (B, Hq), dkeys (S, B, Hk), dparams."""
    keys_cache, step_cache = cache
    dquery, dkeys, dproj, dp_step = attention_step_backward(dcontext, step_cache, dweights)
    dkeys_proj, dp_keys = attention_keys_backward(dproj, keys_cache)
    dparams = tuple(a if b is None else b for a, b in zip(dp_step, dp_keys))
    return dquery, dkeys + dkeys_proj, dparams
