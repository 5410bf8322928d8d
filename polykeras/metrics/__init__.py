"""Keras's metrics: objects with their options (:mod:`.objects`), names resolved as Keras
resolves them (:mod:`.resolve`), the one implementation of how a stateful or weighted
metric's value comes from the statistics every backend sums (:mod:`.statistics`), and
metric objects used by hand on arrays, with the ``Mean``/``Sum`` trackers (:mod:`.eager`)."""

from polykeras.metrics.eager import Mean, Sum
from polykeras.metrics.objects import (AUC, BinaryAccuracy, BinaryCrossentropy, CategoricalAccuracy,
                                       CategoricalCrossentropy, CategoricalHinge, CosineSimilarity, Hinge,
                                       KLDivergence, LogCoshError, MeanAbsoluteError, MeanAbsolutePercentageError,
                                       MeanIoU, MeanSquaredError, MeanSquaredLogarithmicError, Metric, Poisson,
                                       Precision, Recall, RootMeanSquaredError, SparseCategoricalAccuracy,
                                       SparseCategoricalCrossentropy, SparseTopKCategoricalAccuracy, SquaredHinge,
                                       TopKCategoricalAccuracy)
from polykeras.metrics.resolve import KINDS, check, get, resolve, serialize, unique_names

__all__ = ["AUC", "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy", "CategoricalCrossentropy",
           "CategoricalHinge", "CosineSimilarity", "Hinge", "KINDS", "KLDivergence", "LogCoshError", "Mean",
           "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanIoU", "MeanSquaredError",
           "MeanSquaredLogarithmicError", "Metric", "Poisson", "Precision", "Recall", "RootMeanSquaredError",
           "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy", "SparseTopKCategoricalAccuracy",
           "SquaredHinge", "Sum", "TopKCategoricalAccuracy", "check", "get", "resolve", "serialize", "unique_names"]
