"""Custom layers: ``Layer`` subclasses with ``build()``/``add_weight()``/``call()``,
traced into graph nodes (see :mod:`polykeras.layers.variable` for how).

A custom layer's weights are its own variables (``add_weight``; trainable
first, then non-trainable, as Keras lists them) followed by those of the
layers it holds as attributes (directly, or in a list, tuple or dict), in the
order they were assigned -- Keras's ``Layer.weights``.
"""

from __future__ import annotations

import inspect

import numpy as np

from polykeras.layers.base import Layer
from polykeras.layers.symbolic import SymbolicTensor
from polykeras.layers.variable import Variable, tracing


def _flatten(structure) -> list:
    if isinstance(structure, dict):
        return [t for v in structure.values() for t in _flatten(v)]
    if isinstance(structure, (list, tuple)):
        return [t for v in structure for t in _flatten(v)]
    return [structure]


def _shapes(structure):
    if isinstance(structure, dict):
        return {k: _shapes(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_shapes(v) for v in structure]
    return tuple(structure.shape)


def traced_call(layer: Layer, inputs, training, kwargs):
    """Call a custom layer: on symbolic tensors, build it (once) and trace ``call()``;
    on arrays, run it through a one-layer model on the selected backend."""
    tensors = _flatten(inputs)
    if not any(isinstance(t, SymbolicTensor) for t in tensors):
        if len(tensors) != 1:
            raise NotImplementedError(f"layer {layer.name!r}: eager calls of a custom layer on several arrays are not "
                                      "supported; call it inside a model")
        return layer._call_eagerly(np.asarray(tensors[0]), training=bool(training))
    if not all(isinstance(t, SymbolicTensor) for t in tensors):
        raise TypeError(f"layer {layer.name!r} was called on a mix of symbolic tensors and arrays; make the arrays "
                        "weights (add_weight) or constants inside call()")
    if not layer.built:
        with tracing(layer):  # nested layers and variables made in build() belong to this layer
            layer.build(_shapes(inputs))
        layer.built = True
    parameters = inspect.signature(layer.call).parameters
    if "training" in parameters:
        kwargs = {**kwargs, "training": training}
    with tracing(layer):
        outputs = layer.call(inputs, **kwargs)
    for out in _flatten(outputs):
        if isinstance(out, Variable):
            raise TypeError(f"layer {layer.name!r}: call() returned a variable; return a tensor computed from the "
                            "inputs")
        if not isinstance(out, SymbolicTensor):
            raise TypeError(f"layer {layer.name!r}: call() returned {type(out).__name__}, not a tensor computed from "
                            "its inputs with layers and polykeras.ops")
    first = _flatten(outputs)[0]
    layer.input_shape, layer.output_shape = _shapes(inputs), tuple(first.shape)
    return outputs


def nested_layers(layer: Layer) -> list[Layer]:
    """The layers a custom layer holds as attributes, in assignment order (each once)."""
    found, seen = [], set()

    def visit(value):
        if isinstance(value, Layer) and not isinstance(value, Variable):
            if id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    for key, value in vars(layer).items():
        if not key.startswith("_model"):
            visit(value)
    return found


def weight_holders(layer: Layer) -> list[Layer]:
    """The variables and layers whose weights are ``layer``'s, in Keras's order."""
    own = [v for v in layer._variables if v._weight_specs[0].trainable]
    own += [v for v in layer._variables if not v._weight_specs[0].trainable]
    return own + nested_layers(layer)
