"""Keras's losses in NumPy, value and gradient with respect to the model output.

Each function returns ``(loss, d_loss/d_y_pred)`` for the mean over the batch
(Keras's ``sum_over_batch_size``); with ``sample_weight`` (shape ``(batch,)``,
or ``(batch, T)`` for a sequence output) it is Keras's weighted mean
``sum(w * l) / n`` over the ``n`` per-sample losses ``l``, *not* divided by the
sum of the weights. The definitions, clipping included, are the
ones documented in :mod:`polykeras.losses`; the gradient is zero where a
probability was clipped, as automatic differentiation of Keras's formula gives.
"""

from __future__ import annotations

import numpy as np

from polykeras.backend import epsilon


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _clip_with_mask(p: np.ndarray, eps):
    """``clip(p, eps, 1-eps)`` and the mask of entries the clip left alone."""
    lo, hi = p.dtype.type(eps), p.dtype.type(1 - eps)
    return np.clip(p, lo, hi), (p >= lo) & (p <= hi)


def _weighted(per: np.ndarray, grad: np.ndarray, sample_weight):
    """``(mean of per, grad)`` unweighted; else Keras's ``sum(w * per) / n`` and the gradient
    of the mean scaled by each sample's weight (``grad`` is already that of the plain mean)."""
    if sample_weight is None:
        return per.mean(), grad
    w = np.asarray(sample_weight, dtype=per.dtype)
    w = w.reshape(w.shape + (1,) * (per.ndim - w.ndim))
    return (per * w).mean(), grad * w[..., None]


def categorical_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    n = p.size // p.shape[-1]  # number of per-sample losses averaged
    if label_smoothing:
        y = y * p.dtype.type(1 - label_smoothing) + p.dtype.type(label_smoothing / p.shape[-1])
    if from_logits:
        shifted = p - p.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        per = -(y * log_probs).sum(axis=-1)
        grad = (np.exp(log_probs) * y.sum(axis=-1, keepdims=True) - y) / p.dtype.type(n)
        return _weighted(per, grad, sample_weight)
    total = p.sum(axis=-1, keepdims=True)
    q = p / total
    qc, keep = _clip_with_mask(q, epsilon())
    per = -(y * np.log(qc)).sum(axis=-1)
    dq = np.where(keep, -y / qc, 0).astype(p.dtype) / p.dtype.type(n)
    # through q = p / sum(p):  dp_j = (dq_j - sum_i dq_i q_i) / sum(p)
    grad = (dq - (dq * q).sum(axis=-1, keepdims=True)) / total
    return _weighted(per, grad, sample_weight)


def sparse_categorical_crossentropy(y, p, from_logits=False, sample_weight=None):
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, y.astype(np.intp)[..., None], 1, axis=-1)
    return categorical_crossentropy(onehot, p, from_logits=from_logits, sample_weight=sample_weight)


def binary_crossentropy(y, p, from_logits=False, label_smoothing=0.0, sample_weight=None):
    n = p.dtype.type(p.size)
    if label_smoothing:
        y = y * p.dtype.type(1 - label_smoothing) + p.dtype.type(0.5 * label_smoothing)
    if from_logits:
        per = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        sig = np.exp(-np.logaddexp(0, -p))  # sigmoid(p), stable for large |p|
        return _weighted(per.mean(axis=-1), (sig - y) / n, sample_weight)
    pc, keep = _clip_with_mask(p, epsilon())
    one = p.dtype.type(1)
    per = -(y * np.log(pc) + (one - y) * np.log(one - pc))
    grad = np.where(keep, -(y / pc - (one - y) / (one - pc)), 0).astype(p.dtype) / n
    return _weighted(per.mean(axis=-1), grad, sample_weight)


def mean_squared_error(y, p, sample_weight=None):
    diff = p - y
    return _weighted(np.square(diff).mean(axis=-1), 2 * diff / p.dtype.type(p.size), sample_weight)


def mean_absolute_error(y, p, sample_weight=None):
    diff = p - y
    return _weighted(np.abs(diff).mean(axis=-1), np.sign(diff) / p.dtype.type(p.size), sample_weight)


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error)}


def get(spec: dict):
    """``spec`` is a TrainingSpec loss entry: ``{"kind": ..., "config": {...}}``."""
    kind, config = spec["kind"], spec.get("config", {})
    if kind not in LOSSES:
        raise NotImplementedError(f"the numpy backend has no loss {kind!r}; it has {', '.join(LOSSES)}")
    fn = LOSSES[kind]
    return lambda y, p, sample_weight=None: fn(y, p, sample_weight=sample_weight, **config)
