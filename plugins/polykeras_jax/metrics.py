"""Keras's metrics in JAX, the reference's definitions (:mod:`polykeras_numpy.metrics`)
as traceable functions. A mean metric gives the batch mean, which the program
accumulates as ``mean * batch_size`` inside the jitted step; a summed metric (weighted,
or stateful) gives the batch's statistics array, also summed inside the step and turned
into the value by :func:`polykeras.metrics.statistics.value` when the logs are read --
no host synchronisation per step either way."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from polykeras.metrics.statistics import (MEAN_KINDS, STATEFUL_KINDS, metric_losses, statistics_function,
                                         thresholds)
from polykeras.spec import MetricSpec
from polykeras_jax import losses

#: The kinds whose per-sample value is the loss's (mse and mae have their own values below), as the reference.
_FROM_LOSS = metric_losses(losses.LOSSES)


def _sparse(y, p):
    if y.ndim == p.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    return y.astype(jnp.int32)


def in_top_k(targets, p, k: int):
    """A tie with the ``k``-th largest output counts as in the top ``k`` (Keras's ``in_top_k``)."""
    at_target = jnp.take_along_axis(p, targets[..., None], axis=-1)
    return jnp.sum(p > at_target, axis=-1) < k


def _values(kind: str, config: dict) -> Callable:
    """Per-sample values, ``(batch,)`` or ``(batch, T)``."""
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_jax.functions import function_values

        return function_values(config["graph"])
    if kind == "binary_accuracy":
        threshold = config.get("threshold", 0.5)
        return lambda y, p: jnp.mean((y == (p > threshold)).astype(p.dtype), axis=-1)
    if kind == "categorical_accuracy":
        return lambda y, p: jnp.argmax(y, axis=-1) == jnp.argmax(p, axis=-1)
    if kind == "sparse_categorical_accuracy":
        return lambda y, p: _sparse(y, p) == jnp.argmax(p, axis=-1)
    if kind == "top_k_categorical_accuracy":
        return lambda y, p: in_top_k(jnp.argmax(y, axis=-1), p, config["k"])
    if kind == "sparse_top_k_categorical_accuracy":
        return lambda y, p: in_top_k(_sparse(y, p), p, config["k"])
    if kind == "mean_squared_error":
        return lambda y, p: jnp.mean(jnp.square(p - y), axis=-1)
    if kind == "mean_absolute_error":
        return lambda y, p: jnp.mean(jnp.abs(p - y), axis=-1)
    if kind == "categorical_hinge":
        return lambda y, p: jnp.maximum(jnp.max((1 - y) * p, axis=-1) - jnp.sum(y * p, axis=-1) + 1, 0)
    raise NotImplementedError(f"the jax backend has no metric {kind!r}; it has {', '.join(METRICS)}")


def _ones(y, p, w):
    return jnp.ones(y.shape[0], p.dtype) if w is None else w.astype(p.dtype)


def _steps(w) -> int:
    """Steps per sample of the weights (static): both sums are divided by it, as the reference's."""
    return max(w.size // max(w.shape[0], 1), 1)


def _weighted_mean(kind: str, config: dict) -> Callable:
    """``[sum(w * v), sum(w)]`` (divided by the steps per sample), as the reference."""
    if kind in _FROM_LOSS:
        loss = _FROM_LOSS[kind]

        def statistics(y, p, w=None):
            w = _ones(y, p, w)
            return jnp.stack([loss(y, p, sample_weight=w, **config) * w.size, jnp.sum(w)]) / _steps(w)
        return statistics
    values = _values(kind, config)

    def statistics(y, p, w=None):
        v = values(y, p).astype(p.dtype)
        w = _ones(y, p, w)
        if v.ndim > w.ndim:
            v = jnp.mean(v, axis=tuple(range(w.ndim, v.ndim)))
        steps, w = _steps(w), jnp.broadcast_to(w, v.shape)
        return jnp.stack([jnp.sum(v * w), jnp.sum(w)]) / steps
    return statistics


def _confusion(metric: MetricSpec) -> Callable:
    config = metric.config
    ts = thresholds(metric)

    def statistics(y, p, w=None):
        if metric.kind == "auc" and config.get("from_logits"):
            p = jax.nn.sigmoid(p)
        if y.ndim == p.ndim - 1 and p.shape[-1] == 1:
            y = y[..., None]
        if y.shape != p.shape:
            raise ValueError(f"metric {metric.name!r}: targets of shape {y.shape} do not match outputs of shape "
                             f"{p.shape} (precision, recall and AUC take targets shaped like the outputs)")
        w = _ones(y, p, w)
        w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (p.ndim - w.ndim)), p.shape)
        positive = p[None] > jnp.asarray(ts, p.dtype).reshape((-1,) + (1,) * p.ndim)
        if config.get("top_k") is not None:
            k = config["top_k"]
            order = lax.top_k(p, k)[1]  # ties: the lower index first
            keep = jnp.any(order[..., :, None] == jnp.arange(p.shape[-1]), axis=-2)
            positive = positive & keep
        label = y != 0
        if config.get("class_id") is not None:
            c = config["class_id"]
            positive, label, w = positive[..., c], label[..., c], w[..., c]
        n = len(ts)
        positive, label, w = positive.reshape(n, -1), label.reshape(1, -1), w.reshape(1, -1)
        return jnp.stack([jnp.sum(jnp.where(label & positive, w, 0), axis=1),
                          jnp.sum(jnp.where(~label & positive, w, 0), axis=1),
                          jnp.sum(jnp.where(~label & ~positive, w, 0), axis=1),
                          jnp.sum(jnp.where(label & ~positive, w, 0), axis=1)])
    return statistics


def _mean_iou(metric: MetricSpec) -> Callable:
    config = metric.config
    c = int(config["num_classes"])

    def statistics(y, p, w=None):
        true = y if config.get("sparse_y_true", True) else jnp.argmax(y, axis=-1)
        pred = p if config.get("sparse_y_pred", True) else jnp.argmax(p, axis=-1)
        true, pred = true.astype(jnp.int32), pred.astype(jnp.int32)
        w = _ones(y, p, w)
        w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (true.ndim - w.ndim)), true.shape).reshape(-1)
        true, pred = true.reshape(-1), pred.reshape(-1)
        valid = (true >= 0) & (true < c) & (pred >= 0) & (pred < c)
        index = jnp.where(valid, true * c + pred, 0)
        return jnp.zeros(c * c, p.dtype).at[index].add(jnp.where(valid, w, 0)).reshape(c, c)
    return statistics


def get(metric: MetricSpec) -> Callable:
    """A plain mean metric: ``(y, p) -> batch mean``."""
    if metric.kind in _FROM_LOSS:
        loss = _FROM_LOSS[metric.kind]
        return lambda y, p: loss(y, p, **metric.config)
    values = _values(metric.kind, metric.config)
    return lambda y, p: jnp.mean(values(y, p).astype(p.dtype))


def get_statistics(metric: MetricSpec) -> Callable:
    """A summed metric: ``(y, p, sample_weight) -> statistics`` (see ``statistics_function``)."""
    return statistics_function(metric, _confusion, _mean_iou, _weighted_mean)


#: The kinds this backend implements.
METRICS = MEAN_KINDS + STATEFUL_KINDS + ("function",)
