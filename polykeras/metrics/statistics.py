"""How a metric's value comes out of what a backend counts: the one place the ratio,
interpolation and IoU math exists.

Two mechanisms, chosen by :func:`is_summed`:

* A **mean metric** (accuracies, ``mse``, the crossentropies, top-k accuracy) in
  ``compile(metrics=...)``: the backend computes its batch mean and the program keeps
  the sample-count-weighted mean over the epoch (Keras's ``MeanMetricWrapper``).
* A **summed metric** -- every entry of ``weighted_metrics``, every metric its output's Keras
  mask weights (``MetricSpec.masked``) and every stateful kind
  (``precision``, ``recall``, ``auc``, ``mean_iou``, ``root_mean_squared_error``): the backend returns the batch's
  *sufficient statistics*, an array of the shape :func:`statistics_shape` gives, the
  program adds them up over the epoch (native arithmetic, no host sync), and
  :func:`value` turns the sums into the logged number, in NumPy float64.

The statistics, for targets ``y``, outputs ``p`` and sample weights ``w`` (ones when the
batch has none):

* weighted mean kind: ``[sum(w * v), sum(w)]`` over the per-sample values ``v`` (a
  value of a sequence output averaged over its time steps where ``w`` is per sample;
  for a crossentropy ``v`` is the per-sample loss) -- Keras's ``Mean`` with weights. Where
  ``w`` has steps too (``(batch, T)``: temporal weights, a mask) both sums are divided by
  ``T``, as Keras reduces each sample to its mean over the steps before summing (the same
  value within a batch; batches of other lengths then weigh as in Keras).
* ``precision``/``recall``/``auc``: ``[tp, fp, tn, fn]`` at each of :func:`thresholds`,
  shape ``(4, T)``: Keras's ``update_confusion_matrix_variables``. All of ``y`` and
  ``p`` is flattened (after ``class_id`` picks one column and ``top_k`` keeps each row's
  ``k`` largest outputs -- ties to the lower index -- as positive candidates); a
  prediction is positive at threshold ``t`` when ``p > t``; ``y`` counts as true when
  non-zero; each element weighs its sample's weight. ``auc`` with ``from_logits``
  applies the sigmoid first.
* ``root_mean_squared_error``: ``mean_squared_error``'s weighted-mean statistics; the value is the
  square root of their ratio (Keras's ``RootMeanSquaredError``, a ``Mean`` of squared errors).
* ``mean_iou``: the ``(C, C)`` confusion matrix, rows the true class and columns the
  predicted one (after ``argmax`` of one-hot targets / probabilities where the config
  says they are not sparse), each flattened element adding its weight; class ids
  outside ``[0, C)`` are left out, as Keras does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from polykeras.spec import MetricSpec

#: Kinds whose value is a mean over samples.
MEAN_KINDS = ("binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "mean_squared_error",
              "mean_absolute_error", "binary_crossentropy", "categorical_crossentropy",
              "sparse_categorical_crossentropy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
              "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "hinge", "squared_hinge",
              "categorical_hinge", "kl_divergence", "poisson", "log_cosh", "cosine_similarity")
#: Kinds whose statistics are the confusion counts at thresholds.
CONFUSION_KINDS = ("precision", "recall", "auc")
#: Kinds that always sum statistics.
STATEFUL_KINDS = CONFUSION_KINDS + ("mean_iou", "root_mean_squared_error")
#: Stateful kinds whose statistics are a weighted mean kind's, the value a function of its ratio.
_MEAN_OF = {"root_mean_squared_error": "mean_squared_error"}
#: Kinds an output's Keras mask weights (Keras's ``MeanMetricWrapper``: the mean kinds and a user's
#: function; not the stateful kinds, whose ``update_state`` ignores the mask).
MASKED_KINDS = MEAN_KINDS + ("function",)
#: Kinds whose per-sample value is the loss of the same kind with its default options (computed by the
#: backend's loss code; Keras's metric of that name wraps the loss function). ``cosine_similarity`` is the
#: exception in sign: Keras's metric is ``+sum(y_n * p_n)``, its loss the negative (:data:`NEGATED_LOSS_KINDS`).
LOSS_KINDS = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
              "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
              "mean_squared_logarithmic_error", "hinge", "squared_hinge", "kl_divergence", "poisson", "log_cosh",
              "cosine_similarity")
#: Loss kinds whose metric is the loss's negative.
NEGATED_LOSS_KINDS = ("cosine_similarity",)
#: The :data:`LOSS_KINDS` a backend computes with its loss code (mse and mae have simpler per-sample values).
FROM_LOSS_KINDS = tuple(k for k in LOSS_KINDS if k not in ("mean_squared_error", "mean_absolute_error"))
#: Keras's ``NEG_INF``: the threshold of ``Precision(top_k=...)`` when none is given.
NEG_INF = -1e10
#: Keras's ``backend.epsilon()`` in its AUC thresholds and IoU (a constant there, not the settable fuzz).
KERAS_EPSILON = 1e-7


def is_summed(metric: MetricSpec) -> bool:
    """Does the backend return statistics (:func:`statistics_shape`) rather than a batch mean?"""
    return metric.weighted or metric.masked or metric.kind in STATEFUL_KINDS


def thresholds(metric: MetricSpec) -> np.ndarray:
    """The thresholds of a confusion kind, float64, as Keras places them: ``Precision``/
    ``Recall`` the given ones (default 0.5, or ``NEG_INF`` with ``top_k``); ``AUC``
    ``[-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps]`` (or the given ones between ``-eps`` and ``1 + eps``)."""
    config = metric.config
    if metric.kind == "auc":
        given = config.get("thresholds")
        if given is not None:
            inner = sorted(float(t) for t in given)
        else:
            n = int(config.get("num_thresholds", 200))
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
        return np.array([0.0 - KERAS_EPSILON] + inner + [1.0 + KERAS_EPSILON], dtype=np.float64)
    given = config.get("thresholds")
    if given is None:
        given = NEG_INF if config.get("top_k") is not None else 0.5
    return np.atleast_1d(np.asarray(given, dtype=np.float64))


def statistics_function(metric: MetricSpec, confusion, mean_iou, weighted_mean):
    """A backend's ``(y, p, sample_weight) -> statistics`` for a summed metric, from its three
    builders (``confusion(metric)``, ``mean_iou(metric)``, ``weighted_mean(kind, config)``); the
    sample weights are ignored unless the metric is a ``weighted_metrics`` entry or masked (its
    weights then the mask's), as Keras's ``compile`` does."""
    if metric.kind in CONFUSION_KINDS:
        fn = confusion(metric)
    elif metric.kind == "mean_iou":
        fn = mean_iou(metric)
    else:
        fn = weighted_mean(_MEAN_OF.get(metric.kind, metric.kind), metric.config)
    return fn if metric.weighted or metric.masked else (lambda y, p, sample_weight=None: fn(y, p, None))


def summed(training) -> list[tuple[int, MetricSpec]]:
    """``(output index, metric)`` of a :class:`~polykeras.spec.TrainingSpec`'s summed metrics, in
    the order backends keep their statistics (that of ``all_metrics``): the order of a step's
    ``metric_weight`` entries (:meth:`polykeras.program.Program.train_step`)."""
    return [(i, m) for i, m in training.all_metrics if is_summed(m)]


def statistics_shape(metric: MetricSpec) -> tuple[int, ...]:
    if metric.kind in CONFUSION_KINDS:
        return (4, len(thresholds(metric)))
    if metric.kind == "mean_iou":
        c = int(metric.config["num_classes"])
        return (c, c)
    if metric.weighted or metric.masked or metric.kind in _MEAN_OF:
        return (2,)
    raise ValueError(f"metric {metric.name!r} ({metric.kind}) is a plain mean metric: it has no statistics")


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, 0 where ``b`` is 0 (Keras's ``divide_no_nan``)."""
    safe = np.where(b == 0, 1.0, b)
    return np.where(b == 0, 0.0, a / safe)


def _interpolated_pr_auc(tp, fp, fn) -> float:
    """Keras's ``AUC.interpolate_pr_auc`` (Davis & Goadrich 2006): precision interpolated
    linearly in the number of positive predictions between thresholds."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _ratio(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    p_ratio = np.where(both, _ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
    increment = _ratio(slope * (dtp + intercept * np.log(np.where(p_ratio > 0, p_ratio, 1.0))),
                       np.maximum(tp[1:] + fn[1:], 0))
    return float(np.sum(increment))


def _auc(config: dict, stats: np.ndarray) -> float:
    tp, fp, tn, fn = stats
    curve = str(config.get("curve", "ROC")).upper()
    method = str(config.get("summation_method", "interpolation")).lower()
    if curve == "PR" and method == "interpolation":
        return _interpolated_pr_auc(tp, fp, fn)
    recall = _ratio(tp, tp + fn)
    x, y = (_ratio(fp, fp + tn), recall) if curve == "ROC" else (recall, _ratio(tp, tp + fp))
    if method == "interpolation":
        heights = (y[:-1] + y[1:]) / 2.0
    elif method == "minoring":
        heights = np.minimum(y[:-1], y[1:])
    else:
        heights = np.maximum(y[:-1], y[1:])
    return float(np.sum((x[:-1] - x[1:]) * heights))


def _mean_iou(stats: np.ndarray) -> float:
    """Keras's ``MeanIoU.result``: the mean over classes present (in targets or predictions)
    of ``tp / (tp + fp + fn)``, with Keras's epsilon in both divisions."""
    tp = np.diag(stats)
    denominator = stats.sum(axis=0) + stats.sum(axis=1) - tp
    valid = denominator > 1e-9
    iou = np.where(valid, tp / (denominator + KERAS_EPSILON), 0.0)
    return float(iou.sum() / (valid.sum() + KERAS_EPSILON))


def value(metric: MetricSpec, stats) -> float:
    """The logged value of a summed metric from its statistics summed over batches."""
    stats = np.asarray(stats, dtype=np.float64)
    if metric.kind == "precision":
        return float(_ratio(stats[0], stats[0] + stats[1])[0])
    if metric.kind == "recall":
        return float(_ratio(stats[0], stats[0] + stats[3])[0])
    if metric.kind == "auc":
        return _auc(metric.config, stats)
    if metric.kind == "mean_iou":
        return _mean_iou(stats)
    if metric.kind == "root_mean_squared_error":
        return float(np.sqrt(_ratio(stats[0], stats[1])))
    return float(_ratio(stats[0], stats[1]))


class SummedStatistics:
    """The statistics of the summed metrics, added up batch by batch in the backend's own
    arrays (``add`` does native ``+`` only), turned into values by :func:`value` when
    the logs are read. ``to_numpy`` copies one native array to the host."""

    def __init__(self, metrics: Sequence[MetricSpec], to_numpy: Callable[[Any], np.ndarray] = np.asarray):
        self.metrics = list(metrics)
        self.to_numpy = to_numpy
        self.reset()

    def reset(self) -> None:
        self.sums: list[Any] | None = None

    def add(self, stats: Sequence[Any]) -> None:
        if not self.metrics:
            return
        self.sums = list(stats) if self.sums is None else [s + t for s, t in zip(self.sums, stats)]

    def results(self) -> dict[str, float]:
        if self.sums is None:
            return {}
        return {m.name: value(m, self.to_numpy(s)) for m, s in zip(self.metrics, self.sums)}


def ordered(names: Sequence[str], *parts: dict[str, float]) -> dict[str, float]:
    """The logs of several accumulators in ``names`` order (``TrainingSpec.log_names``)."""
    merged: dict[str, float] = {}
    for part in parts:
        merged.update(part)
    return {name: merged[name] for name in names if name in merged}


def metric_losses(losses: dict) -> dict:
    """A backend's metric function per :data:`FROM_LOSS_KINDS` kind, from its ``losses`` (kind ->
    ``fn(y, p, sample_weight=None, **config)``): the loss itself, negated for :data:`NEGATED_LOSS_KINDS`."""
    def negated(fn):
        return lambda y, p, sample_weight=None, **config: -fn(y, p, sample_weight=sample_weight, **config)

    return {kind: negated(losses[kind]) if kind in NEGATED_LOSS_KINDS else losses[kind] for kind in FROM_LOSS_KINDS}
