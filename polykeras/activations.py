"""Activation names. The math lives in the backends; the core only checks
names, so that a typo fails when the layer is created, not deep inside a
backend."""

from __future__ import annotations

NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu",
         "softplus", "swish", "silu", "exponential", "hard_sigmoid")


def get(identifier) -> str:
    """Resolve an activation to its canonical name (``None`` -> ``"linear"``)."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__name__", None) in NAMES:
        identifier = identifier.__name__
    if not isinstance(identifier, str):
        raise TypeError(
            f"activation {identifier!r} is not supported: polykeras backends implement named activations "
            f"only ({', '.join(NAMES)})"
        )
    name = "swish" if identifier == "silu" else identifier
    if name not in NAMES:
        raise ValueError(f"unknown activation {identifier!r}; valid names: {', '.join(NAMES)}")
    return name


def _named(name: str):
    def activation(x):
        raise TypeError(f"polykeras activations are names for layers, not functions: use activation={name!r}")

    activation.__name__ = name
    return activation


relu, sigmoid, tanh, softmax, linear = (_named(n) for n in ("relu", "sigmoid", "tanh", "softmax", "linear"))
elu, selu, gelu, softplus, swish = (_named(n) for n in ("elu", "selu", "gelu", "softplus", "swish"))
