"""BatchNormalization and Embedding (Keras 3 semantics; the rules are
:mod:`polykeras.layer_rules.normalization`)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .base import Layer


class BatchNormalization(Layer):
    """Normalisation over every axis but the last.

    Training uses the batch mean and *biased* variance, and assigns
    ``moving = moving * momentum + batch * (1 - momentum)`` to the
    non-trainable moving statistics; inference uses the moving statistics.
    Weights: ``gamma`` (if ``scale``), ``beta`` (if ``center``),
    ``moving_mean``, ``moving_variance``.
    """

    kind = "BatchNormalization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        if ctx.training:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)  # biased, two-pass like NumPy's var
            m = rules.momentum
            # The moving statistics are outputs of the step, not part of the loss: no gradient.
            stats_mean, stats_var = lax.stop_gradient(mean), lax.stop_gradient(var)
            ctx.assign(rules.mean_index, weights[rules.mean_index] * m + stats_mean * (1.0 - m))
            ctx.assign(rules.variance_index, weights[rules.variance_index] * m + stats_var * (1.0 - m))
        else:
            mean, var = weights[rules.mean_index], weights[rules.variance_index]
        y = (x - mean) * (1.0 / jnp.sqrt(var + rules.epsilon))
        if rules.scale:
            y = y * weights[rules.gamma_index]
        if rules.center:
            y = y + weights[rules.beta_index]
        return y


class Embedding(Layer):
    """``embeddings[ids]``: the output is the ids' shape plus ``output_dim``.

    Ids arrive as int32 (the trainer casts them); the program checks their
    range on the host, since a jitted gather cannot raise. The gradient is
    XLA's scatter-add into the looked-up rows.
    """

    kind = "Embedding"
    differentiable_input = False

    @property
    def input_dim(self) -> int:
        """The table's size (the program checks ids against it on the host)."""
        return self.rules.input_dim

    def __call__(self, weights, x, ctx):
        ids = x if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(jnp.int32)
        return jnp.take(weights[0], ids, axis=0, mode="clip")


class LayerNormalization(Layer):
    """Per-sample normalisation over ``rules.axes``, in Keras's order of
    operations: ``inv = rsqrt(var + eps) * gamma``, ``y = x * inv + (beta - mean * inv)``;
    with ``rms_scaling``, ``y = x * rsqrt(var + eps) * gamma``. Weights:
    ``gamma`` (if ``scale`` or ``rms_scaling``), ``beta`` (if ``center`` and not ``rms_scaling``)."""

    kind = "LayerNormalization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        wshape = rules.weight_shape(x.shape)
        mean = jnp.mean(x, axis=rules.axes, keepdims=True)
        var = jnp.var(x, axis=rules.axes, keepdims=True)
        inv = lax.rsqrt(var + jnp.asarray(rules.epsilon, x.dtype))
        if rules.scale:
            inv = inv * weights[rules.gamma_index].reshape(wshape)
        if rules.rms_scaling:
            return x * inv
        res = -mean * inv
        if rules.center:
            res = res + weights[rules.beta_index].reshape(wshape)
        return x * inv + res


class GroupNormalization(Layer):
    """Per sample and group of channels, in Keras's order (see the rules):
    ``inv = rsqrt(var + eps) * gamma``, ``y = x * inv + (beta - mean * inv)``."""

    kind = "GroupNormalization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        xg = x.reshape(rules.grouped_shape(x.shape))
        axes = rules.reduced_axes(xg.ndim)
        wshape = (1,) * (xg.ndim - 2) + xg.shape[-2:]
        mean = jnp.mean(xg, axis=axes, keepdims=True)
        inv = lax.rsqrt(jnp.var(xg, axis=axes, keepdims=True) + jnp.asarray(rules.epsilon, x.dtype))
        if rules.scale:
            inv = inv * weights[rules.gamma_index].reshape(wshape)
        res = -mean * inv
        if rules.center:
            res = res + weights[rules.beta_index].reshape(wshape)
        return (xg * inv + res).reshape(x.shape)


class UnitNormalization(Layer):
    """``x * min(rsqrt(sum(x^2)), 1 / epsilon)`` over the axes (Keras's ``ops.normalize``)."""

    kind = "UnitNormalization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        scale = jnp.minimum(lax.rsqrt(jnp.sum(x * x, axis=rules.axes, keepdims=True)),
                            jnp.asarray(1.0 / rules.epsilon, x.dtype))
        return x * scale
