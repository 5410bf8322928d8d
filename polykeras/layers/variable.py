"""Variables of custom layers, and the tracing of a custom layer's ``call()``.

A custom layer (a :class:`~polykeras.layers.Layer` subclass that defines
``call``) creates its weights with ``add_weight``, which returns a
:class:`Variable`, as Keras's does. A variable is itself a tiny layer with one
weight and no input: when ``call()`` is traced and an op reads the variable, a
graph node of kind ``"Variable"`` is recorded whose output is the weight's
value (it has no batch axis). A layer called twice reads its variables twice:
the second read is a later call of the same variable, which shares its weight
(``weights_of``), exactly like a shared layer.

Tracing runs ``call()`` once per call of the layer on symbolic tensors: every
op and every nested layer call it makes becomes a node of the caller's graph,
and every node made during the trace remembers the outermost custom layer that
made it (``SymbolicTensor.owner``), which is how a model lists the custom layer
among its layers. Python code in ``call()`` runs at trace time, so control flow
on static facts (shapes, config) is fine; control flow on tensor values raises
a ``TypeError`` that says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from typing import Any

import numpy as np

from polykeras import backend as _backend
from polykeras import initializers, regularizers
from polykeras.layers.base import Layer
from polykeras.layers.symbolic import TRACING, apply_operator, install_operators
from polykeras.spec import WeightSpec


@contextlib.contextmanager
def tracing(layer: Layer):
    """Trace ``layer``'s ``call()``: nodes made inside belong to the outermost traced layer."""
    TRACING.append((layer, {}))
    try:
        yield
    finally:
        TRACING.pop()


class Variable(Layer):
    """One weight of a custom layer (Keras's ``Variable``): ``shape``, ``dtype``,
    ``name``, ``path``, ``trainable``, ``numpy()``, ``assign()``; usable in
    ``polykeras.ops`` and with the arithmetic operators, eagerly (its value) or
    inside a traced ``call()`` (a graph node)."""

    kind = "Variable"
    multiple_inputs = True
    _count = itertools.count()  # creation order: Keras lists a layer's variables in it

    def __init__(self, shape, initializer=None, dtype=None, trainable: bool = True, regularizer=None,
                 name: str = "variable", owner: str = "", **kwargs):
        super().__init__(name=f"{owner}/{name}" if owner else name, dtype=dtype, **kwargs)
        self.variable_name, self.owner_name = name, owner
        self.created = next(Variable._count)
        self._trainable = self.created_trainable = bool(trainable)  # Keras orders variables by the latter
        self._shape = tuple(int(d) for d in shape)
        init = initializers.get(initializer if initializer is not None else "glorot_uniform")
        value = np.asarray(init(self._shape, dtype=dtype or _backend.floatx()))
        self.regularizer = regularizers.get(regularizer)
        penalty = regularizers.to_spec(self.regularizer)
        self._record_weight(WeightSpec(name, self._shape, bool(trainable), penalty), bool(trainable))
        self._weight_values.append(value)
        self.built = True

    # -- Keras's Variable -----------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def path(self) -> str:
        return self.name

    @property
    def trainable_variable(self) -> bool:
        return self._weight_specs[0].trainable

    def numpy(self) -> np.ndarray:
        return self.get_weights()[0]

    @property
    def value(self) -> np.ndarray:
        return self.numpy()

    def assign(self, value) -> None:
        self.set_weights([np.asarray(value).reshape(self._shape)])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype=dtype)

    # -- as an operand ---------------------------------------------------------------
    def __call__(self, inputs=(), training=None):
        """A new read of the variable as a graph node (how a saved model's graph is rebuilt)."""
        if len(inputs):
            raise ValueError(f"variable {self.name!r} takes no input")
        return self._call_symbolically([], several=True)

    def read(self):
        """Inside a traced ``call()``: the symbolic value (one node per trace); else the value."""
        if not TRACING:
            return self.numpy()
        reads = TRACING[-1][1]
        if id(self) not in reads:
            reads[id(self)] = self._call_symbolically([], several=True)
        return reads[id(self)]

    _operator = apply_operator

    def _call_symbolically(self, tensors, several):
        out = super()._call_symbolically(tensors, several)
        out.batched = False
        out.dtype = self.dtype or _backend.floatx()
        return out

    def _check_input_shape(self, input_shape) -> None:
        if input_shape:
            raise ValueError(f"variable {self.name!r} takes no input")

    def compute_output_shape(self, input_shape) -> tuple:
        return self._shape

    def get_config(self) -> dict[str, Any]:
        from polykeras.layers.base import serialize_regularizer

        return {"name": self.variable_name, "owner": self.owner_name, "shape": list(self._shape), "dtype": self.dtype,
                "trainable": self.created_trainable, "regularizer": serialize_regularizer(self.regularizer)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Variable":
        return cls(initializer="zeros", **config)

    def to_spec(self, name, inbound, input_shapes, output_shape, weights_of=None, mask=None):
        return dataclasses.replace(super().to_spec(name, inbound, input_shapes, output_shape, weights_of, mask),
                                   config={})

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self._shape}, dtype={self.dtype or _backend.floatx()}>"


install_operators(Variable)
