"""Keras's metric classes, as configuration: each object is a kind, its options under
Keras's argument names and defaults, and a name (Keras's default log name unless one is
given). The math is the backends'; the ratio/interpolation math of the stateful ones is
:mod:`polykeras.metrics.statistics`."""

from __future__ import annotations

from typing import Any

from polykeras.spec import MetricSpec


class Metric:
    """A configured metric (``keras.metrics.SparseCategoricalAccuracy()`` and friends)."""

    kind = ""
    #: Keras's default name (the log key) when the constructor gets none.
    default_name = ""
    #: Does a bigger value mean better (for ``mode="auto"`` callbacks)?
    _direction = "up"

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or self.default_name or self.kind
        self.dtype = dtype

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (Keras's ``get_config``)."""
        return {"name": self.name, "dtype": self.dtype, **self._options()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Metric":
        return cls(**config)

    def _options(self) -> dict[str, Any]:
        """The options every backend needs (the spec's ``config``)."""
        return {}

    def to_spec(self, name: str | None = None, weighted: bool = False) -> MetricSpec:
        return MetricSpec(name or self.name, self.kind, self._options(), weighted)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _mean_class(class_name: str, kind: str, direction: str = "up") -> type[Metric]:
    return type(class_name, (Metric,), {"kind": kind, "default_name": kind, "_direction": direction,
                                        "__doc__": f"Keras's ``{class_name}`` metric."})


BinaryAccuracy = _mean_class("BinaryAccuracy", "binary_accuracy")
CategoricalAccuracy = _mean_class("CategoricalAccuracy", "categorical_accuracy")
SparseCategoricalAccuracy = _mean_class("SparseCategoricalAccuracy", "sparse_categorical_accuracy")
MeanSquaredError = _mean_class("MeanSquaredError", "mean_squared_error", "down")
MeanAbsoluteError = _mean_class("MeanAbsoluteError", "mean_absolute_error", "down")


def _positive_int(value, what: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive integer, got {value!r}")
    return value


class TopKCategoricalAccuracy(Metric):
    """How often the target's class is among the ``k`` largest outputs (one-hot targets).
    A target tied with the ``k``-th largest output counts as in the top ``k`` (as Keras's
    ``in_top_k`` on its JAX/NumPy backends: fewer than ``k`` outputs strictly greater)."""

    kind = default_name = "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None, dtype=None):
        super().__init__(name, dtype)
        self.k = _positive_int(k, "k", type(self).__name__)

    def _options(self):
        return {"k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """:class:`TopKCategoricalAccuracy` with integer class targets."""

    kind = default_name = "sparse_top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None, dtype=None, from_sorted_ids: bool = False):
        if from_sorted_ids:
            raise NotImplementedError("SparseTopKCategoricalAccuracy(from_sorted_ids=True) is not supported; give "
                                      "the model's scores, not sorted ids")
        super().__init__(k, name, dtype)


def _thresholds(value, owner: str):
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if len(values) != 1:
        raise NotImplementedError(f"{owner}(thresholds={value!r}): several thresholds make Keras log a vector; "
                                  "polykeras logs numbers -- compile one metric per threshold (e.g. "
                                  f"{owner}(thresholds=0.3, name='{owner.lower()}_at_0.3'))")
    if not 0.0 <= values[0] <= 1.0:
        raise ValueError(f"{owner}: thresholds must lie in [0, 1], got {value!r}")
    return values


class _ConfusionMetric(Metric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name: str | None = None, dtype=None):
        super().__init__(name, dtype)
        owner = type(self).__name__
        self.thresholds = _thresholds(thresholds, owner)
        self.top_k = None if top_k is None else _positive_int(top_k, "top_k", owner)
        self.class_id = None if class_id is None else int(class_id)

    def _options(self):
        return {"thresholds": self.thresholds, "top_k": self.top_k, "class_id": self.class_id}


class Precision(_ConfusionMetric):
    """``tp / (tp + fp)`` over the epoch (Keras's ``Precision``; 0 when nothing is predicted positive)."""

    kind = default_name = "precision"


class Recall(_ConfusionMetric):
    """``tp / (tp + fn)`` over the epoch (Keras's ``Recall``; 0 when no target is positive)."""

    kind = default_name = "recall"


class AUC(Metric):
    """Area under the ROC or PR curve from confusion counts at ``num_thresholds``
    thresholds (Keras's ``AUC``: its threshold placement and summation methods)."""

    kind = default_name = "auc"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype=None, thresholds=None, multi_label: bool = False,
                 num_labels=None, label_weights=None, from_logits: bool = False):
        super().__init__(name, dtype)
        for option, value in (("multi_label", multi_label), ("num_labels", num_labels),
                              ("label_weights", label_weights)):
            if value:
                raise NotImplementedError(f"AUC({option}={value!r}) is not supported: polykeras's AUC flattens "
                                          "all labels into one curve (Keras's default, multi_label=False)")
        if str(curve).upper() not in ("ROC", "PR"):
            raise (NotImplementedError if str(curve).upper() == "PRGAIN" else ValueError)(
                f"AUC(curve={curve!r}): polykeras supports 'ROC' and 'PR'")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC(summation_method={summation_method!r}): expected 'interpolation', 'minoring' "
                             "or 'majoring'")
        if thresholds is None and (isinstance(num_thresholds, bool) or int(num_thresholds) <= 1):
            raise ValueError(f"AUC: num_thresholds must be an integer > 1, got {num_thresholds!r}")
        self.thresholds = None if thresholds is None else sorted(float(t) for t in thresholds)
        self.num_thresholds = len(self.thresholds) + 2 if self.thresholds is not None else int(num_thresholds)
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self.from_logits = bool(from_logits)

    def _options(self):
        return {"num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "thresholds": self.thresholds,
                "from_logits": self.from_logits}


class MeanIoU(Metric):
    """Mean intersection-over-union of ``num_classes`` classes from the epoch's confusion
    matrix (Keras's ``MeanIoU``: by default targets *and predictions* are class ids; give
    ``sparse_y_pred=False`` for a model that outputs scores)."""

    kind = "mean_iou"
    default_name = "mean_io_u"

    def __init__(self, num_classes: int, name: str | None = None, dtype=None, ignore_class=None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True, axis: int = -1):
        super().__init__(name, dtype)
        if ignore_class is not None:
            raise NotImplementedError(f"MeanIoU(ignore_class={ignore_class!r}) is not supported; give those "
                                      "samples a sample weight of 0 in weighted_metrics instead")
        if axis != -1:
            raise NotImplementedError(f"MeanIoU(axis={axis!r}) is not supported; classes are on the last axis")
        self.num_classes = _positive_int(num_classes, "num_classes", "MeanIoU")
        self.sparse_y_true, self.sparse_y_pred = bool(sparse_y_true), bool(sparse_y_pred)

    def _options(self):
        return {"num_classes": self.num_classes, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred}


#: Classes by name, for ``{"class_name": ..., "config": ...}`` entries (a saved model's compile config).
CLASSES = {cls.__name__: cls for cls in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                                          MeanSquaredError, MeanAbsoluteError, TopKCategoricalAccuracy,
                                          SparseTopKCategoricalAccuracy, Precision, Recall, AUC, MeanIoU)}
