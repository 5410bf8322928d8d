"""Keras's activations, in two roles.

* As a layer's ``activation=``: a *name* (``"relu"``, or the function ``activations.relu``,
  which stands for its name). The math lives in the backends; the core only checks names,
  so that a typo fails when the layer is created, not deep inside a backend.
* As functions on tensors (``activations.relu(x)`` in a custom layer's ``call``, or on
  arrays): each is written with :mod:`polykeras.ops`, as Keras 3 writes it, so it runs
  eagerly on NumPy arrays and is traced into op nodes on symbolic tensors -- every backend
  runs it, and its gradient is that of the ops (each with a hand-written, finite-difference
  checked NumPy VJP).
"""

from __future__ import annotations

from polykeras import ops

NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu",
         "softplus", "swish", "silu", "exponential", "hard_sigmoid")

#: Keras's SELU constants
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def get(identifier) -> str:
    """Resolve an activation to its canonical name (``None`` -> ``"linear"``)."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__name__", None) in NAMES:
        identifier = identifier.__name__
    if not isinstance(identifier, str):
        raise TypeError(
            f"activation {identifier!r} is not supported as a layer's activation=: polykeras backends implement "
            f"named activations only ({', '.join(NAMES)}); call the function inside a custom layer's call() instead"
        )
    name = "swish" if identifier == "silu" else identifier
    if name not in NAMES:
        raise ValueError(f"unknown activation {identifier!r}; valid names: {', '.join(NAMES)}")
    return name


def serialize(activation) -> str:
    return get(activation)


def deserialize(name, custom_objects=None):
    """The function for an activation name (Keras's ``activations.deserialize``)."""
    if isinstance(name, dict):  # Keras 3's {"class_name": "function", "config": "relu", ...}
        name = name.get("config")
    if isinstance(name, str) and name in FUNCTIONS:  # leaky_relu, relu6, ...: functions, not layer activations
        return globals()[name]
    return globals()[get(name)]


# -- the functions -------------------------------------------------------------------------------------------------
def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """Keras's ``relu``: ``x`` above ``threshold`` (else 0), clipped at ``max_value``, with
    ``negative_slope * (threshold - x)`` subtracted below the threshold (Keras's ``ReLU.static_call``)."""
    if negative_slope != 0.0 and max_value is None and threshold == 0:
        return leaky_relu(x, negative_slope=negative_slope)
    negative_part = None
    if negative_slope != 0.0:
        negative_part = ops.relu(ops.add(ops.negative(x), threshold) if threshold != 0 else ops.negative(x))
    if threshold != 0:
        y = ops.where(ops.greater(x, threshold), x, 0.0)
    else:
        y = ops.relu(x)
    if max_value is not None:
        y = ops.clip(y, 0.0, float(max_value))
    if negative_part is not None:
        y = ops.subtract(y, ops.multiply(negative_part, float(negative_slope)))
    return y


def leaky_relu(x, negative_slope: float = 0.2):
    """``x`` where ``x >= 0``, else ``negative_slope * x``."""
    return ops.where(ops.greater_equal(x, 0.0), x, ops.multiply(x, float(negative_slope)))


def relu6(x):
    return ops.clip(ops.relu(x), 0.0, 6.0)


def elu(x, alpha: float = 1.0):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (``exp`` of ``min(x, 0)``: no overflow, no
    ``inf * 0`` in the gradient, for large ``x``)."""
    negative = ops.multiply(ops.subtract(ops.exp(ops.minimum(x, 0.0)), 1.0), float(alpha))
    return ops.where(ops.greater(x, 0.0), x, negative)


def selu(x):
    return ops.multiply(elu(x, alpha=SELU_ALPHA), SELU_SCALE)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis: int = -1):
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis: int = -1):
    return ops.log_softmax(x, axis=axis)


def softplus(x):
    return ops.softplus(x)


def silu(x):
    return ops.silu(x)


def swish(x):
    return ops.silu(x)


def gelu(x, approximate: bool = False):
    """Keras's ``activations.gelu`` defaults to the exact (erf) form; ``ops.gelu`` to the tanh one."""
    return ops.gelu(x, approximate=approximate)


def exponential(x):
    return ops.exp(x)


def hard_sigmoid(x):
    """Keras 3's ``relu6(x + 3) / 6``."""
    return ops.clip(ops.add(ops.multiply(x, 1.0 / 6.0), 0.5), 0.0, 1.0)


def hard_silu(x):
    return ops.multiply(x, hard_sigmoid(x))


def mish(x):
    return ops.multiply(x, ops.tanh(ops.softplus(x)))


def linear(x):
    return x


hard_swish = hard_silu

#: every activation function, by name (those of :data:`NAMES` and the functions only: leaky_relu, relu6, ...)
FUNCTIONS = ("linear", "relu", "leaky_relu", "relu6", "elu", "selu", "sigmoid", "tanh", "softmax", "log_softmax",
             "softplus", "silu", "swish", "gelu", "exponential", "hard_sigmoid", "hard_silu", "hard_swish", "mish")
