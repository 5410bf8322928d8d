"""Keras's losses (value and gradient) and metrics, in NumPy.

The definitions are the ones :mod:`polykeras.losses` documents: each loss is
the mean of the per-sample losses over the batch (``sum_over_batch_size``);
probabilities are clipped to ``[eps, 1 - eps]`` with ``eps =
polykeras.backend.epsilon()``, and the gradient is zero where the clip was
active (what automatic differentiation of Keras's formula gives).

A loss function returns ``(loss, d loss / d y_pred)``; a metric returns the
batch mean, which the program's :class:`~polykeras.program.MeanAccumulator`
turns into a sample-weighted epoch mean.
"""

from __future__ import annotations

import numpy as np

from polykeras.backend import epsilon

from .layers import sigmoid


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0):
    """``-sum(y * log(q))`` over the last axis, ``q`` the renormalised, clipped ``p`` (or log-softmax of logits)."""
    n = p.size // p.shape[-1]  # the number of per-sample losses averaged
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / p.shape[-1]
    if from_logits:
        shifted = p - p.max(axis=-1, keepdims=True)
        log_q = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return -(y * log_q).sum() / n, (np.exp(log_q) * y.sum(axis=-1, keepdims=True) - y) / n
    total = p.sum(axis=-1, keepdims=True)
    q = p / total  # Keras renormalises the probabilities first
    eps = epsilon()
    qc = np.clip(q, eps, 1 - eps)
    dq = np.where((q >= eps) & (q <= 1 - eps), -y / qc, 0) / n
    return -(y * np.log(qc)).sum() / n, (dq - (dq * q).sum(axis=-1, keepdims=True)) / total  # back through q = p/sum(p)


def sparse_categorical_crossentropy(y, p, from_logits=False):
    onehot = np.eye(p.shape[-1], dtype=p.dtype)[y.astype(np.intp)]
    return categorical_crossentropy(onehot, p, from_logits=from_logits)


def binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0):
    """``-(y log p + (1-y) log(1-p))`` with ``p`` clipped, averaged over every element."""
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:  # the stable form of -(y log s(x) + (1-y) log(1-s(x)))
        loss = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        return loss.mean(), (sigmoid(p) - y) / p.size
    eps = epsilon()
    pc = np.clip(p, eps, 1 - eps)
    loss = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    return loss.mean(), np.where((p >= eps) & (p <= 1 - eps), (pc - y) / (pc * (1 - pc)), 0) / p.size


def mean_squared_error(y, p):
    return np.square(p - y).mean(), 2 * (p - y) / p.size


def mean_absolute_error(y, p):
    return np.abs(p - y).mean(), np.sign(p - y) / p.size


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error)}

#: metric kind -> batch mean; the crossentropies are the losses' values with default options.
METRICS = {
    "binary_accuracy": lambda y, p: np.mean(y == (p > 0.5)),
    "categorical_accuracy": lambda y, p: np.mean(y.argmax(axis=-1) == p.argmax(axis=-1)),
    "sparse_categorical_accuracy": lambda y, p: np.mean(y == p.argmax(axis=-1)),
    "mean_squared_error": lambda y, p: mean_squared_error(y, p)[0],
    "mean_absolute_error": lambda y, p: mean_absolute_error(y, p)[0],
    "binary_crossentropy": lambda y, p: binary_crossentropy(y, p)[0],
    "categorical_crossentropy": lambda y, p: categorical_crossentropy(y, p)[0],
    "sparse_categorical_crossentropy": lambda y, p: sparse_categorical_crossentropy(y, p)[0],
}

