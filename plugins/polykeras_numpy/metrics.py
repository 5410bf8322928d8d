"""Keras's metrics in NumPy, the reference for every backend.

A mean metric is a function ``(y, p) -> batch mean`` (the program's accumulator turns
batch means into sample-weighted epoch means, as Keras's ``MeanMetricWrapper`` does).
A summed metric -- a weighted one, or a stateful kind -- is a function
``(y, p, sample_weight) -> statistics`` whose sums over the epoch
:func:`polykeras.metrics.statistics.value` turns into the logged value; that module
documents what each statistic is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from polykeras.metrics.statistics import (FROM_LOSS_KINDS, MEAN_KINDS, NEGATED_LOSS_KINDS,
                                         STATEFUL_KINDS, statistics_function, thresholds)
from polykeras.spec import MetricSpec
from polykeras_numpy import losses


def _sparse(y, p):
    """Integer targets without a trailing axis of 1 (``(batch, 1)`` labels as Keras accepts them)."""
    y = np.asarray(y)
    if y.ndim == p.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    return y.astype(np.int64)


def in_top_k(targets, p, k: int):
    """Is each target's output among the ``k`` largest? A tie with the ``k``-th largest
    counts as in (fewer than ``k`` outputs strictly greater), as Keras's ``in_top_k``."""
    at_target = np.take_along_axis(p, targets[..., None], axis=-1)
    return np.sum(p > at_target, axis=-1) < k


# -- per-sample values: (batch,) or (batch, T) for a sequence output ------------------------
def _values(kind: str, config: dict) -> Callable:
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_numpy.functions import function_values

        return function_values(config["graph"])
    if kind == "binary_accuracy":
        threshold = config.get("threshold", 0.5)
        return lambda y, p: np.mean(y == (p > threshold), axis=-1)
    if kind == "categorical_accuracy":
        return lambda y, p: np.argmax(y, axis=-1) == np.argmax(p, axis=-1)
    if kind == "sparse_categorical_accuracy":
        return lambda y, p: _sparse(y, p) == np.argmax(p, axis=-1)
    if kind == "top_k_categorical_accuracy":
        return lambda y, p: in_top_k(np.argmax(y, axis=-1), p, config["k"])
    if kind == "sparse_top_k_categorical_accuracy":
        return lambda y, p: in_top_k(_sparse(y, p), p, config["k"])
    if kind == "mean_squared_error":
        return lambda y, p: np.mean(np.square(p - y), axis=-1)
    if kind == "mean_absolute_error":
        return lambda y, p: np.mean(np.abs(p - y), axis=-1)
    if kind == "categorical_hinge":  # Keras's: max(max((1 - y) * p) - sum(y * p) + 1, 0)
        return lambda y, p: np.maximum(np.max((1 - y) * p, axis=-1) - np.sum(y * p, axis=-1) + 1, 0)
    raise NotImplementedError(f"the numpy backend has no metric {kind!r}; it has {', '.join(MEAN_KINDS)}")


def _float(p) -> np.dtype:
    """The statistics' dtype: the outputs' (class ids given as integers count in float64)."""
    return p.dtype if p.dtype.kind == "f" else np.dtype(np.float64)


def _ones(y, p, sample_weight):
    if sample_weight is not None:
        return np.asarray(sample_weight, dtype=_float(p))
    return np.ones(len(y), dtype=_float(p))


def _steps(w) -> int:
    """The steps per sample of weights ``w`` (1 for per-sample weights): Keras's ``Mean`` reduces each
    sample's weighted values and weights to their means over the steps, so both sums are divided by it."""
    return max(w.size // max(len(w), 1), 1)


def _weighted_mean(kind: str, config: dict) -> Callable:
    """``[sum(w * v), sum(w)]`` (each divided by :func:`_steps`); ``v`` averaged over trailing axes ``w``
    lacks (Keras's ``Mean``)."""
    if kind in FROM_LOSS_KINDS:
        loss, sign = losses.LOSSES[kind], -1 if kind in NEGATED_LOSS_KINDS else 1

        def statistics(y, p, sample_weight=None):
            w = _ones(y, p, sample_weight)  # the loss is sum(w * l) / n over its n = w.size weighted parts
            total = sign * loss(y, p, sample_weight=w, **config)[0] * w.size
            return np.array([total, w.sum()], dtype=p.dtype) / _steps(w)
        return statistics
    values = _values(kind, config)

    def statistics(y, p, sample_weight=None):
        v = values(y, p).astype(p.dtype)
        w = _ones(y, p, sample_weight)
        if v.ndim > w.ndim:
            v = v.mean(axis=tuple(range(w.ndim, v.ndim)))
        steps, w = _steps(w), np.broadcast_to(w, v.shape)
        return np.array([np.sum(v * w), np.sum(w)], dtype=p.dtype) / steps
    return statistics


def _top_k_mask(p, k: int):
    """Each row's ``k`` largest entries on the last axis (ties: the lower index)."""
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def _confusion(metric: MetricSpec) -> Callable:
    """``[tp, fp, tn, fn]`` at each threshold, shape ``(4, T)`` (Keras's
    ``update_confusion_matrix_variables``)."""
    config, ts = metric.config, thresholds(metric)

    def statistics(y, p, sample_weight=None):
        y = np.asarray(y)
        if metric.kind == "auc" and config.get("from_logits"):
            p = 1.0 / (1.0 + np.exp(-p))
        if y.ndim == p.ndim - 1 and p.shape[-1] == 1:
            y = y[..., None]
        if y.shape != p.shape:
            raise ValueError(f"metric {metric.name!r}: targets of shape {y.shape} do not match outputs of shape "
                             f"{p.shape} (precision, recall and AUC take targets shaped like the outputs)")
        w = _ones(y, p, sample_weight)
        w = np.broadcast_to(w.reshape(w.shape + (1,) * (p.ndim - w.ndim)), p.shape)
        positive = p[None] > ts.astype(p.dtype).reshape((-1,) + (1,) * p.ndim)
        if config.get("top_k") is not None:
            positive = positive & _top_k_mask(p, config["top_k"])[None]
        label = y != 0
        if config.get("class_id") is not None:
            c = config["class_id"]
            positive, label, w = positive[..., c], label[..., c], w[..., c]
        n = len(ts)
        positive, label, w = positive.reshape(n, -1), label.reshape(1, -1), w.reshape(1, -1)
        return np.stack([np.sum(w * (label & positive), axis=1), np.sum(w * (~label & positive), axis=1),
                         np.sum(w * (~label & ~positive), axis=1), np.sum(w * (label & ~positive), axis=1)]
                        ).astype(p.dtype)
    return statistics


def _mean_iou(metric: MetricSpec) -> Callable:
    """The ``(C, C)`` confusion matrix, rows true class, columns predicted (Keras's ``MeanIoU``)."""
    config = metric.config
    c = int(config["num_classes"])

    def statistics(y, p, sample_weight=None):
        true = np.asarray(y) if config.get("sparse_y_true", True) else np.argmax(y, axis=-1)
        pred = p if config.get("sparse_y_pred", True) else np.argmax(p, axis=-1)
        true, pred = true.astype(np.int64), pred.astype(np.int64)
        w = _ones(y, p, sample_weight)
        w = np.broadcast_to(w.reshape(w.shape + (1,) * (true.ndim - w.ndim)), true.shape).reshape(-1)
        true, pred = true.reshape(-1), pred.reshape(-1)
        valid = (true >= 0) & (true < c) & (pred >= 0) & (pred < c)
        matrix = np.zeros((c, c), dtype=_float(p))
        np.add.at(matrix, (true[valid], pred[valid]), w[valid])
        return matrix
    return statistics


def get(metric: MetricSpec) -> Callable:
    """A plain mean metric: ``(y, p) -> batch mean``."""
    kind = metric.kind
    if kind in FROM_LOSS_KINDS:
        loss, sign = losses.LOSSES[kind], -1 if kind in NEGATED_LOSS_KINDS else 1
        return lambda y, p: sign * loss(y, p, **metric.config)[0]
    values = _values(kind, metric.config)
    return lambda y, p: np.mean(values(y, p))


def get_statistics(metric: MetricSpec) -> Callable:
    """A summed metric: ``(y, p, sample_weight) -> statistics`` (see ``statistics_function``)."""
    return statistics_function(metric, _confusion, _mean_iou, _weighted_mean)


#: The kinds this backend implements.
METRICS = MEAN_KINDS + STATEFUL_KINDS + ("function",)
