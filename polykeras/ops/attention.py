"""``dot_product_attention``: Keras 3's ``keras.ops.dot_product_attention`` as its reference
(NumPy/JAX) backends define it, so that a backend can run attention as one fused kernel
(``torch.nn.functional.scaled_dot_product_attention``) instead of the einsums, mask and
softmax it is made of.

``query`` ``(B, T, N, H)``, ``key`` ``(B, S, N, H)``, ``value`` ``(B, S, N, Hv)`` (Keras's
layout, the heads third) -> ``(B, T, N, Hv)``:

* logits ``einsum("btnh,bsnh->bnts", query, key) * scale`` (``scale`` defaults to
  ``1 / sqrt(H)``);
* ``mask`` (boolean, broadcast to ``(B, N, T, S)``; true = attend) and ``is_causal``
  (lower-triangular over ``(T, S)``, aligned at the top left) join with ``and``; masked
  logits are *replaced* by ``-1e9``, so a query whose keys are all masked attends
  uniformly (the mean of the values), as Keras's NumPy and JAX backends do;
* ``softmax`` over ``S``, then ``einsum("bnts,bsnh->btnh", ., value)``.

The VJP differentiates ``query``, ``key`` and ``value`` (the mask is boolean); masked logits
are constants, so their gradient is zero.
"""

from __future__ import annotations

import numpy as np

from .registry import register

LARGE_NEGATIVE = -1e9  # what masked logits become (as MultiHeadAttention's einsum path)


def _allowed(mask, is_causal: bool, shape: tuple) -> np.ndarray:
    """The boolean ``(B, N, T, S)`` pattern of logits kept."""
    allowed = np.broadcast_to(np.asarray(mask).astype(bool), shape)
    if is_causal:
        allowed = allowed & np.tril(np.ones(shape[-2:], dtype=bool))
    return allowed


def _check(query, key, value, mask) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        if np.ndim(x) != 4:
            raise ValueError(f"ops.dot_product_attention: {name} must be 4-D (batch, sequence, heads, features); "
                             f"got shape {np.shape(x)}")
    if np.shape(key)[:3] != np.shape(value)[:3] or np.shape(query)[-1] != np.shape(key)[-1] \
            or np.shape(query)[2] != np.shape(key)[2] or np.shape(query)[0] != np.shape(key)[0]:
        raise ValueError(f"ops.dot_product_attention: query {np.shape(query)}, key {np.shape(key)} and value "
                         f"{np.shape(value)} must share batch and heads, query and key their features, key and "
                         "value their length")
    if np.ndim(mask) > 4:
        raise ValueError(f"ops.dot_product_attention: mask of shape {np.shape(mask)} does not broadcast to "
                         "(batch, heads, query length, key length)")


def _probabilities(query, key, mask, scale, is_causal):
    scale = 1.0 / np.sqrt(np.shape(key)[-1]) if scale is None else scale
    logits = np.einsum("btnh,bsnh->bnts", query, key) * np.asarray(scale, dtype=np.result_type(query))
    allowed = _allowed(mask, is_causal, logits.shape)
    logits = np.where(allowed, logits, LARGE_NEGATIVE)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True), allowed, scale


def _forward(query, key, value, mask, scale=None, is_causal=False):
    _check(query, key, value, mask)
    probabilities = _probabilities(query, key, mask, scale, is_causal)[0]
    return np.einsum("bnts,bsnh->btnh", probabilities, value)


def _vjp(g, y, arrays, scale=None, is_causal=False):
    query, key, value, mask = arrays
    p, allowed, scale = _probabilities(query, key, mask, scale, is_causal)
    g_value = np.einsum("bnts,btnh->bsnh", p, g)
    g_p = np.einsum("btnh,bsnh->bnts", g, value)
    g_logits = np.where(allowed, p * (g_p - (g_p * p).sum(axis=-1, keepdims=True)), 0.0) * scale
    return (np.einsum("bnts,bsnh->btnh", g_logits, key), np.einsum("bnts,btnh->bsnh", g_logits, query), g_value,
            None)


register("dot_product_attention", ("query", "key", "value", "mask"), _forward, _vjp,
         "softmax(query . key * scale, masked) . value, Keras's (B, T, N, H) layout (called as "
         "ops.dot_product_attention(query, key, value, mask=None, scale=None, is_causal=False))",
         scale=None, is_causal=False)
