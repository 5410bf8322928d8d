"""``Operation`` nodes on the Keras backends: a Keras layer that calls the op of
the same name in ``keras.ops`` (polykeras's ops have Keras's names and
arguments), so the op runs on whichever backend Keras uses."""

from __future__ import annotations

import keras
import numpy as np

from polykeras.layers.operation import resolve_args, tuples
from polykeras.ops import registry


class KerasOperation(keras.layers.Layer):
    def __init__(self, op: str, args: list, params: dict, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(keras.ops, op):
            raise NotImplementedError(f"keras.ops has no op {op!r} (layer {self.name!r})")
        self.op, self.args, self.params = op, args, tuples(params)
        self.fn = getattr(keras.ops, op)
        self.variadic = registry.get(op).variadic

    def call(self, inputs):
        arrays = [a.astype(self.compute_dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                  for a in resolve_args(self.args, list(inputs))]
        if self.op == "einsum":
            return self.fn(self.params["subscripts"], *arrays)
        if self.variadic:
            return self.fn(arrays, **self.params)
        return self.fn(*arrays, **self.params)
