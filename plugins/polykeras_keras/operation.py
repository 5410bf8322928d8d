"""``Operation`` nodes on the Keras backends: a Keras layer that calls the op of
the same name in ``keras.ops`` (polykeras's ops have Keras's names and
arguments), so the op runs on whichever backend Keras uses."""

from __future__ import annotations

import keras
import numpy as np

from polykeras.layers.operation import resolve_args, tuples
from polykeras.ops import registry
from polykeras.ops.shapes import decode_key


class KerasOperation(keras.layers.Layer):
    def __init__(self, op: str, args: list, params: dict, **kwargs):
        super().__init__(**kwargs)
        if op != "getitem" and not hasattr(keras.ops, op):
            raise NotImplementedError(f"keras.ops has no op {op!r} (layer {self.name!r})")
        self.op, self.args, self.params = op, args, tuples(params)
        self.fn = (lambda x, key=(): x[decode_key(key)]) if op == "getitem" else getattr(keras.ops, op)
        self.variadic = registry.get(op).variadic

    def call(self, inputs):
        arrays = [a.astype(self.compute_dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                  for a in resolve_args(self.args, list(inputs))]
        if self.op == "einsum":
            return self.fn(self.params["subscripts"], *arrays)
        if self.variadic:
            return self.fn(arrays, **self.params)
        return self.fn(*arrays, **self.params)


class KerasVariable(keras.layers.Layer):
    """A custom layer's weight read in its traced ``call()``: a Keras layer holding the
    weight, called on the model's first input (which it ignores, since a Keras functional
    node needs an input) and returning the weight's value."""

    def __init__(self, weight_name: str, shape, trainable_weight: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.value = self.add_weight(shape=tuple(shape), initializer="zeros", name=weight_name,
                                     trainable=trainable_weight)

    def call(self, anchor):
        return keras.ops.convert_to_tensor(self.value)

    def compute_output_spec(self, anchor):
        return keras.KerasTensor(self.value.shape, dtype=self.compute_dtype)
