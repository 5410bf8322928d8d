"""Keras 3 activations: reference forward and hand-written backward in NumPy.

Each activation is a pair of functions: ``forward(x) -> y`` and
``backward(x, y, dy) -> dx``. The backward receives both the input and the
output so that each derivative can use whichever is simpler and more accurate
(``sigmoid' = y (1 - y)``, ``tanh' = 1 - y**2``, ...).

The definitions follow ``keras.activations`` (Keras 3):

* ``softmax`` normalises over the last axis and subtracts the maximum first;
* ``elu`` uses ``alpha = 1``; ``selu`` the Keras constants below;
* ``gelu`` is the exact erf form (Keras's default ``approximate=False``);
* ``softplus`` is evaluated as ``log1p(exp(-|x|)) + max(x, 0)``, which never
  overflows;
* ``hard_sigmoid`` is Keras 3's ``relu6(x + 3) / 6`` (slope 1/6, not the
  Keras 2 slope 0.2);
* ``relu`` has derivative 0 at 0 (as TensorFlow, JAX and PyTorch do).

Everything is computed in the dtype of ``x``: constants are Python floats,
which NumPy treats as "weak" and never lets promote a float32 array.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

SELU_ALPHA = 1.67326324235437728481704299167171
SELU_SCALE = 1.05070098735548049341933498529460

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# NumPy has no erf; math.erf element by element is slow but exact, and the
# reference values correctness over speed.
_erf_float64 = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x: np.ndarray) -> np.ndarray:
    return _erf_float64(x).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# -- forward/backward pairs ---------------------------------------------------

def _linear(x):
    return x


def _linear_grad(x, y, dy):
    return dy


def _relu(x):
    return np.maximum(x, 0.0).astype(x.dtype, copy=False)


def _relu_grad(x, y, dy):
    return np.where(x > 0, dy, 0.0).astype(dy.dtype, copy=False)


def _sigmoid_grad(x, y, dy):
    return dy * y * (1.0 - y)


def _tanh(x):
    return np.tanh(x)


def _tanh_grad(x, y, dy):
    return dy * (1.0 - y * y)


def _softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_grad(x, y, dy):
    # dx_i = y_i (dy_i - sum_j dy_j y_j): the Jacobian-vector product.
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))).astype(x.dtype, copy=False)


def _elu_grad(x, y, dy):
    # for x <= 0: d/dx (exp(x) - 1) = exp(x) = y + 1
    return np.where(x > 0, dy, dy * (y + 1.0)).astype(dy.dtype, copy=False)


def _selu(x):
    negative = SELU_ALPHA * np.expm1(np.minimum(x, 0.0))
    return (SELU_SCALE * np.where(x > 0, x, negative)).astype(x.dtype, copy=False)


def _selu_grad(x, y, dy):
    # for x <= 0: y = scale * alpha * (exp(x) - 1), so dy/dx = y + scale * alpha
    slope = np.where(x > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    return (dy * slope).astype(dy.dtype, copy=False)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


def _gelu_grad(x, y, dy):
    cdf = 0.5 * (1.0 + _erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return dy * (cdf + x * pdf)


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _softplus_grad(x, y, dy):
    return dy * sigmoid(x)


def _swish(x):
    return x * sigmoid(x)


def _swish_grad(x, y, dy):
    s = sigmoid(x)
    return dy * (s + x * s * (1.0 - s))


def _exponential(x):
    return np.exp(x)


def _exponential_grad(x, y, dy):
    return dy * y


def _hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0).astype(x.dtype, copy=False)


def _hard_sigmoid_grad(x, y, dy):
    inside = (x > -3.0) & (x < 3.0)
    return np.where(inside, dy / 6.0, 0.0).astype(dy.dtype, copy=False)


_Forward = Callable[[np.ndarray], np.ndarray]
_Backward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_ACTIVATIONS: dict[str, tuple[_Forward, _Backward]] = {
    "linear": (_linear, _linear_grad),
    "relu": (_relu, _relu_grad),
    "sigmoid": (sigmoid, _sigmoid_grad),
    "tanh": (_tanh, _tanh_grad),
    "softmax": (_softmax, _softmax_grad),
    "elu": (_elu, _elu_grad),
    "selu": (_selu, _selu_grad),
    "gelu": (_gelu, _gelu_grad),
    "softplus": (_softplus, _softplus_grad),
    "swish": (_swish, _swish_grad),
    "silu": (_swish, _swish_grad),
    "exponential": (_exponential, _exponential_grad),
    "hard_sigmoid": (_hard_sigmoid, _hard_sigmoid_grad),
}

#: The activation names this reference understands (Keras spellings).
NAMES: tuple[str, ...] = tuple(_ACTIVATIONS)


def _lookup(name: str | None) -> tuple[_Forward, _Backward]:
    # Keras serialises "no activation" as "linear"; a raw config may hold None.
    key = "linear" if name is None else name
    try:
        return _ACTIVATIONS[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; the NumPy reference supports: {', '.join(NAMES)}"
        ) from None


def check(name: str | None) -> None:
    """Raise ``ValueError`` now (at kernel construction) for an unknown name."""
    _lookup(name)


def forward(name: str | None, x: np.ndarray) -> np.ndarray:
    """Apply activation ``name`` to ``x`` (in ``x``'s dtype)."""
    return _lookup(name)[0](x)


def backward(name: str | None, x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Return ``dLoss/dx`` given the input ``x``, output ``y`` and ``dy = dLoss/dy``."""
    return _lookup(name)[1](x, y, dy)
