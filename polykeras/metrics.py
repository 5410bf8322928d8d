"""Metrics: names resolved the way Keras resolves them.

``metrics=["accuracy"]`` means binary, sparse-categorical or categorical
accuracy depending on the loss and the shapes of targets and outputs, as in
Keras's ``compile``. Each resolved metric is a pair ``(display name, kind)``:
the name keys the logs (``accuracy``, ``val_accuracy``), the kind names the
math every backend implements (mean over the batch, then a sample-weighted
mean over the epoch -- Keras's ``MeanMetricWrapper``). ``binary_accuracy``
counts ``p > 0.5`` as class 1; the accuracies of a sequence output average
over its time steps too; the crossentropy metrics are the losses with their
default options.
"""

from __future__ import annotations

KINDS = ("binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
         "mean_squared_error", "mean_absolute_error", "binary_crossentropy",
         "categorical_crossentropy", "sparse_categorical_crossentropy")

_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


class Metric:
    """A named metric (``keras.metrics.SparseCategoricalAccuracy()`` and friends)."""

    kind = ""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or self.kind


def _metric_class(class_name: str, kind: str) -> type[Metric]:
    return type(class_name, (Metric,), {"kind": kind, "__doc__": f"Keras's ``{class_name}`` metric."})


BinaryAccuracy = _metric_class("BinaryAccuracy", "binary_accuracy")
CategoricalAccuracy = _metric_class("CategoricalAccuracy", "categorical_accuracy")
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", "sparse_categorical_accuracy")
MeanSquaredError = _metric_class("MeanSquaredError", "mean_squared_error")
MeanAbsoluteError = _metric_class("MeanAbsoluteError", "mean_absolute_error")


def resolve(identifier, loss_kind: str, y_ndim: int, output_shape: tuple) -> tuple[str, str]:
    """``(display name, kind)`` for one entry of ``compile(metrics=[...])``.

    ``y_ndim`` is the rank of the targets given to ``fit``; ``output_shape``
    the model's output shape.
    """
    if isinstance(identifier, Metric):
        return identifier.name, identifier.kind
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier.kind, identifier.kind
    if callable(identifier) and getattr(identifier, "__name__", None):
        identifier = identifier.__name__
    if not isinstance(identifier, str):
        raise TypeError(f"cannot interpret {identifier!r} as a metric; use a name such as 'accuracy'")
    if identifier in ("accuracy", "acc"):
        binary = loss_kind == "binary_crossentropy" or (output_shape and output_shape[-1] == 1)
        sparse = loss_kind == "sparse_categorical_crossentropy" or y_ndim < len(output_shape)
        if binary:
            return identifier, "binary_accuracy"
        return identifier, "sparse_categorical_accuracy" if sparse else "categorical_accuracy"
    kind = _ALIASES.get(identifier, identifier)
    if kind not in KINDS:
        raise ValueError(f"unknown metric {identifier!r}; valid names: accuracy, acc, {', '.join(KINDS)}, mse, mae")
    return identifier, kind
