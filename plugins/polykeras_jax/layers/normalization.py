"""BatchNormalization and Embedding (Keras 3 semantics; see
:mod:`polykeras_numpy.layers.normalization` and ``.embedding``)."""

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

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg = self.config
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        if not (axis == -1 or axis == len(spec.input_shape) - 1):
            raise NotImplementedError(f"BatchNormalization layer {spec.name!r}: axis={cfg.get('axis')!r} is not "
                                      "supported by the jax backend; only the last axis (axis=-1)")
        self.momentum = float(cfg.get("momentum", 0.99))
        self.epsilon = float(cfg.get("epsilon", 1e-3))
        self.scale = bool(cfg.get("scale", True))
        self.center = bool(cfg.get("center", True))
        self.mean_index = int(self.scale) + int(self.center)
        self.variance_index = self.mean_index + 1

    def __call__(self, weights, x, ctx):
        if ctx.training:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)  # biased, two-pass like NumPy's var
            m = self.momentum
            # The moving statistics are outputs of the step, not part of the loss: no gradient.
            stats_mean, stats_var = lax.stop_gradient(mean), lax.stop_gradient(var)
            ctx.assign(self.mean_index, weights[self.mean_index] * m + stats_mean * (1.0 - m))
            ctx.assign(self.variance_index, weights[self.variance_index] * m + stats_var * (1.0 - m))
        else:
            mean, var = weights[self.mean_index], weights[self.variance_index]
        y = (x - mean) * (1.0 / jnp.sqrt(var + self.epsilon))
        if self.scale:
            y = y * weights[0]
        if self.center:
            y = y + weights[int(self.scale)]
        return y


class Embedding(Layer):
    """``embeddings[ids]``: the output is the ids' shape plus ``output_dim``.

    Ids arrive as int32 (the trainer casts them); the program checks their
    range on the host, since a jitted gather cannot raise. The gradient is
    XLA's scatter-add into the looked-up rows.
    """

    kind = "Embedding"
    differentiable_input = False

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.input_dim = int(self.config["input_dim"])
        if self.config.get("mask_zero", False):
            raise NotImplementedError(f"Embedding layer {spec.name!r}: mask_zero=True is not supported by the jax "
                                      "backend (masks are not propagated); use mask_zero=False")

    def __call__(self, weights, x, ctx):
        ids = x if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(jnp.int32)
        return jnp.take(weights[0], ids, axis=0, mode="clip")
