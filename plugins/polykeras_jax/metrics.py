"""Keras's metrics in JAX: the batch mean of each, as in
:mod:`polykeras_numpy.metrics`. The program accumulates ``mean * batch_size``
inside the jitted step, so the epoch's sample-weighted mean (Keras's
``MeanMetricWrapper``) costs no host synchronisation per step."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from polykeras_jax import losses


def binary_accuracy(y, p, threshold=0.5):
    return jnp.mean(jnp.mean((y == (p > threshold)).astype(p.dtype), axis=-1))


def categorical_accuracy(y, p):
    return jnp.mean((jnp.argmax(y, axis=-1) == jnp.argmax(p, axis=-1)).astype(p.dtype))


def sparse_categorical_accuracy(y, p):
    return jnp.mean((y == jnp.argmax(p, axis=-1)).astype(p.dtype))


def mean_squared_error(y, p):
    return jnp.mean(jnp.square(p - y))


def mean_absolute_error(y, p):
    return jnp.mean(jnp.abs(p - y))


METRICS: dict[str, Callable] = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "binary_crossentropy": losses.binary_crossentropy,
    "categorical_crossentropy": losses.categorical_crossentropy,
    "sparse_categorical_crossentropy": losses.sparse_categorical_crossentropy,
}


def get(kind: str) -> Callable:
    if kind not in METRICS:
        raise NotImplementedError(f"the jax backend has no metric {kind!r}; it has {', '.join(METRICS)}")
    return METRICS[kind]
