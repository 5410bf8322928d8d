"""Keras's metrics in torch: the batch mean of each, as a 0-d tensor on the
device (the program's :class:`~polykeras.program.MeanAccumulator` turns them
into sample-weighted epoch means without copying anything to the host until
someone asks for the logs). ``argmax`` picks the first maximum on ties, like
NumPy's."""

from __future__ import annotations

from typing import Callable

import torch

from . import losses

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def binary_accuracy(y, p, threshold=0.5):
    return (y == (p > threshold).to(y.dtype)).to(p.dtype).mean(dim=-1).mean()


def categorical_accuracy(y, p):
    return (y.argmax(dim=-1) == p.argmax(dim=-1)).to(p.dtype).mean()


def sparse_categorical_accuracy(y, p):
    return (y == p.argmax(dim=-1)).to(p.dtype).mean()


def mean_squared_error(y, p):
    return torch.square(p - y).mean()


def mean_absolute_error(y, p):
    return torch.abs(p - y).mean()


METRICS: dict[str, Metric] = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "binary_crossentropy": losses.binary_crossentropy,
    "categorical_crossentropy": losses.categorical_crossentropy,
    "sparse_categorical_crossentropy": losses.sparse_categorical_crossentropy,
}


def get(kind: str) -> Metric:
    if kind not in METRICS:
        raise NotImplementedError(f"the torch backend has no metric {kind!r}; it has {', '.join(METRICS)}")
    return METRICS[kind]
