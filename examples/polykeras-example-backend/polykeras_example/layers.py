"""Activations and the four layer kinds, forward and backward, in NumPy.

A layer is built from its :class:`~polykeras.spec.LayerSpec` and has two
methods -- reverse-mode differentiation by hand:

* ``forward(weights, x, training, dropout_mask) -> (y, cache)``
* ``backward(weights, cache, dy) -> (dx, [dweight, ...])``

``weights`` are the layer's arrays in the canonical Keras layout and the order
of ``LayerSpec.weights``; the gradients come back in that order. The math is
Keras 3's. Python-float constants never promote a float32 array (NumPy treats
them as "weak"), so everything runs in the dtype of the input.
"""

from __future__ import annotations

import math

import numpy as np

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf; exact beats fast for an example


def sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + exp(-x)) without overflow


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # subtract the max: no overflow for large logits
    return e / e.sum(axis=-1, keepdims=True)


def _normal_cdf(x):
    return 0.5 * (1 + _erf(x / math.sqrt(2)).astype(x.dtype))


#: name -> (forward(x), backward(x, y, dy) -> dx), Keras 3 definitions.
ACTIVATIONS = {
    "linear": (lambda x: x, lambda x, y, dy: dy),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y, dy: dy * (x > 0)),  # relu'(0) = 0, as in TF/JAX/torch
    "sigmoid": (sigmoid, lambda x, y, dy: dy * y * (1 - y)),
    "tanh": (np.tanh, lambda x, y, dy: dy * (1 - y * y)),
    "softmax": (softmax, lambda x, y, dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True))),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            lambda x, y, dy: dy * np.where(x > 0, 1, y + 1)),
    "selu": (lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
             lambda x, y, dy: dy * np.where(x > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)),
    "gelu": (lambda x: x * _normal_cdf(x),  # exact erf form (Keras's approximate=False)
             lambda x, y, dy: dy * (_normal_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))),
    "softplus": (lambda x: np.logaddexp(0, x), lambda x, y, dy: dy * sigmoid(x)),
    "swish": (lambda x: x * sigmoid(x), lambda x, y, dy: dy * sigmoid(x) * (1 + x * (1 - sigmoid(x)))),
    "exponential": (np.exp, lambda x, y, dy: dy * y),
    "hard_sigmoid": (lambda x: np.clip(x / 6 + 0.5, 0, 1),  # Keras 3: relu6(x + 3) / 6
                     lambda x, y, dy: dy * ((x > -3) & (x < 3)) / 6),
}
ACTIVATIONS["silu"] = ACTIVATIONS["swish"]


def activation(name: str | None):
    """The ``(forward, backward)`` pair for ``name``; a clear error for an unknown one."""
    if (name or "linear") not in ACTIVATIONS:
        raise NotImplementedError(f"the example backend has no activation {name!r}; it has {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name or "linear"]


class Dense:
    """``y = activation(x @ kernel + bias)`` over the last axis of ``x`` (any rank).
    Weights: ``kernel (in, units)``, then ``bias (units,)`` if ``use_bias``."""

    def __init__(self, spec):
        self.forward_act, self.backward_act = activation(spec.config.get("activation"))
        self.use_bias = bool(spec.config.get("use_bias", True))

    def forward(self, weights, x, training, dropout_mask):
        z = x @ weights[0]
        if self.use_bias:
            z = z + weights[1]
        y = self.forward_act(z)
        return y, (x, z, y)

    def backward(self, weights, cache, dy):
        x, z, y = cache
        dz = self.backward_act(z, y, dy)
        x2, dz2 = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])  # every leading position shares the kernel
        grads = [x2.T @ dz2] + ([dz2.sum(axis=0)] if self.use_bias else [])
        return dz @ weights[0].T, grads


class Activation:
    """``y = activation(x)``; no weights."""

    def __init__(self, spec):
        self.forward_act, self.backward_act = activation(spec.config.get("activation"))

    def forward(self, weights, x, training, dropout_mask):
        y = self.forward_act(x)
        return y, (x, y)

    def backward(self, weights, cache, dy):
        x, y = cache
        return self.backward_act(x, y, dy), []


class Dropout:
    """Inverted dropout: in training ``y = x * mask`` with the core's mask
    (0 or ``1/(1-rate)``, stream 0); the identity at inference. ``noise_shape``
    entries that are ``None`` take the input's size; a 1 shares the mask along that axis."""

    def __init__(self, spec):
        self.rate = float(spec.config.get("rate", 0.0))
        self.noise_shape = spec.config.get("noise_shape")

    def forward(self, weights, x, training, dropout_mask):
        if not training or self.rate == 0:
            return x, None
        shape = x.shape if self.noise_shape is None else [d if n is None else n
                                                          for n, d in zip(self.noise_shape, x.shape)]
        mask = dropout_mask(tuple(shape), self.rate, 0)
        return x * mask, mask

    def backward(self, weights, mask, dy):
        return (dy if mask is None else dy * mask), []


class Flatten:
    """``(batch, d1, d2, ...) -> (batch, d1*d2*...)`` in C order (channels_last)."""

    def __init__(self, spec):
        if (spec.config.get("data_format") or "channels_last") != "channels_last":
            raise NotImplementedError(f"Flatten layer {spec.name!r}: the example backend supports "
                                      "data_format='channels_last' only")

    def forward(self, weights, x, training, dropout_mask):
        return x.reshape(len(x), -1), x.shape

    def backward(self, weights, shape, dy):
        return dy.reshape(shape), []


LAYERS = {cls.__name__: cls for cls in (Dense, Activation, Dropout, Flatten)}
