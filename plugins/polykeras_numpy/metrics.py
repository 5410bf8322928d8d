"""Keras's metrics in NumPy: the batch mean of each (the program's accumulator
turns batch means into sample-weighted epoch means, as Keras's
``MeanMetricWrapper`` does)."""

from __future__ import annotations

import numpy as np

from polykeras_numpy import losses


def binary_accuracy(y, p, threshold=0.5):
    return np.mean(np.mean(y == (p > threshold), axis=-1))


def categorical_accuracy(y, p):
    return np.mean(np.argmax(y, axis=-1) == np.argmax(p, axis=-1))


def sparse_categorical_accuracy(y, p):
    return np.mean(y == np.argmax(p, axis=-1))


def mean_squared_error(y, p):
    return np.mean(np.square(p - y))


def mean_absolute_error(y, p):
    return np.mean(np.abs(p - y))


def _from_loss(name):
    fn = losses.LOSSES[name]
    return lambda y, p: fn(y, p)[0]


METRICS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "binary_crossentropy": _from_loss("binary_crossentropy"),
    "categorical_crossentropy": _from_loss("categorical_crossentropy"),
    "sparse_categorical_crossentropy": _from_loss("sparse_categorical_crossentropy"),
}


def get(kind: str):
    if kind not in METRICS:
        raise NotImplementedError(f"the numpy backend has no metric {kind!r}; it has {', '.join(METRICS)}")
    return METRICS[kind]
