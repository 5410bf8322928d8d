"""Loss and metric functions written with :mod:`polykeras.ops`, traced into op graphs.

``compile(loss=my_loss, metrics=[my_metric])`` with::

    def my_loss(y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true), axis=-1)

works as in Keras, and on every backend: the function is called *once*, on symbolic
tensors named ``y_true`` and ``y_pred``, and the ops it calls are recorded as a graph --
a :class:`~polykeras.spec.ModelSpec` with those two inputs and ``Operation`` nodes only
(:mod:`polykeras.layers.operation`). Each backend evaluates that graph with its own ops:
the NumPy reference with the op registry's forward and hand-written VJPs, torch under
autograd, jax inside its one jitted step. The loss spec is ``{"kind": "function",
"config": {"name", "graph"}}``; a metric's :class:`~polykeras.spec.MetricSpec` has kind
``"function"`` and the graph in its config.

Keras's semantics, which every backend follows:

* both tensors reach the function in the loss's float dtype -- integer labels too, as
  Keras's ``Loss.__call__`` converts them; cast back with ``ops.cast`` to index with them;
* ``y_true`` has the targets' rank: the output's shape for targets of the output's rank,
  its leading axes for sparse labels;
* the function returns per-sample values (batch axis first, any trailing axes) or one
  scalar; a loss is reduced Keras's ``sum_over_batch_size`` way, the mean over all
  entries, each entry weighted by its sample's weight (a scalar times the mean weight, as Keras);
  a metric's values are averaged the same way per batch (Keras's ``MeanMetricWrapper``),
  booleans counting as 0/1;
* Python control flow may depend on shapes, not on values (``ops.where`` chooses by value).

Inside the function, reducing over the batch axis is allowed (``ops.mean(x)``), unlike in
a model's layers; the result then has no batch axis.
"""

from __future__ import annotations

import weakref

import numpy as np

from polykeras.spec import LayerSpec, ModelSpec

Y_TRUE, Y_PRED = "y_true", "y_pred"


def target_shape(output_shape: tuple, y_ndim: int) -> tuple:
    """The shape of ``y_true`` for targets of rank ``y_ndim`` and an output of ``output_shape``."""
    output_shape = tuple(output_shape)
    if y_ndim <= len(output_shape):
        return output_shape[:y_ndim]
    return output_shape + (None,) * (y_ndim - len(output_shape))


def function_name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def trace(fn, output_shape: tuple, y_ndim: int, what: str = "loss") -> ModelSpec:
    """``fn(y_true, y_pred)`` as an op graph (module docstring) for a model output of
    ``output_shape`` and targets of rank ``y_ndim``. Raises ``TypeError`` when the function
    does not return a tensor computed from its arguments with ``polykeras.ops``, or uses a layer."""
    from polykeras.layers.input_layer import Input
    from polykeras.layers.operation import free_batch_axis
    from polykeras.layers.symbolic import SymbolicTensor
    from polykeras.models.graph import Graph

    name = function_name(fn)
    y_true = Input(shape=target_shape(output_shape, y_ndim)[1:], name=Y_TRUE)
    y_pred = Input(shape=tuple(output_shape)[1:], name=Y_PRED)
    with free_batch_axis():
        out = fn(y_true, y_pred)
    if not isinstance(out, SymbolicTensor):
        raise TypeError(f"{what} function {name!r} returned {type(out).__name__}, not a tensor computed from y_true "
                        "and y_pred: write it with polykeras.ops (ops.mean, ops.square, ...), which polykeras traces "
                        "once and every backend runs")
    if what == "loss" and np.dtype(out.dtype).kind != "f":
        raise TypeError(f"loss function {name!r} returns {out.dtype} values; a loss must be a float tensor "
                        "(cast with ops.cast(x, 'float32'))")
    if out.layer.kind == "InputLayer":
        raise TypeError(f"{what} function {name!r} returns one of its arguments unchanged; compute a value from them")
    inputs = [t for t in (y_true, y_pred) if _reaches(out, t)]
    graph = Graph(inputs, [out], name)
    layers = [n.layer for n in graph.nodes if n.layer.kind != "Operation"]
    if layers:
        raise TypeError(f"{what} function {name!r} calls layer {layers[0].name!r} ({type(layers[0]).__name__}); loss "
                        "and metric functions may use polykeras.ops only (their graph has no weights)")
    return canonical(graph.spec())


def _reaches(out, tensor) -> bool:
    stack, seen = [out], set()
    while stack:
        t = stack.pop()
        if t is tensor:
            return True
        if id(t) not in seen:
            seen.add(id(t))
            stack.extend(t.inputs)
    return False


def canonical(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its nodes named by position (``op_0``, ``op_1``, ...), so that tracing the
    same function twice gives equal specs (automatic layer names count up per process)."""
    names = {layer.name: f"op_{i}" for i, layer in enumerate(spec.layers)}
    layers = tuple(LayerSpec(names[l.name], l.kind, {**l.config, "name": names[l.name]},
                             tuple(names.get(n, n) for n in l.inbound), l.input_shapes, l.output_shape)
                   for l in spec.layers)
    return ModelSpec(spec.name, spec.inputs, layers, tuple(names.get(n, n) for n in spec.outputs)).validate()


class TracedFunction:
    """A loss or metric function with its traced graphs, one per (output shape, target rank)."""

    def __init__(self, fn, what: str):
        if not callable(fn):
            raise TypeError(f"a {what} function must be callable, got {fn!r}")
        self.fn, self.what, self.name = fn, what, function_name(fn)
        self._graphs: dict[tuple, dict] = {}

    def graph(self, output_shape, y_ndim) -> dict:
        key = (tuple(output_shape), int(y_ndim))
        if key not in self._graphs:
            self._graphs[key] = trace(self.fn, *key, what=self.what).to_dict()
        return self._graphs[key]


_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def traced(fn, what: str) -> TracedFunction:
    """The :class:`TracedFunction` of ``fn``, kept while ``fn`` lives (a graph is traced once per shape)."""
    try:
        return _TRACED.setdefault(fn, TracedFunction(fn, what))
    except TypeError:  # not weak-referenceable (a builtin): trace afresh
        return TracedFunction(fn, what)
