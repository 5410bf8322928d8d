"""Traced loss and metric functions (:mod:`polykeras.functions`) in torch: the op graph run
with the same ``Operation`` layers as in models, differentiated by autograd."""

from __future__ import annotations

import torch

from polykeras.functions import Y_PRED, Y_TRUE
from polykeras.spec import ModelSpec

from .layers.operation import Op


class GraphFunction:
    """``fn(y_true, y_pred)`` from its traced graph (a spec dict), in ``y_pred``'s dtype and device;
    ``y_true`` is converted to that dtype first, as Keras's losses do."""

    def __init__(self, graph: dict):
        self.spec = ModelSpec.from_dict(graph)
        self._ops: dict[tuple, list[Op]] = {}

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        key = (y_pred.dtype, y_pred.device)
        if key not in self._ops:
            self._ops[key] = [Op(layer, i, *key) for i, layer in enumerate(self.spec.layers)]
        values = {Y_TRUE: y_true.to(y_pred.dtype), Y_PRED: y_pred}
        for layer, op in zip(self.spec.layers, self._ops[key]):
            values[layer.name] = op.forward([], [values[name] for name in layer.inbound], None)
        return values[self.spec.outputs[0]]


def function_values(graph: dict):
    """Per-sample values (a metric's: booleans count 0/1) of a traced function."""
    fn = GraphFunction(graph)
    return lambda y, p: fn(y, p).to(p.dtype)
