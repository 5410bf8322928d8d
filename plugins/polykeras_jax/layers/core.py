"""Core layers: Dense, Activation, Dropout, Flatten, Reshape (Keras 3 semantics,
as :mod:`polykeras_numpy.layers.core` defines them)."""

from __future__ import annotations

import math

from .. import activations
from .base import Layer, LayerContext, channels_last


class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis of an input of any rank."""

    kind = "Dense"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.config.get("activation", "linear"))
        self.use_bias = bool(self.config.get("use_bias", True))

    def __call__(self, weights, x, ctx):
        z = x @ weights[0]
        if self.use_bias:
            z = z + weights[1]
        return self.activation(z)


class Activation(Layer):
    kind = "Activation"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.config.get("activation", "linear"))

    def __call__(self, weights, x, ctx):
        return self.activation(x)


class Dropout(Layer):
    """Inverted dropout, ``x * mask`` in training; ``noise_shape`` entries of
    ``None`` take the input's size and size-1 entries share one mask value."""

    kind = "Dropout"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.rate = float(self.config.get("rate", 0.0))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Dropout layer {spec.name!r}: rate must be in [0, 1], got {self.rate}")
        noise_shape = self.config.get("noise_shape")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def _mask_shape(self, x_shape: tuple) -> tuple:
        if self.noise_shape is None:
            return tuple(x_shape)
        if len(self.noise_shape) != len(x_shape):
            raise ValueError(f"Dropout layer {self.spec.name!r}: noise_shape {self.noise_shape} has "
                             f"{len(self.noise_shape)} entries but the input has rank {len(x_shape)}")
        return tuple(d if n is None else int(n) for n, d in zip(self.noise_shape, x_shape))

    def __call__(self, weights, x, ctx: LayerContext):
        if not ctx.training or self.rate == 0.0:
            return x
        return x * ctx.dropout_mask(0, self._mask_shape(x.shape), self.rate)


class Flatten(Layer):
    """``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)`` in C order."""

    kind = "Flatten"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        channels_last(self)

    def __call__(self, weights, x, ctx):
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    """``(batch, ...) -> (batch, *target_shape)``; ``target_shape`` may hold one -1."""

    kind = "Reshape"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.target_shape = tuple(int(d) for d in self.config["target_shape"])

    def __call__(self, weights, x, ctx):
        size = math.prod(x.shape[1:])  # shapes are static while tracing: this check runs once
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 not in self.target_shape and known != size) or known == 0 or size % known:
            raise ValueError(f"Reshape layer {self.spec.name!r}: cannot reshape an input of shape {x.shape[1:]} "
                             f"(excluding batch) to target_shape {self.target_shape}")
        return x.reshape((x.shape[0],) + self.target_shape)
