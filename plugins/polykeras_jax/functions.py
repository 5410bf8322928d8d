"""Traced loss and metric functions (:mod:`polykeras.functions`) in JAX: the op graph run
with the same ``Operation`` layers as in models, inside the jitted step."""

from __future__ import annotations

import numpy as np

from polykeras.functions import Y_PRED, Y_TRUE
from polykeras.spec import ModelSpec

from .layers.operation import Op


class GraphFunction:
    """``fn(y_true, y_pred)`` from its traced graph (a spec dict), in ``y_pred``'s dtype;
    ``y_true`` is converted to that dtype first, as Keras's losses do."""

    def __init__(self, graph: dict):
        self.spec = ModelSpec.from_dict(graph)
        self._ops: dict[np.dtype, list[Op]] = {}

    def __call__(self, y_true, y_pred):
        dtype = np.dtype(y_pred.dtype)
        if dtype not in self._ops:
            self._ops[dtype] = [Op(layer, dtype) for layer in self.spec.layers]
        values = {Y_TRUE: y_true.astype(dtype), Y_PRED: y_pred}
        for layer, op in zip(self.spec.layers, self._ops[dtype]):
            values[layer.name] = op([], [values[name] for name in layer.inbound], None)
        return values[self.spec.outputs[0]]


def function_values(graph: dict):
    """Per-sample values (a metric's: booleans count 0/1) of a traced function."""
    fn = GraphFunction(graph)
    return lambda y, p: fn(y, p).astype(p.dtype)
