"""The registry of ops: per op, its arguments, shape rule, NumPy forward and
hand-written vector-Jacobian product (VJP).

An op is called with *tensor* arguments (arrays, or Python scalars where Keras
accepts them) and *static* arguments (axes, shapes, flags). :func:`apply`
computes the op eagerly with its NumPy forward when no argument is symbolic, as
Keras's ops do on concrete NumPy arrays; on symbolic tensors (the functional
API) it records a graph node (:mod:`polykeras.layers.operation`).

The VJP is the reference's gradient: given the output's cotangent ``g``, the
output ``y`` and the inputs, it returns one cotangent per tensor argument
(``None`` where the op is not differentiable in it, e.g. a comparison, an
integer index). The finite-difference tests check each one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class OpDef:
    """One op.

    ``tensors`` names the tensor arguments in order (a name ending in ``*``
    takes a sequence of tensors, as ``concatenate``'s ``xs``); ``params``
    maps the static arguments to their defaults. ``forward(*arrays,
    **params)`` and ``vjp(g, y, arrays, **params)`` speak NumPy;
    ``differentiable`` says whether the op has gradients at all (comparisons,
    ``argmax`` and friends do not). ``infer(params)``, where given, is the op's
    ``(shape, dtype, batched)`` in a model, for ops that cannot be found by evaluating
    them on examples (a traced loop might not end on them).
    """

    name: str
    tensors: tuple[str, ...]
    params: dict[str, Any]
    forward: Callable[..., Array]
    vjp: Callable[..., Sequence[Array | None]] | None
    doc: str = ""
    infer: Callable[[dict], tuple] | None = None

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    @property
    def variadic(self) -> bool:
        return len(self.tensors) == 1 and self.tensors[0].endswith("*")

    def bind(self, args: tuple, kwargs: dict) -> tuple[list, dict[str, Any]]:
        """``(tensor arguments, static arguments)`` of a call, Keras's names and order."""
        names = [t.rstrip("*") for t in self.tensors] + list(self.params)
        if len(args) > len(names):
            raise TypeError(f"ops.{self.name}() takes {len(names)} arguments ({', '.join(names)}); "
                            f"got {len(args)}")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"ops.{self.name}() got an unexpected argument {key!r}; it takes "
                                f"{', '.join(names)}")
            if key in bound:
                raise TypeError(f"ops.{self.name}() got argument {key!r} twice")
            bound[key] = value
        missing = [n for n in names[:len(self.tensors)] if n not in bound]
        if missing:
            raise TypeError(f"ops.{self.name}() is missing its argument(s) {', '.join(missing)}")
        tensors = [bound[t.rstrip("*")] for t in self.tensors]
        if self.variadic:
            if not isinstance(tensors[0], (list, tuple)):
                raise TypeError(f"ops.{self.name}() takes a list or tuple of tensors, got "
                                f"{type(tensors[0]).__name__}")
            tensors = list(tensors[0])
        params = {name: bound.get(name, default) for name, default in self.params.items()}
        return tensors, params


REGISTRY: dict[str, OpDef] = {}


def register(name: str, tensors: Sequence[str], forward: Callable, vjp: Callable | None, doc: str = "",
             infer: Callable[[dict], tuple] | None = None, **params: Any) -> OpDef:
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is registered twice")
    op = OpDef(name, tuple(tensors), dict(params), forward, vjp, doc, infer)
    REGISTRY[name] = op
    return op


def get(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; polykeras.ops has: {', '.join(sorted(REGISTRY))}") from None


def _is_symbolic(value) -> bool:
    from polykeras.layers.symbolic import SymbolicTensor

    return isinstance(value, SymbolicTensor)


def as_array(value) -> Array:
    """A tensor argument as a NumPy array (Python scalars stay weakly typed:
    they take the dtype of the array they meet, as in Keras)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float)):
        return value  # NumPy's own scalar promotion keeps an array's float32 float32
    return np.asarray(value)


def apply(op: OpDef, args: tuple, kwargs: dict):
    tensors, params = op.bind(args, kwargs)
    tensors = [t.read() if getattr(t, "kind", None) == "Variable" else t for t in tensors]  # a custom layer's weight
    if any(_is_symbolic(t) for t in tensors):
        from polykeras.layers.operation import record

        return record(op, tensors, params)
    return np.asarray(op.forward(*(as_array(t) for t in tensors), **params))


def make_function(op: OpDef) -> Callable:
    def function(*args, **kwargs):
        return apply(op, args, kwargs)

    names = [t.rstrip("*") for t in op.tensors] + [f"{k}={v!r}" for k, v in op.params.items()]
    function.__name__ = function.__qualname__ = op.name
    function.__doc__ = f"ops.{op.name}({', '.join(names)}): {op.doc}"
    return function


def unbroadcast(g: Array, shape: tuple) -> Array:
    """Sum ``g`` down to ``shape``: the VJP of broadcasting an array of ``shape``
    to ``g``'s shape (leading axes added, size-1 axes stretched)."""
    if g.shape == tuple(shape):
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g
