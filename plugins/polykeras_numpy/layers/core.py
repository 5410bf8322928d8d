"""Core layers: Dense, Activation, Dropout, Flatten, Reshape.

Semantics follow Keras 3 (``keras.layers.Dense`` etc.):

* ``Dense`` contracts the *last* axis of an input of any rank with its
  ``(in, units)`` kernel, adds the bias and applies the activation.
* ``Dropout`` multiplies by the parity-mode keep mask (already scaled by
  ``1 / (1 - rate)``) in training and is the identity at inference or when
  ``rate == 0``. ``noise_shape`` entries of ``None`` take the input's size, and
  a size-1 entry shares one mask value along that axis.
* ``Flatten`` and ``Reshape`` only move data; the batch axis is kept.
"""

from __future__ import annotations

import math

from .. import activations
from .base import ForwardContext, Kernel


class Dense(Kernel):
    """``y = activation(x @ kernel + bias)`` over the last axis of ``x``.

    Weights: ``kernel (in, units)``, then ``bias (units,)`` if ``use_bias``.
    """

    kind = "Dense"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = self.config.get("activation", "linear")
        self.use_bias = bool(self.config.get("use_bias", True))
        activations.check(self.activation)

    def forward(self, weights, x, ctx: ForwardContext):
        kernel = weights[0]
        z = x @ kernel
        if self.use_bias:
            z += weights[1]  # z is a fresh array: add in place
        y = activations.forward(self.activation, z)
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
        dz = activations.backward(self.activation, z, y, dy)
        # Flatten all leading axes: every position along them shares the kernel.
        x2 = x.reshape(-1, x.shape[-1])
        dz2 = dz.reshape(-1, dz.shape[-1])
        dkernel = x2.T @ dz2
        if self.use_bias:
            return dz, [dkernel, dz2.sum(axis=0)]
        return dz, [dkernel]


class Activation(Kernel):
    """``y = activation(x)``; no weights."""

    kind = "Activation"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = self.config.get("activation", "linear")
        activations.check(self.activation)

    def forward(self, weights, x, ctx):
        y = activations.forward(self.activation, x)
        return y, (x, y)

    def backward(self, weights, cache, dy):
        x, y = cache
        return activations.backward(self.activation, x, y, dy), []


class Dropout(Kernel):
    """Inverted dropout with a host-drawn mask (Keras ``Dropout``).

    In training ``y = x * mask`` where ``mask`` comes from
    ``ctx.dropout_mask(mask_shape, rate, stream=0)``; ``mask_shape`` is the
    input shape with ``noise_shape`` applied. Identity otherwise.
    """

    kind = "Dropout"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.rate = float(self.config.get("rate", 0.0))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Dropout layer {spec.name!r}: rate must be in [0, 1], got {self.rate}")
        noise_shape = self.config.get("noise_shape")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def mask_shape(self, x_shape: tuple) -> tuple:
        """The shape of the mask for an input of ``x_shape``."""
        if self.noise_shape is None:
            return tuple(x_shape)
        if len(self.noise_shape) != len(x_shape):
            raise ValueError(
                f"Dropout layer {self.spec.name!r}: noise_shape {self.noise_shape} has "
                f"{len(self.noise_shape)} entries but the input has rank {len(x_shape)}"
            )
        return tuple(d if n is None else int(n) for n, d in zip(self.noise_shape, x_shape))

    def forward(self, weights, x, ctx):
        if not ctx.training or self.rate == 0.0:
            return x, None
        mask = ctx.dropout_mask(self.mask_shape(x.shape), self.rate, 0)
        return x * mask, mask

    def backward(self, weights, cache, dy):
        mask = cache
        if mask is None:
            return dy, []
        # The mask broadcasts over noise_shape axes of size 1, so its product
        # with dy already has dy's shape.
        return dy * mask, []


class Flatten(Kernel):
    """``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)`` in C order
    (channels_last; Keras's channels_first transpose is not supported)."""

    kind = "Flatten"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        data_format = self.config.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise NotImplementedError(
                f"Flatten layer {spec.name!r}: data_format={data_format!r} is not supported by the "
                "NumPy reference; use 'channels_last'"
            )

    def forward(self, weights, x, ctx):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, weights, cache, dy):
        return dy.reshape(cache), []


class Reshape(Kernel):
    """``(batch, ...) -> (batch, *target_shape)``; ``target_shape`` may hold one -1."""

    kind = "Reshape"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.target_shape = tuple(int(d) for d in self.config["target_shape"])

    def forward(self, weights, x, ctx):
        size = math.prod(x.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 not in self.target_shape and known != size) or (known == 0 or size % known):
            raise ValueError(
                f"Reshape layer {self.spec.name!r}: cannot reshape an input of shape "
                f"{x.shape[1:]} (excluding batch) to target_shape {self.target_shape}"
            )
        return x.reshape((x.shape[0],) + self.target_shape), x.shape

    def backward(self, weights, cache, dy):
        return dy.reshape(cache), []
