"""``MultiHeadAttention``, ``Attention`` and ``AdditiveAttention``, written with
:mod:`polykeras.ops` as Keras 3 writes them, and traced like any custom layer -- so
every backend runs them, and the op registry's hand-written VJPs are their reference.

``MultiHeadAttention``, Keras's definition (rank-3 ``query`` ``(B, T, dim)``, ``value`` ``(B, S, dim_v)``,
``key`` defaulting to ``value``; attention over axis 1):

* projections: ``q = einsum("abc,cde->abde", query, Wq) + bq`` (``Wq``:
  ``(dim, num_heads, key_dim)``), the same for ``k`` (key_dim) and ``v``
  (``value_dim``, default ``key_dim``);
* ``q *= 1 / sqrt(key_dim)``; scores ``einsum("aecd,abcd->acbe", k, q)``,
  ``(B, heads, T, S)``;
* masking: ``attention_mask`` ``(B, T, S)`` (true = attend) and
  ``use_causal_mask`` (lower-triangular ``(T, S)``) combine with ``and``; masked
  scores are *replaced* by ``-1e9`` before the softmax over ``S``, as Keras's
  default path does (``ops.dot_product_attention``), so a query that may attend
  to nothing attends uniformly. (Keras itself switches to *adding* ``-1e9``
  when ``dropout > 0``, which gives such a query the unmasked softmax instead;
  polykeras keeps one definition.)
* masks carried by the inputs (Keras's ``_keras_mask``, from ``Embedding(mask_zero=True)`` or
  ``Masking``; or passed as ``query_mask``/``value_mask``/``key_mask``) join with ``and``: the
  query's as ``(B, T, 1)``, the value's and the key's as ``(B, 1, S)``; the output carries the
  query's mask, as in Keras. (Keras, when it runs a model, also takes the masks off the input
  tensors, so a layer that reads the same tensor after it sees none where that layer's call has
  no ``mask`` argument of its own -- e.g. an ``Attention`` on the value of a
  ``MultiHeadAttention``; polykeras keeps them, as Keras does when it builds the model);
* ``Dropout(dropout)`` on the attention weights in training;
* ``einsum("acbe,aecd->abcd", weights, v)``, then the output projection
  ``einsum("abcd,cde->abe", ., Wo) + bo`` to ``output_shape`` (default ``dim``).

Without dropout (``dropout=0``, the default) the scores, mask, softmax and weighted sum are one
``ops.dot_product_attention`` node (the same function; as Keras's own MHA does), which the torch
backend runs with ``scaled_dot_product_attention``; with dropout they stay separate nodes, since
the dropout sits between the softmax and the weighted sum (and in parity mode its mask is drawn
on the host).

Weights, in Keras's order: query kernel/bias, key kernel/bias, value kernel/bias,
output kernel/bias. Not yet: ``attention_axes`` other than the sequence axis,
``return_attention_scores``, ``output_shape`` of rank > 1.
"""

from __future__ import annotations

import math

import numpy as np

from polykeras import initializers, ops
from polykeras.layers.base import Layer
from polykeras.layers.core import Dropout

_LARGE_NEGATIVE = -1e9  # what masked scores become (Keras's large negative number for float32/float64)
_MASKED_SCORE_SHIFT = 1e9  # what Attention subtracts from masked scores (Keras's, for float32/float64)


class MultiHeadAttention(Layer):
    supports_masking = True  # the output carries the query's mask

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, output_shape=None, attention_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if attention_axes not in (None, 1, (1,), [1]):
            raise NotImplementedError(f"MultiHeadAttention layer {self.name!r}: attention_axes={attention_axes!r} "
                                      "is not supported yet; only the sequence axis (None)")
        if output_shape is not None and np.ndim(output_shape) > 0 and len(np.atleast_1d(output_shape)) != 1:
            raise NotImplementedError(f"MultiHeadAttention layer {self.name!r}: output_shape of rank > 1 is not "
                                      "supported yet")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout, self.use_bias = float(dropout), bool(use_bias)
        self.out_dim = None if output_shape is None else int(np.atleast_1d(output_shape)[0])
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer
        self.dropout_layer = Dropout(self.dropout)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = key_shape or value_shape
        for what, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3:
                raise NotImplementedError(f"MultiHeadAttention layer {self.name!r}: {what} of shape {shape}: only "
                                          "rank-3 inputs (batch, sequence, features) are supported yet")
        heads = self.num_heads
        out_dim = self.out_dim or query_shape[-1]
        self.weights_by_name = {}
        for name, shape, bias in (("query", (query_shape[-1], heads, self.key_dim), (heads, self.key_dim)),
                                  ("key", (key_shape[-1], heads, self.key_dim), (heads, self.key_dim)),
                                  ("value", (value_shape[-1], heads, self.value_dim), (heads, self.value_dim)),
                                  ("attention_output", (heads, self.value_dim, out_dim), (out_dim,))):
            kernel = self.add_weight(shape=shape, initializer=self.kernel_initializer,
                                     regularizer=self.kernel_regularizer, name=f"{name}_kernel")
            b = self.add_weight(shape=bias, initializer=self.bias_initializer, regularizer=self.bias_regularizer,
                                name=f"{name}_bias") if self.use_bias else None
            self.weights_by_name[name] = (kernel, b)

    def _project(self, name: str, x, equation: str):
        kernel, bias = self.weights_by_name[name]
        y = ops.einsum(equation, x, kernel)
        return y + bias if bias is not None else y

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        if return_attention_scores:
            raise NotImplementedError(f"MultiHeadAttention layer {self.name!r}: return_attention_scores=True is not "
                                      "supported yet (a node has one output)")
        key_mask = None if key is None else _carried(key, key_mask)
        key = value if key is None else key
        scale = 1.0 / math.sqrt(float(self.key_dim))
        if self.dropout == 0.0:  # one op, which a backend may run as a fused kernel
            return self._fused(query, value, key, _carried(query, query_mask), _carried(value, value_mask), key_mask,
                               attention_mask, scale, use_causal_mask)
        inputs_mask = _inputs_mask(_carried(query, query_mask), _carried(value, value_mask), key_mask)
        if inputs_mask is not None:
            attention_mask = inputs_mask if attention_mask is None else \
                ops.logical_and(ops.cast(attention_mask, "bool"), inputs_mask)
        mask = None
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            if len(ops.shape(mask)) == 3:
                mask = ops.expand_dims(mask, axis=1)  # the same for every head
        q = self._project("query", query, "abc,cde->abde") * scale
        k = self._project("key", key, "abc,cde->abde")
        v = self._project("value", value, "abc,cde->abde")
        scores = ops.einsum("aecd,abcd->acbe", k, q)  # (batch, heads, T, S)
        if use_causal_mask:  # lower-triangular over (T, S), built from the scores' own shape
            causal = ops.cast(ops.tril(ops.ones_like(scores)), "bool")
            mask = causal if mask is None else ops.logical_and(mask, causal)
        if mask is not None:
            scores = ops.where(mask, scores, _LARGE_NEGATIVE)
        weights = self.dropout_layer(ops.softmax(scores, axis=-1), training=training)
        context = ops.einsum("acbe,aecd->abcd", weights, v)
        return self._project("attention_output", context, "abcd,cde->abe")

    def _fused(self, query, value, key, query_mask, value_mask, key_mask, attention_mask, scale, causal):
        """The attention as one ``ops.dot_product_attention`` node. The query's mask is not folded into
        the ``(B, T, S)`` mask: a query step it hides has every score masked, so it attends to every key
        alike (the mean of the values), which a ``where`` after the output projection gives (the
        projection of that mean) -- the same function, while
        the op's mask stays ``(B, 1, 1, S)`` for padding (a kernel then reads S, not T x S, per batch)."""
        mask = _inputs_mask(None, value_mask, key_mask)
        if attention_mask is not None:
            given = ops.cast(attention_mask, "bool")
            mask = given if mask is None else ops.logical_and(given, mask)
        if mask is not None:
            mask = ops.expand_dims(mask, axis=1)  # the same for every head
        v = self._project("value", value, "abc,cde->abde")
        context = ops.dot_product_attention(self._project("query", query, "abc,cde->abde"),
                                            self._project("key", key, "abc,cde->abde"), v, mask=mask,
                                            scale=scale, is_causal=causal)
        out = self._project("attention_output", context, "abcd,cde->abe")
        if query_mask is None:
            return out
        uniform = self._project("attention_output", ops.mean(v, axis=1, keepdims=True), "abcd,cde->abe")  # (B, 1, E)
        return ops.where(ops.expand_dims(ops.cast(query_mask, "bool"), -1), out, uniform)

    def compute_mask(self, inputs, mask=None):
        return mask  # the query's (the first input's)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.out_dim, "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


def _carried(tensor, given):
    """The mask passed for an input, else the one it carries (``None`` for none)."""
    return given if given is not None else getattr(tensor, "mask", None)


def _inputs_mask(query_mask, value_mask, key_mask):
    """Keras's ``_compute_attention_mask`` without the causal part: ``(B, T, S)`` from the
    query's ``(B, T)`` and the value's and key's ``(B, S)`` masks, or ``None``."""
    parts = []
    if query_mask is not None:
        parts.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
    for mask in (value_mask, key_mask):
        if mask is not None:
            parts.append(ops.expand_dims(ops.cast(mask, "bool"), -2))
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = ops.logical_and(out, part)
    return out


class Attention(Layer):
    """Keras's dot-product ``Attention`` (Luong style), called on ``[query, value]`` or
    ``[query, value, key]`` (``key`` defaults to ``value``), each ``(B, T, dim)``:

    * scores ``query @ key^T`` (``(B, Tq, Tv)``), times the scalar weight ``scale`` with
      ``use_scale``; with ``score_mode="concat"``, ``concat_score_weight * sum(tanh(scale * (q + k)))``
      over the features of each query/key pair;
    * masking: the value's mask ``(B, Tv)`` and ``use_causal_mask`` (lower-triangular) join with
      ``and``; masked scores have ``1e9`` *subtracted* (so a query with no key left keeps its
      unmasked softmax, as in Keras);
    * ``softmax`` over ``Tv``, ``Dropout(dropout)`` on it in training, times ``value``;
    * outputs at masked query steps are 0, and the output carries the query's mask.

    Masks come from the inputs (``Embedding(mask_zero=True)``, ``Masking``) or from
    ``mask=[query_mask, value_mask]``. Not yet: ``return_attention_scores``."""

    supports_masking = True

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: score_mode must be 'dot' or 'concat'; "
                             f"got {score_mode!r}")
        self.use_scale, self.score_mode, self.dropout, self.seed = bool(use_scale), score_mode, float(dropout), seed
        self.dropout_layer = Dropout(self.dropout)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale") if self.use_scale else None
        self.concat_score_weight = (self.add_weight(shape=(), initializer="ones", name="concat_score_weight")
                                    if self.score_mode == "concat" else None)

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = ops.einsum("aqd,akd->aqk", query, key)
            return scores * self.scale if self.scale is not None else scores
        pairs = ops.expand_dims(query, -2) + ops.expand_dims(key, -3)
        return self.concat_score_weight * ops.sum(ops.tanh(self.scale * pairs if self.scale is not None else pairs),
                                                  axis=-1)

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, use_causal_mask=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(f"{type(self).__name__} layer {self.name!r} must be called on a list [query, value] or "
                             "[query, value, key]")
        if return_attention_scores:
            raise NotImplementedError(f"{type(self).__name__} layer {self.name!r}: return_attention_scores=True is "
                                      "not supported yet (a node has one output)")
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) == 3 else value
        query_mask, value_mask = (mask[0], mask[1]) if mask is not None else (_carried(query, None),
                                                                              _carried(value, None))
        scores = self._scores(query, key)
        scores_mask = None if value_mask is None else ops.expand_dims(ops.cast(value_mask, "bool"), -2)
        if use_causal_mask:
            causal = ops.cast(ops.tril(ops.ones_like(scores)), "bool")
            scores_mask = causal if scores_mask is None else ops.logical_and(scores_mask, causal)
        if scores_mask is not None:
            scores = ops.where(scores_mask, scores, scores - _MASKED_SCORE_SHIFT)
        weights = self.dropout_layer(ops.softmax(scores, axis=-1), training=training)
        out = ops.matmul(weights, value)
        if query_mask is not None:
            out = ops.where(ops.expand_dims(ops.cast(query_mask, "bool"), -1), out, 0.0)
        return out

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, list) else mask  # the query's

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Keras's ``AdditiveAttention`` (Bahdanau style): as :class:`Attention`, with scores
    ``sum(scale * tanh(q + k))`` over the features, ``scale`` a trainable vector ``(dim,)``
    (glorot-uniform) with ``use_scale`` (the default), else 1."""

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.scale = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="scale") \
            if self.use_scale else None

    def _scores(self, query, key):
        terms = ops.tanh(ops.expand_dims(query, -2) + ops.expand_dims(key, -3))
        return ops.sum(self.scale * terms if self.scale is not None else terms, axis=-1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
