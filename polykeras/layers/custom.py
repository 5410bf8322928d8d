"""Custom layers: ``Layer`` subclasses with ``build()``/``add_weight()``/``call()``,
traced into graph nodes (see :mod:`polykeras.layers.variable` for how).

A custom layer's weights are its own variables (``add_weight``; trainable
first, then non-trainable, as Keras lists them) followed by those of the
layers and models it holds as attributes (directly, or in a list, tuple or
dict), in the order they were assigned -- Keras's ``Layer.weights``.
"""

from __future__ import annotations

import inspect

import numpy as np

from polykeras.layers.added_loss import attach, check_outputs
from polykeras.layers.base import Layer
from polykeras.layers.symbolic import COLLECTING, SymbolicTensor
from polykeras.layers.variable import Variable, tracing


def flatten(structure) -> list:
    """The tensors of a tensor, or of a (nested) list, tuple or dict of them, in order."""
    if isinstance(structure, dict):
        return [t for v in structure.values() for t in flatten(v)]
    if isinstance(structure, (list, tuple)):
        return [t for v in structure for t in flatten(v)]
    return [structure]


def _shapes(structure):
    if isinstance(structure, dict):
        return {k: _shapes(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_shapes(v) for v in structure]
    return tuple(structure.shape)


def _bound(layer: Layer, inputs, args, kwargs, carried_mask: bool = True) -> inspect.BoundArguments:
    """``call``'s arguments by name (Keras passes ``training`` only where ``call`` takes it, and
    a ``call`` with a ``mask`` parameter gets the mask its first argument carries, as in Keras,
    unless ``carried_mask`` is false: a file records the call as written, and the mask is found again)."""
    signature = inspect.signature(layer.call)
    if "training" not in signature.parameters and not any(
            p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
    if carried_mask and "mask" in signature.parameters and kwargs.get("mask") is None:
        masks = [getattr(t, "mask", None) for t in flatten(inputs)]
        if any(m is not None for m in masks):
            kwargs = {**kwargs, "mask": masks if isinstance(inputs, (list, tuple)) else masks[0]}
    try:
        return signature.bind(inputs, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"layer {layer.name!r}: {exc} (the arguments of its call())") from None


def _build(layer: Layer, bound: inspect.BoundArguments) -> None:
    """Keras's build: ``build(input_shape)`` gets the first argument's shape; a ``build`` whose
    parameters are named ``<argument>_shape`` gets the shapes of those call arguments."""
    parameters = list(inspect.signature(layer.build).parameters)
    first = next(iter(bound.arguments.values()))
    if parameters and all(p.endswith("_shape") and p != "input_shape" for p in parameters):
        shapes = {p: _shapes(bound.arguments[p[:-len("_shape")]]) for p in parameters
                  if bound.arguments.get(p[:-len("_shape")]) is not None}
        layer.build(**shapes)
    else:
        layer.build(_shapes(first))


def traced_call(layer: Layer, inputs, args, kwargs):
    """Call a custom layer: on symbolic tensors, build it (once) and trace ``call()``;
    on arrays, run it through a one-layer model on the selected backend."""
    bound = _bound(layer, inputs, args, kwargs)
    tensors = [t for value in bound.arguments.values() for t in flatten(value)
               if isinstance(t, (SymbolicTensor, np.ndarray))]
    if not any(isinstance(t, SymbolicTensor) for t in tensors):
        if len(tensors) != 1 or args or kwargs.keys() - {"training"}:
            raise NotImplementedError(f"layer {layer.name!r}: eager calls of a custom layer on several arrays are not "
                                      "supported; call it inside a model")
        return layer._call_eagerly(np.asarray(tensors[0]), training=bool(kwargs.get("training")))
    if not layer.built:
        with tracing(layer):  # nested layers and variables made in build() belong to this layer
            _build(layer, bound)
        layer.built = True
    COLLECTING.append((layer, []))
    try:
        with tracing(layer):
            outputs = layer.call(*bound.args, **bound.kwargs)
            outputs = attach(outputs, COLLECTING[-1][1])  # the add_loss terms, on the first output
    finally:
        COLLECTING.pop()
    check_outputs(f"layer {layer.name!r}: call()", outputs)
    written = _bound(layer, inputs, args, kwargs, carried_mask=False)  # how a .keras file names the call
    layer._traced_calls.append((written.args, dict(written.kwargs), outputs))
    for out in flatten(outputs):
        if isinstance(out, Variable):
            raise TypeError(f"layer {layer.name!r}: call() returned a variable; return a tensor computed from the "
                            "inputs")
        if not isinstance(out, SymbolicTensor):
            raise TypeError(f"layer {layer.name!r}: call() returned {type(out).__name__}, not a tensor computed from "
                            "its inputs with layers and polykeras.ops")
    first = flatten(outputs)[0]
    layer.input_shape, layer.output_shape = _shapes(inputs), tuple(first.shape)
    symbolic = [t for t in tensors if isinstance(t, SymbolicTensor)]
    if isinstance(outputs, SymbolicTensor) and all(outputs is not t for t in symbolic):
        with tracing(layer):  # Keras's compute_mask (a Masking layer's), its ops part of the layer
            outputs.mask = layer.compute_mask(inputs, symbolic[0].mask)
            if outputs.mask is not None and outputs.mask.carrier is None:
                outputs.mask.carrier = outputs
    return outputs


def nested_layers(layer: Layer) -> list[Layer]:
    """The layers (and models: a ``Sequential``, a functional model) a custom layer holds as attributes, in
    assignment order (each once)."""
    from polykeras.models import Model

    found, seen = [], set()

    def visit(value):
        if isinstance(value, (Layer, Model)) and not isinstance(value, Variable):
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
        if not key.startswith("_model") and key != "_traced_calls":
            visit(value)
    return found


def weight_holders(layer: Layer) -> list[Layer]:
    """The variables and layers whose weights are ``layer``'s, in Keras's order."""
    own = [v for v in layer._variables if v.created_trainable]
    own += [v for v in layer._variables if not v.created_trainable]
    return own + nested_layers(layer)
