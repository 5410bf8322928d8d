"""Core layers: Dense, Activation, Dropout, Flatten, Reshape.

The rules (config, shapes, ``noise_shape``) are the core's,
:mod:`polykeras.layer_rules.core`; the math, Keras 3's:

* ``Dense`` contracts the *last* axis of an input of any rank with its
  ``(in, units)`` kernel, adds the bias and applies the activation.
* ``Dropout`` multiplies by the parity-mode keep mask (already scaled by
  ``1 / (1 - rate)``) in training and is the identity at inference or when
  ``rate == 0``. ``noise_shape`` entries of ``None`` take the input's size, and
  a size-1 entry shares one mask value along that axis.
* ``Flatten`` and ``Reshape`` only move data; the batch axis is kept.
"""

from __future__ import annotations

from .. import activations
from .base import ForwardContext, Kernel


class Dense(Kernel):
    """``y = activation(x @ kernel + bias)`` over the last axis of ``x``.

    Weights: ``kernel (in, units)``, then ``bias (units,)`` if ``use_bias``.
    """

    kind = "Dense"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        activations.check(self.rules.activation)

    def forward(self, weights, x, ctx: ForwardContext):
        kernel = weights[0]
        z = x @ kernel
        if self.rules.use_bias:
            z += weights[1]  # z is a fresh array: add in place
        y = activations.forward(self.rules.activation, z)
        return y, (x, z, y)

    def backward(self, weights, cache, dy):
        dz, dweights = self._backward(cache, dy)
        return dz @ weights[0].T, dweights

    def backward_weights(self, weights, cache, dy):
        # Skips dx = dz @ kernel.T: for the first layer of an MLP on MNIST that
        # product costs as much as the layer's forward pass.
        return self._backward(cache, dy)[1]

    def _backward(self, cache, dy):
        """``dz`` (the gradient before the activation) and the weight gradients."""
        x, z, y = cache
        dz = activations.backward(self.rules.activation, z, y, dy)
        # Flatten all leading axes: every position along them shares the kernel.
        x2 = x.reshape(-1, x.shape[-1])
        dz2 = dz.reshape(-1, dz.shape[-1])
        dkernel = x2.T @ dz2
        if self.rules.use_bias:
            return dz, [dkernel, dz2.sum(axis=0)]
        return dz, [dkernel]


class Activation(Kernel):
    """``y = activation(x)``; no weights."""

    kind = "Activation"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        activations.check(self.rules.activation)

    def forward(self, weights, x, ctx):
        y = activations.forward(self.rules.activation, x)
        return y, (x, y)

    def backward(self, weights, cache, dy):
        x, y = cache
        return activations.backward(self.rules.activation, x, y, dy), []


class Dropout(Kernel):
    """Inverted dropout with a host-drawn mask (Keras ``Dropout``).

    In training ``y = x * mask`` where ``mask`` comes from
    ``ctx.dropout_mask(mask_shape, rate, stream=0)``; ``mask_shape`` is the
    input shape with ``noise_shape`` applied (``self.rules.mask_shape``).
    Identity otherwise.
    """

    kind = "Dropout"

    def forward(self, weights, x, ctx):
        rules = self.rules
        if not rules.active(ctx.training):
            return x, None
        mask = ctx.dropout_mask(rules.mask_shape(x.shape), rules.rate, 0)
        return x * mask, mask

    def backward(self, weights, cache, dy):
        mask = cache
        if mask is None:
            return dy, []
        # The mask broadcasts over noise_shape axes of size 1, so its product
        # with dy already has dy's shape.
        return dy * mask, []


class SpatialDropout1D(Dropout):
    """Dropout of whole channels: the rules' mask shape is ``(batch, 1, channels)``."""

    kind = "SpatialDropout1D"


class SpatialDropout2D(Dropout):
    """Dropout of whole channels: the rules' mask shape is ``(batch, 1, 1, channels)``."""

    kind = "SpatialDropout2D"


class Flatten(Kernel):
    """``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)`` in C order
    (channels_last; Keras's channels_first transpose is not supported)."""

    kind = "Flatten"

    def forward(self, weights, x, ctx):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, weights, cache, dy):
        return dy.reshape(cache), []


class Reshape(Kernel):
    """``(batch, ...) -> (batch, *target_shape)``; ``target_shape`` may hold one -1."""

    kind = "Reshape"

    def forward(self, weights, x, ctx):
        return x.reshape(self.rules.output_shape(x.shape)), x.shape

    def backward(self, weights, cache, dy):
        return dy.reshape(cache), []
