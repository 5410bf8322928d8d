"""Core layers: Dense, Activation, Dropout, Flatten, Reshape (Keras 3 semantics;
the rules are :mod:`polykeras.layer_rules.core`)."""

from __future__ import annotations

from .. import activations
from .base import Layer, LayerContext


class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis of an input of any rank."""

    kind = "Dense"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.rules.activation)

    def __call__(self, weights, x, ctx):
        z = x @ weights[0]
        if self.rules.use_bias:
            z = z + weights[1]
        return self.activation(z)


class Activation(Layer):
    kind = "Activation"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.rules.activation)

    def __call__(self, weights, x, ctx):
        return self.activation(x)


class Dropout(Layer):
    """Inverted dropout, ``x * mask`` in training; ``noise_shape`` entries of
    ``None`` take the input's size and size-1 entries share one mask value."""

    kind = "Dropout"

    def __call__(self, weights, x, ctx: LayerContext):
        rules = self.rules
        if not rules.active(ctx.training):
            return x
        return x * ctx.dropout_mask(0, rules.mask_shape(x.shape), rules.rate)


class SpatialDropout1D(Dropout):
    """Dropout of whole channels (the rules' mask shape)."""

    kind = "SpatialDropout1D"


class SpatialDropout2D(Dropout):
    kind = "SpatialDropout2D"


class Flatten(Layer):
    """``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)`` in C order."""

    kind = "Flatten"

    def __call__(self, weights, x, ctx):
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    """``(batch, ...) -> (batch, *target_shape)``; ``target_shape`` may hold one -1."""

    kind = "Reshape"

    def __call__(self, weights, x, ctx):
        # shapes are static while tracing: the rules' check runs once
        return x.reshape(self.rules.output_shape(x.shape))
