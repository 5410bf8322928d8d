"""Element-wise ops: arithmetic, comparisons, math functions and activations.

Binary ops broadcast as NumPy does; the VJP of a broadcast input sums its
cotangent back to the input's shape (:func:`~.registry.unbroadcast`). Where an
op has a kink the reference picks one side and documents it, as autodiff in
torch and JAX does: ``abs`` and ``relu`` have gradient 0 at 0, ``maximum`` and
``minimum`` split a tie's gradient equally between the two inputs, ``clip``
passes the gradient on the closed interval ``[x_min, x_max]``.
``gelu(approximate=True)`` is Keras's default (the tanh approximation).
"""

from __future__ import annotations

import math

import numpy as np

from .registry import register, unbroadcast


def _binary(name, forward, grads, doc):
    """Register a broadcasting binary op; ``grads(g, y, a, b)`` gives the unreduced cotangents."""

    def vjp(g, y, arrays):
        a, b = arrays
        ga, gb = grads(g, y, a, b)
        return unbroadcast(ga, np.shape(a)), unbroadcast(gb, np.shape(b))

    register(name, ("x1", "x2"), forward, vjp, doc)


def _tie(a, b):
    return (a == b) * 0.5


_binary("add", np.add, lambda g, y, a, b: (g, g), "x1 + x2, broadcasting")
_binary("subtract", np.subtract, lambda g, y, a, b: (g, -g), "x1 - x2, broadcasting")
_binary("multiply", np.multiply, lambda g, y, a, b: (g * b, g * a), "x1 * x2, broadcasting")
_binary("divide", np.true_divide, lambda g, y, a, b: (g / b, -g * a / np.square(b)), "x1 / x2, broadcasting")
_binary("power", np.power,
        lambda g, y, a, b: (g * b * np.power(a, b - 1), g * y * np.log(np.where(a > 0, a, 1))),
        "x1 ** x2 (the gradient in x2 is taken as 0 where x1 <= 0)")
_binary("maximum", np.maximum,
        lambda g, y, a, b: (g * ((a > b) + _tie(a, b)), g * ((b > a) + _tie(a, b))),
        "the larger of x1 and x2 (a tie splits the gradient equally)")
_binary("minimum", np.minimum,
        lambda g, y, a, b: (g * ((a < b) + _tie(a, b)), g * ((b < a) + _tie(a, b))),
        "the smaller of x1 and x2 (a tie splits the gradient equally)")

for _name, _fn in [("equal", np.equal), ("not_equal", np.not_equal), ("greater", np.greater),
                   ("greater_equal", np.greater_equal), ("less", np.less), ("less_equal", np.less_equal),
                   ("logical_and", np.logical_and), ("logical_or", np.logical_or)]:
    register(_name, ("x1", "x2"), _fn, None, f"element-wise {_name.replace('_', ' ')} (a boolean result)")
register("logical_not", ("x",), np.logical_not, None, "element-wise not (a boolean result)")


def _unary(name, forward, grad, doc, **params):
    """Register a unary op; ``grad(g, y, x, **params)`` is its cotangent."""
    register(name, ("x",), forward, lambda g, y, arrays, **p: (grad(g, y, arrays[0], **p),), doc, **params)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x)).astype(np.result_type(x, np.float32))


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_GELU_C = math.sqrt(2 / math.pi)


def _gelu(x, approximate=True):
    if approximate:
        return 0.5 * x * (1 + np.tanh(_GELU_C * (x + 0.044715 * x ** 3)))
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf, otypes=[x.dtype])(x / math.sqrt(2)))


def _gelu_grad(g, y, x, approximate=True):
    if approximate:
        inner = _GELU_C * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x))
    from math import erf

    cdf = 0.5 * (1 + np.vectorize(erf, otypes=[x.dtype])(x / math.sqrt(2)))
    return g * (cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


_unary("negative", np.negative, lambda g, y, x: -g, "-x")
_unary("abs", np.abs, lambda g, y, x: g * np.sign(x), "|x| (gradient 0 at 0)")
_unary("exp", np.exp, lambda g, y, x: g * y, "e ** x")
_unary("log", np.log, lambda g, y, x: g / x, "the natural logarithm")
_unary("log1p", np.log1p, lambda g, y, x: g / (1 + x), "log(1 + x)")
_unary("sqrt", np.sqrt, lambda g, y, x: g / (2 * y), "the square root")
_unary("square", np.square, lambda g, y, x: 2 * g * x, "x * x")
_unary("reciprocal", np.reciprocal, lambda g, y, x: -g * y * y, "1 / x")
_unary("sin", np.sin, lambda g, y, x: g * np.cos(x), "sine")
_unary("cos", np.cos, lambda g, y, x: -g * np.sin(x), "cosine")
_unary("tanh", np.tanh, lambda g, y, x: g * (1 - y * y), "the hyperbolic tangent")
_unary("sigmoid", _sigmoid, lambda g, y, x: g * y * (1 - y), "1 / (1 + e ** -x)")
_unary("relu", lambda x: np.maximum(x, 0), lambda g, y, x: g * (x > 0), "max(x, 0) (gradient 0 at 0)")
_unary("softplus", lambda x: np.logaddexp(0, x), lambda g, y, x: g * _sigmoid(x), "log(1 + e ** x)")
_unary("silu", lambda x: x * _sigmoid(x), lambda g, y, x: g * _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
       "x * sigmoid(x)")
_unary("gelu", _gelu, _gelu_grad, "Gaussian error linear unit (approximate=True: Keras's tanh form)",
       approximate=True)
_unary("sign", np.sign, lambda g, y, x: np.zeros_like(g), "the sign of x (gradient 0)")
_unary("softmax", _softmax, lambda g, y, x, axis=-1: y * (g - (g * y).sum(axis=axis, keepdims=True)),
       "exp(x) / sum(exp(x)) along axis", axis=-1)


def _log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


_unary("log_softmax", _log_softmax, lambda g, y, x, axis=-1: g - np.exp(y) * g.sum(axis=axis, keepdims=True),
       "x - logsumexp(x) along axis", axis=-1)


def _clip(x, x_min, x_max):
    return np.clip(x, x_min, x_max)


_unary("clip", _clip, lambda g, y, x, x_min, x_max: g * ((x >= x_min) & (x <= x_max)),
       "x limited to [x_min, x_max] (gradient passes on the closed interval)", x_min=None, x_max=None)


def _where(condition, x1, x2):
    return np.where(condition, x1, x2)


register("where", ("condition", "x1", "x2"), _where,
         lambda g, y, arrays: (None, unbroadcast(np.where(arrays[0], g, 0), np.shape(arrays[1])),
                               unbroadcast(np.where(arrays[0], 0, g), np.shape(arrays[2]))),
         "x1 where condition is true, else x2 (all three broadcast)")
register("stop_gradient", ("variable",), lambda x: x, lambda g, y, arrays: (np.zeros_like(g),),
         "x itself, with a zero gradient")
