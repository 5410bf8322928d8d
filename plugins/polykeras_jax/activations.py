"""Keras 3 activations in JAX, defined exactly as the NumPy reference
(:mod:`polykeras_numpy.activations`) defines them -- derivatives come from
automatic differentiation.

Where a kink's derivative matters it is chosen to agree with the reference:
``relu`` uses :func:`jax.nn.relu` (derivative 0 at 0; ``jnp.maximum`` would
give 0.5), ``softplus`` is the overflow-free ``log1p(exp(-|x|)) + max(x, 0)``,
``gelu`` is the exact erf form and ``hard_sigmoid`` Keras 3's
``clip(x / 6 + 1/2, 0, 1)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

SELU_ALPHA = 1.67326324235437728481704299167171
SELU_SCALE = 1.05070098735548049341933498529460


def _softmax(x):
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _elu(x):
    return jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0.0)))


def _selu(x):
    return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))


def _softplus(x):
    return jnp.log1p(jnp.exp(-jnp.abs(x))) + jax.nn.relu(x)


def _hard_sigmoid(x):
    return jnp.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x: x,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softmax": _softmax,
    "elu": _elu,
    "selu": _selu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "softplus": _softplus,
    "swish": lambda x: x * jax.nn.sigmoid(x),
    "silu": lambda x: x * jax.nn.sigmoid(x),
    "exponential": jnp.exp,
    "hard_sigmoid": _hard_sigmoid,
}


def get(name: str | None) -> Callable:
    """The activation called ``name`` (``None`` means linear, as in a raw config)."""
    key = "linear" if name is None else name
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; the jax backend supports: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[key]
