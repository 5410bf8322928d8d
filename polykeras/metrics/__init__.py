"""Keras's metrics: objects with their options (:mod:`.objects`), names resolved as Keras
resolves them (:mod:`.resolve`), and the one implementation of how a stateful or weighted
metric's value comes from the statistics every backend sums (:mod:`.statistics`)."""

from polykeras.metrics.objects import (AUC, BinaryAccuracy, CategoricalAccuracy, MeanAbsoluteError, MeanIoU,
                                       MeanSquaredError, Metric, Precision, Recall, SparseCategoricalAccuracy,
                                       SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy)
from polykeras.metrics.resolve import KINDS, check, get, resolve, serialize, unique_names

__all__ = ["AUC", "BinaryAccuracy", "CategoricalAccuracy", "KINDS", "MeanAbsoluteError", "MeanIoU",
           "MeanSquaredError", "Metric", "Precision", "Recall", "SparseCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "check", "get", "resolve", "serialize",
           "unique_names"]
