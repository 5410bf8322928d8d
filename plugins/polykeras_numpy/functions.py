"""The reference of traced loss and metric functions (:mod:`polykeras.functions`): the op
graph run node by node with the op registry's forward, and back to ``y_pred`` with its
hand-written VJPs -- the same kernels as ``Operation`` nodes in models."""

from __future__ import annotations

import numpy as np

from polykeras.functions import Y_PRED, Y_TRUE
from polykeras.spec import ModelSpec

from .layers.operation import Op


class GraphFunction:
    """``fn(y_true, y_pred)`` from its traced graph (a spec dict), in the dtype of ``y_pred``."""

    def __init__(self, graph: dict):
        self.spec = ModelSpec.from_dict(graph)
        self._ops: dict[np.dtype, list[Op]] = {}

    def _kernels(self, dtype) -> list[Op]:
        if dtype not in self._ops:
            self._ops[dtype] = [Op(layer, dtype) for layer in self.spec.layers]
        return self._ops[dtype]

    def forward(self, y_true, y_pred):
        """The function's value and what :meth:`backward` needs; ``y_true`` in ``y_pred``'s dtype, as Keras."""
        values = {Y_TRUE: np.asarray(y_true).astype(y_pred.dtype), Y_PRED: y_pred}
        caches = []
        for layer, op in zip(self.spec.layers, self._kernels(y_pred.dtype)):
            values[layer.name], cache = op.forward([], [values[name] for name in layer.inbound], None)
            caches.append(cache)
        return values[self.spec.outputs[0]], (caches, y_pred)

    def backward(self, cache, d_out) -> np.ndarray:
        """The gradient with respect to ``y_pred`` of ``sum(d_out * fn(y_true, y_pred))``."""
        caches, y_pred = cache
        grads = {self.spec.outputs[0]: d_out}
        for layer, op, c in reversed(list(zip(self.spec.layers, self._kernels(y_pred.dtype), caches))):
            dy = grads.pop(layer.name, None)
            if dy is None:
                continue
            d_inputs, _ = op.backward([], c, dy)
            for source, d in zip(layer.inbound, d_inputs):
                if d is not None:
                    grads[source] = d if source not in grads else grads[source] + d
        d_pred = grads.get(Y_PRED)
        return np.zeros_like(y_pred) if d_pred is None else np.broadcast_to(d_pred, y_pred.shape).astype(y_pred.dtype)


def function_loss(graph: dict):
    """A loss from a traced function: Keras's ``sum_over_batch_size`` of its values, each entry
    weighted by its sample's weight (a scalar value times the mean weight), and the gradient."""
    fn = GraphFunction(graph)

    def loss(y, p, sample_weight=None):
        per, cache = fn.forward(y, p)
        per = np.asarray(per, dtype=p.dtype)
        w = np.ones((), p.dtype) if sample_weight is None else np.asarray(sample_weight, dtype=p.dtype)
        if per.ndim >= w.ndim:
            w = w.reshape(w.shape + (1,) * (per.ndim - w.ndim))
        weighted = per * w
        d_per = np.broadcast_to(w, weighted.shape) / p.dtype.type(weighted.size)
        d_per = d_per.reshape(per.shape) if d_per.shape == per.shape else d_per.sum().reshape(per.shape)
        return weighted.mean(), fn.backward(cache, d_per)

    return loss


def function_values(graph: dict):
    """A metric's per-sample values from a traced function, as floats (booleans count 0/1)."""
    fn = GraphFunction(graph)
    return lambda y, p: np.asarray(fn.forward(y, p)[0]).astype(p.dtype)
