"""Metrics named the way Keras names them.

``metrics=["accuracy"]`` means binary, sparse-categorical or categorical accuracy
depending on the loss and the shapes of targets and outputs, as in Keras's ``compile``.
Each entry resolves to a :class:`polykeras.spec.MetricSpec`: the name keys the logs
(``accuracy``, ``val_accuracy``), the kind and config name the math every backend
implements (:mod:`polykeras.metrics.statistics`). ``binary_accuracy`` counts
``p > 0.5`` as class 1; the accuracies of a sequence output average over its time
steps too; the crossentropy metrics are the losses with their default options.
"""

from __future__ import annotations

from polykeras.functions import traced
from polykeras.metrics import objects
from polykeras.metrics.statistics import MEAN_KINDS, STATEFUL_KINDS
from polykeras.saving.registration import get_registered_name, get_registered_object, require_registered
from polykeras.spec import MetricSpec

KINDS = MEAN_KINDS + STATEFUL_KINDS

_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "MSE": "mean_squared_error",
            "MAE": "mean_absolute_error", "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
            "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
            "msle": "mean_squared_logarithmic_error", "MSLE": "mean_squared_logarithmic_error",
            "log_cosh_error": "log_cosh"}
#: Names that make a metric object with its defaults (as ``keras.metrics.get`` does).
_OBJECT_NAMES = {"precision": objects.Precision, "recall": objects.Recall, "auc": objects.AUC,
                 "root_mean_squared_error": objects.RootMeanSquaredError}
_NAMES = ("accuracy", "acc", *MEAN_KINDS, *_ALIASES, *_OBJECT_NAMES, *objects.CLASSES)


def resolve(identifier, loss_kind: str, y_ndim: int, output_shape: tuple, weighted: bool = False) -> MetricSpec:
    """The :class:`MetricSpec` of one entry of ``compile(metrics=[...])`` (or of
    ``weighted_metrics``, with ``weighted``): a name, a metric object or class, or a
    serialised object (``{"class_name": ..., "config": ...}``). ``y_ndim`` is the rank of
    the targets given to ``fit``; ``output_shape`` the model's output shape."""
    if isinstance(identifier, dict) and "class_name" in identifier:
        identifier = get(identifier)
    if isinstance(identifier, objects.Metric):
        return identifier.to_spec(weighted=weighted)
    if isinstance(identifier, type) and issubclass(identifier, objects.Metric):
        return identifier().to_spec(weighted=weighted)
    if _is_function(identifier):  # fn(y_true, y_pred) written with polykeras.ops: traced (polykeras.functions)
        fn = traced(identifier, "metric")
        return MetricSpec(fn.name, "function", {"graph": fn.graph(output_shape, y_ndim)}, weighted)
    if callable(identifier) and getattr(identifier, "__name__", None):
        identifier = identifier.__name__
    if isinstance(identifier, str) and identifier not in _NAMES:
        registered = get_registered_object(identifier)
        if registered is not None:
            return resolve(registered, loss_kind, y_ndim, output_shape, weighted)
    if not isinstance(identifier, str):
        raise TypeError(f"cannot interpret {identifier!r} as a metric; use a name such as 'accuracy' or a "
                        "polykeras.metrics object")
    if identifier in ("accuracy", "acc"):
        binary = loss_kind == "binary_crossentropy" or (output_shape and output_shape[-1] == 1)
        sparse = loss_kind == "sparse_categorical_crossentropy" or y_ndim < len(output_shape)
        if binary:
            return MetricSpec(identifier, "binary_accuracy", {}, weighted)
        return MetricSpec(identifier, "sparse_categorical_accuracy" if sparse else "categorical_accuracy", {},
                          weighted)
    if identifier in _OBJECT_NAMES:
        return _OBJECT_NAMES[identifier]().to_spec(weighted=weighted)
    if identifier in objects.CLASSES:  # a class name, as keras.metrics.get takes it; logged under that name
        return objects.CLASSES[identifier]().to_spec(identifier, weighted=weighted)
    kind = _ALIASES.get(identifier, identifier)
    if kind not in MEAN_KINDS:
        raise ValueError(f"unknown metric {identifier!r}; valid names: {', '.join(_NAMES)}, a "
                         f"polykeras.metrics object ({', '.join(objects.CLASSES)}), or a function fn(y_true, y_pred) "
                         "written with polykeras.ops")
    config = {"k": 5} if "top_k" in kind else {}
    return MetricSpec(identifier, kind, config, weighted)


def _is_function(identifier) -> bool:
    """A metric function of the user's (not one of Keras's, which are known by name)."""
    return (callable(identifier) and not isinstance(identifier, (type, objects.Metric))
            and getattr(identifier, "__name__", None) not in _NAMES)


def get(identifier) -> objects.Metric | str:
    """A metric object from a serialised one (``serialize``'s dict); a name stays a name."""
    if isinstance(identifier, dict) and identifier.get("class_name") == "function":  # saved by name (serialize)
        return require_registered(identifier["config"], "metric function")
    if isinstance(identifier, dict):
        cls = objects.CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"unknown metric class {identifier.get('class_name')!r}; known: "
                             f"{', '.join(objects.CLASSES)}")
        return cls.from_config(dict(identifier.get("config") or {}))
    return identifier


def serialize(metric):
    """A name stays a name; a metric object becomes ``{"class_name", "config"}`` (JSON-able)."""
    if isinstance(metric, objects.Metric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    if isinstance(metric, type) and issubclass(metric, objects.Metric):
        return metric.__name__
    if _is_function(metric):  # as Keras writes one: by its (registered) name
        return {"class_name": "function", "config": get_registered_name(metric)}
    return metric if isinstance(metric, str) else getattr(metric, "__name__", str(metric))


def unique_names(plain: list[tuple[str, MetricSpec]], weighted: list[tuple[str, MetricSpec]]):
    """Keras 3's log names (``CompileMetrics.result``): each ``(output prefix, metric)``
    logs as ``prefix + name``; a repeated plain name gets ``_1``, ``_2``...; a weighted
    metric whose name is taken logs as ``prefix + "weighted_" + name`` (then ``_1``...).
    Returns the two lists of :class:`MetricSpec` renamed."""
    counters: dict[str, int] = {}

    def claim(name: str) -> str:
        if name not in counters:
            counters[name] = 1
            return name
        index = counters[name]
        counters[name] += 1
        return f"{name}_{index}"

    out_plain = []
    for prefix, m in plain:
        out_plain.append(MetricSpec(claim(prefix + m.name), m.kind, m.config, m.weighted))
    out_weighted = []
    for prefix, m in weighted:
        name = prefix + m.name
        if name in counters:
            name = claim(prefix + "weighted_" + m.name)
        else:
            counters[name] = 1
        out_weighted.append(MetricSpec(name, m.kind, m.config, m.weighted))
    return out_plain, out_weighted


def check(identifiers, loss_kind: str, what: str = "metrics") -> list:
    """Fail at ``compile`` on a typo, with the list of valid names; return the entries with saved
    functions (``{"class_name": "function", ...}``) replaced by the functions, found now, while a
    ``load_model(custom_objects=...)`` is in force."""
    out = []
    for m in identifiers:
        if isinstance(m, dict) and m.get("class_name") == "function":
            m = get(m)
        out.append(m)
        if _is_function(m):  # traced for the real shapes when the model first trains
            continue
        try:
            resolve(m, loss_kind, 2, (None, 2))
        except (TypeError, ValueError) as error:
            raise type(error)(f"{what}: {error}") from None
    return out
