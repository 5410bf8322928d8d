"""Keras's metric classes, as configuration: each object is a kind, its options under
Keras's argument names and defaults, and a name (Keras's default log name unless one is
given). The math is the backends'; the ratio/interpolation math of the stateful ones is
:mod:`polykeras.metrics.statistics`. Used by hand (``update_state`` / ``result`` /
``reset_state`` on arrays) an object runs the NumPy reference's code (:mod:`.eager`); a
subclass of :class:`Metric` with its own ``update_state`` and ``result`` (variables from
``add_variable``) works that way too, but not in ``compile()``."""

from __future__ import annotations

from typing import Any

from polykeras.metrics import eager
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
        if not self.kind:
            raise TypeError(
                f"metric {self.name!r}: {type(self).__name__} subclasses keras.metrics.Metric with its own "
                "update_state/result, which polykeras runs by hand only (m.update_state(y_true, y_pred); "
                "m.result()), not inside compile()/fit(): the backends run compiled metrics natively. In "
                "compile(metrics=...) give a function fn(y_true, y_pred) written with polykeras.ops that returns "
                "per-sample values (logged as their mean over samples, as Keras's MeanMetricWrapper), or a "
                "built-in metric")
        return MetricSpec(name or self.name, self.kind, self._options(), weighted)

    # -- used by hand, on arrays (polykeras.metrics.eager) --------------------
    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Add a batch (NumPy arrays or tensors) to the state, with Keras's ``sample_weight``."""
        eager.update(self, y_true, y_pred, sample_weight)

    def result(self):
        """The value since the last :meth:`reset_state`, a NumPy scalar of the metric's dtype."""
        return eager.result(self)

    def reset_state(self) -> None:
        self._eager = None
        for variable in self.__dict__.get("_variables", []):
            variable.reset()

    def reset_states(self) -> None:
        self.reset_state()

    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("_eager") is not None:  # the reference's function is found again on the next update
            state["_eager"] = (state["_eager"][0], None, state["_eager"][2])
        return state

    def __call__(self, *args, **kwargs):
        """``update_state`` then ``result`` (Keras's ``Metric.__call__``)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation: str = "sum",
                     name: str | None = None):
        """A state variable for a subclass's own ``update_state``/``result`` (``assign``,
        ``assign_add``, ``value``); :meth:`reset_state` sets it back to its initial value."""
        return eager.make_variable(self, shape, initializer, dtype, name)

    def add_weight(self, shape=(), initializer="zeros", dtype=None, name: str | None = None):
        return self.add_variable(shape, initializer, dtype, name=name)

    @property
    def variables(self) -> list:
        return list(self.__dict__.get("_variables", []))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _mean_class(class_name: str, kind: str, direction: str = "up", default_name: str | None = None) -> type[Metric]:
    return type(class_name, (Metric,), {"kind": kind, "default_name": default_name or kind, "_direction": direction,
                                        "__doc__": f"Keras's ``{class_name}`` metric."})


CategoricalAccuracy = _mean_class("CategoricalAccuracy", "categorical_accuracy")
SparseCategoricalAccuracy = _mean_class("SparseCategoricalAccuracy", "sparse_categorical_accuracy")
MeanSquaredError = _mean_class("MeanSquaredError", "mean_squared_error", "down")
MeanAbsoluteError = _mean_class("MeanAbsoluteError", "mean_absolute_error", "down")
MeanAbsolutePercentageError = _mean_class("MeanAbsolutePercentageError", "mean_absolute_percentage_error", "down")
MeanSquaredLogarithmicError = _mean_class("MeanSquaredLogarithmicError", "mean_squared_logarithmic_error", "down")
Hinge = _mean_class("Hinge", "hinge", "down")
SquaredHinge = _mean_class("SquaredHinge", "squared_hinge", "down")
CategoricalHinge = _mean_class("CategoricalHinge", "categorical_hinge", "down")
KLDivergence = _mean_class("KLDivergence", "kl_divergence", "down")
Poisson = _mean_class("Poisson", "poisson", "down")
LogCoshError = _mean_class("LogCoshError", "log_cosh", "down", "logcosh")
RootMeanSquaredError = _mean_class("RootMeanSquaredError", "root_mean_squared_error", "down")


class BinaryAccuracy(Metric):
    """How often ``y_true`` equals ``y_pred > threshold`` (Keras's ``BinaryAccuracy``; give
    ``threshold=0.0`` for a model that outputs logits)."""

    kind = default_name = "binary_accuracy"

    def __init__(self, name: str | None = None, dtype=None, threshold: float = 0.5):
        super().__init__(name, dtype)
        self.threshold = float(threshold)

    def _options(self):
        return {"threshold": self.threshold}


class _Crossentropy(Metric):
    _direction = "down"

    def __init__(self, name: str | None = None, dtype=None, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1):
        if axis != -1:
            raise NotImplementedError(f"{type(self).__name__}(axis={axis!r}) is not supported; classes are on the "
                                      "last axis")
        super().__init__(name, dtype)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def _options(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(_Crossentropy):
    """Keras's ``BinaryCrossentropy`` metric: the loss of that name, averaged over samples."""

    kind = default_name = "binary_crossentropy"


class CategoricalCrossentropy(_Crossentropy):
    """Keras's ``CategoricalCrossentropy`` metric: the loss of that name, averaged over samples."""

    kind = default_name = "categorical_crossentropy"


class SparseCategoricalCrossentropy(_Crossentropy):
    """Keras's ``SparseCategoricalCrossentropy`` metric (integer class targets; no ``label_smoothing``)."""

    kind = default_name = "sparse_categorical_crossentropy"

    def __init__(self, name: str | None = None, dtype=None, from_logits: bool = False, axis: int = -1):
        super().__init__(name, dtype, from_logits, 0.0, axis)

    def _options(self):
        return {"from_logits": self.from_logits}


class CosineSimilarity(Metric):
    """The mean cosine of the angle between targets and outputs on the last axis (Keras's
    ``CosineSimilarity``: ``+sum(y_n * p_n)``, the ``cosine_similarity`` loss's negative)."""

    kind = default_name = "cosine_similarity"

    def __init__(self, name: str | None = None, dtype=None, axis: int = -1):
        if axis != -1:
            raise NotImplementedError(f"CosineSimilarity(axis={axis!r}) is not supported; it compares the last axis")
        super().__init__(name, dtype)

    def get_config(self):
        return {**super().get_config(), "axis": -1}


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
                                          SparseTopKCategoricalAccuracy, Precision, Recall, AUC, MeanIoU,
                                          MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Hinge,
                                          SquaredHinge, CategoricalHinge, KLDivergence, Poisson, LogCoshError,
                                          CosineSimilarity, BinaryCrossentropy, CategoricalCrossentropy,
                                          SparseCategoricalCrossentropy, RootMeanSquaredError)}
