"""Subclassed models: a ``Model`` subclass with ``__init__`` (its layers) and
``call()``, traced into a graph the first time it sees data or symbolic
tensors (``fit``/``predict``/``evaluate``, ``model(inputs)``, or
``model.build(input_shape)``), as Keras builds one on its first call. Its
graph is then that of a functional model, run the same way by every backend;
saved, it loads as a functional model of the same layers (no class needed).
"""

from __future__ import annotations

import inspect

import numpy as np

from polykeras.layers.added_loss import attach
from polykeras.layers.custom import flatten
from polykeras.layers.input_layer import Input
from polykeras.layers.symbolic import COLLECTING, SymbolicTensor


def _structure_map(fn, structure):
    if isinstance(structure, dict):
        return {k: fn(v, k) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [fn(v, None) for v in structure]
    return fn(structure, None)


def inputs_for_data(x):
    """``Input`` tensors shaped like the arrays of ``x`` (integer arrays stay integer: ids)."""
    def make(array, name):
        array = np.asarray(array)
        dtype = str(array.dtype) if array.dtype.kind in "iu" else None
        return Input(shape=array.shape[1:], dtype=dtype, **({"name": str(name)} if name is not None else {}))
    return _structure_map(make, x)


def inputs_for_shapes(input_shape):
    """``Input`` tensors for ``build(input_shape)``: one shape (batch included), or a list/dict of them."""
    if isinstance(input_shape, dict):
        return {k: Input(shape=tuple(s)[1:], name=str(k)) for k, s in input_shape.items()}
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
        return [Input(shape=tuple(s)[1:]) for s in input_shape]
    return Input(shape=tuple(input_shape)[1:])


def trace(model, inputs) -> None:
    """Run ``model.call`` on symbolic ``inputs`` and make the result the model's graph."""
    from polykeras.models.graph import Graph

    kwargs = {"training": None} if "training" in inspect.signature(model.call).parameters else {}
    COLLECTING.append((model, []))
    try:
        outputs = attach(model.call(inputs, **kwargs), COLLECTING[-1][1])  # the model's add_loss terms
    finally:
        COLLECTING.pop()
    flat = flatten(outputs)
    bad = [type(o).__name__ for o in flat if not isinstance(o, SymbolicTensor)]
    if bad:
        raise TypeError(f"model {model.name!r}: call() returned {', '.join(bad)}, not tensors computed from its inputs "
                        "with layers and polykeras.ops")
    if isinstance(outputs, dict):
        model._output_names = [str(k) for k in outputs]
    model._set_graph(Graph(flatten(inputs), flat, model.name))
