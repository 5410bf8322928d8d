"""The reference of ``Operation`` nodes: the op registry's NumPy forward and
hand-written VJP (:mod:`polykeras.ops.registry`), read from the node's config
(:mod:`polykeras.layers.operation`)."""

from __future__ import annotations

import numpy as np

from polykeras.layers.operation import op_params, resolve_args
from polykeras.ops import registry

from .base import Kernel


class Op(Kernel):
    kind = "Operation"
    multiple_inputs = True

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.op = registry.get(self.config["op"])
        self.args = self.config["args"]
        self.params = op_params(self.config.get("params", {}), dtype)

    def _constants_in_dtype(self, arrays):
        """Float constant arrays in the compute dtype (a float32 model's constants stay float32)."""
        return [a.astype(self.dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and "input" not in arg
                else a for a, arg in zip(arrays, self.args)]

    def forward(self, weights, xs, ctx):
        arrays = self._constants_in_dtype(resolve_args(self.args, list(xs)))
        y = np.asarray(self.op.forward(*arrays, **self.params))
        return y, (arrays, y)

    def backward(self, weights, cache, dy):
        arrays, y = cache
        if not self.op.differentiable:
            return [None] * sum("input" in a for a in self.args), []
        grads = self.op.vjp(dy, y, tuple(arrays), **self.params)
        return [g if g is None else np.asarray(g, dtype=self.dtype)
                for g, arg in zip(grads, self.args) if "input" in arg], []

    def backward_weights(self, weights, cache, dy):
        return []
