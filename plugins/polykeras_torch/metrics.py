"""Keras's metrics in torch, the reference's definitions (:mod:`polykeras_numpy.metrics`)
as tensor code. A mean metric gives the batch mean as a 0-d tensor on the device; a
summed metric (weighted, or stateful) the batch's statistics tensor, summed over the
epoch on the device and turned into the value by
:func:`polykeras.metrics.statistics.value`. Nothing is copied to the host until
someone asks for the logs. ``argmax`` picks the first maximum on ties, like NumPy's.
"""

from __future__ import annotations

from typing import Callable

import torch

from polykeras.metrics.statistics import (MEAN_KINDS, STATEFUL_KINDS, metric_losses, statistics_function,
                                         thresholds)
from polykeras.spec import MetricSpec

from . import losses

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: The kinds whose per-sample value is the loss's (mse and mae have their own values below), as the reference.
_FROM_LOSS = metric_losses(losses.LOSSES)


def _sparse(y, p):
    if y.dim() == p.dim() and y.shape[-1] == 1:
        y = y[..., 0]
    return y.long()


def in_top_k(targets, p, k: int):
    """A tie with the ``k``-th largest output counts as in the top ``k`` (Keras's ``in_top_k``)."""
    at_target = p.gather(-1, targets.unsqueeze(-1))
    return (p > at_target).sum(dim=-1) < k


def _values(kind: str, config: dict):
    """Per-sample values, ``(batch,)`` or ``(batch, T)``."""
    if kind == "function":  # a traced function of the user's (polykeras.functions)
        from polykeras_torch.functions import function_values

        return function_values(config["graph"])
    if kind == "binary_accuracy":
        threshold = config.get("threshold", 0.5)
        return lambda y, p: (y == (p > threshold).to(y.dtype)).to(p.dtype).mean(dim=-1)
    if kind == "categorical_accuracy":
        return lambda y, p: y.argmax(dim=-1) == p.argmax(dim=-1)
    if kind == "sparse_categorical_accuracy":
        return lambda y, p: _sparse(y, p) == p.argmax(dim=-1)
    if kind == "top_k_categorical_accuracy":
        return lambda y, p: in_top_k(y.argmax(dim=-1), p, config["k"])
    if kind == "sparse_top_k_categorical_accuracy":
        return lambda y, p: in_top_k(_sparse(y, p), p, config["k"])
    if kind == "mean_squared_error":
        return lambda y, p: torch.square(p - y).mean(dim=-1)
    if kind == "mean_absolute_error":
        return lambda y, p: torch.abs(p - y).mean(dim=-1)
    if kind == "categorical_hinge":
        return lambda y, p: torch.clamp(((1 - y) * p).amax(dim=-1) - (y * p).sum(dim=-1) + 1, min=0)
    raise NotImplementedError(f"the torch backend has no metric {kind!r}; it has {', '.join(METRICS)}")


def _ones(y, p, w):
    return torch.ones(len(y), dtype=p.dtype, device=p.device) if w is None else w.to(p.dtype)


def _steps(w) -> int:
    """Steps per sample of the weights: both sums are divided by it, as the reference's."""
    return max(w.numel() // max(len(w), 1), 1)


def _weighted_mean(kind: str, config: dict):
    """``[sum(w * v), sum(w)]`` (divided by the steps per sample), as the reference."""
    if kind in _FROM_LOSS:
        loss = _FROM_LOSS[kind]

        def statistics(y, p, w=None):
            w = _ones(y, p, w)
            return torch.stack([loss(y, p, sample_weight=w, **config) * w.numel(), w.sum()]) / _steps(w)
        return statistics
    values = _values(kind, config)

    def statistics(y, p, w=None):
        v = values(y, p).to(p.dtype)
        w = _ones(y, p, w)
        if v.dim() > w.dim():
            v = v.mean(dim=tuple(range(w.dim(), v.dim())))
        steps, w = _steps(w), w.expand(v.shape)
        return torch.stack([(v * w).sum(), w.sum()]) / steps
    return statistics


def _confusion(metric: MetricSpec):
    config = metric.config
    ts = thresholds(metric)

    def statistics(y, p, w=None):
        if metric.kind == "auc" and config.get("from_logits"):
            p = torch.sigmoid(p)
        if y.dim() == p.dim() - 1 and p.shape[-1] == 1:
            y = y.unsqueeze(-1)
        if y.shape != p.shape:
            raise ValueError(f"metric {metric.name!r}: targets of shape {tuple(y.shape)} do not match outputs of "
                             f"shape {tuple(p.shape)} (precision, recall and AUC take targets shaped like the outputs)")
        w = _ones(y, p, w)
        w = w.reshape(w.shape + (1,) * (p.dim() - w.dim())).expand(p.shape)
        t = torch.as_tensor(ts, dtype=p.dtype, device=p.device).reshape((-1,) + (1,) * p.dim())
        positive = p.unsqueeze(0) > t
        if config.get("top_k") is not None:
            order = torch.sort(p, dim=-1, descending=True, stable=True).indices[..., :config["top_k"]]
            keep = torch.zeros(p.shape, dtype=torch.bool, device=p.device).scatter(-1, order, True)
            positive = positive & keep
        label = y != 0
        if config.get("class_id") is not None:
            c = config["class_id"]
            positive, label, w = positive[..., c], label[..., c], w[..., c]
        n = len(ts)
        positive, label, w = positive.reshape(n, -1), label.reshape(1, -1), w.reshape(1, -1)
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        return torch.stack([torch.where(label & positive, w, zero).sum(dim=1),
                            torch.where(~label & positive, w, zero).sum(dim=1),
                            torch.where(~label & ~positive, w, zero).sum(dim=1),
                            torch.where(label & ~positive, w, zero).sum(dim=1)])
    return statistics


def _mean_iou(metric: MetricSpec):
    config = metric.config
    c = int(config["num_classes"])

    def statistics(y, p, w=None):
        true = y if config.get("sparse_y_true", True) else y.argmax(dim=-1)
        pred = p if config.get("sparse_y_pred", True) else p.argmax(dim=-1)
        true, pred = true.long(), pred.long()
        w = _ones(y, p, w)
        w = w.reshape(w.shape + (1,) * (true.dim() - w.dim())).expand(true.shape).reshape(-1)
        true, pred = true.reshape(-1), pred.reshape(-1)
        valid = (true >= 0) & (true < c) & (pred >= 0) & (pred < c)
        index = torch.where(valid, true * c + pred, torch.zeros_like(true))
        counts = torch.zeros(c * c, dtype=p.dtype, device=p.device).index_add_(0, index, torch.where(valid, w, 0))
        return counts.reshape(c, c)
    return statistics


def get(metric: MetricSpec) -> Metric:
    """A plain mean metric: ``(y, p) -> batch mean``."""
    if metric.kind in _FROM_LOSS:
        loss = _FROM_LOSS[metric.kind]
        return lambda y, p: loss(y, p, **metric.config)
    values = _values(metric.kind, metric.config)
    return lambda y, p: values(y, p).to(p.dtype).mean()


def get_statistics(metric: MetricSpec):
    """A summed metric: ``(y, p, sample_weight) -> statistics`` (see ``statistics_function``)."""
    return statistics_function(metric, _confusion, _mean_iou, _weighted_mean)


#: The kinds this backend implements.
METRICS = MEAN_KINDS + STATEFUL_KINDS + ("function",)
