"""Symbolic tensors: what flows through a functional model while it is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polykeras.spec import Shape

if TYPE_CHECKING:
    from polykeras.layers.base import Layer


#: The custom layers whose ``call()`` is being traced, outermost first, each with the
#: symbolic reads of its variables in this trace (see :mod:`polykeras.layers.variable`).
TRACING: list[tuple["Layer", dict]] = []


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class SymbolicTensor:
    """A placeholder flowing through a functional model under construction
    (Keras's ``KerasTensor``): a shape with ``None`` batch, a dtype, and the
    layer call (graph node) that produced it -- ``layer`` called on ``inputs``.
    Every call of a layer makes a new tensor, so a layer called twice (a
    shared layer) is two nodes with one set of weights.

    The operators ``a + b``, ``a - b`` and ``a * b`` between two symbolic
    tensors record ``Add``, ``Subtract`` and ``Multiply`` layers; with a
    constant (``x * 0.5``), and ``/``, ``**``, ``@``, unary ``-`` and
    ``abs()``, they record :mod:`polykeras.ops` nodes.
    """

    def __init__(self, shape: Shape, dtype: str, layer: "Layer", inputs: tuple["SymbolicTensor", ...] = ()):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.layer = layer
        self.inputs = inputs
        #: False for values without a batch axis: a custom layer's variables and ops on them alone
        self.batched = True
        #: the outermost custom layer whose traced ``call()`` made this node, if any
        self.owner = TRACING[0][0] if TRACING else None

    def __bool__(self):
        raise TypeError(
            "a symbolic tensor has no value to branch on: polykeras traces call() once, with symbolic tensors, "
            "so Python control flow (if/while/and/or) may depend on static facts -- shapes, config, the training "
            "flag -- but not on tensor values; compute both sides and choose with ops.where(condition, a, b)")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _merge(self, kind: str, other, reverse: bool = False) -> "SymbolicTensor":
        if not isinstance(other, SymbolicTensor):
            return self._op(kind.lower(), other, reverse)
        from polykeras.layers import merge

        pair = [other, self] if reverse else [self, other]
        return getattr(merge, kind)()(pair)

    def __add__(self, other):
        return self._merge("Add", other)

    def __radd__(self, other):
        return self._merge("Add", other, reverse=True)

    def __sub__(self, other):
        return self._merge("Subtract", other)

    def __rsub__(self, other):
        return self._merge("Subtract", other, reverse=True)

    def __mul__(self, other):
        return self._merge("Multiply", other)

    def __rmul__(self, other):
        return self._merge("Multiply", other, reverse=True)

    def _op(self, name: str, other=None, reverse: bool = False) -> "SymbolicTensor":
        from polykeras import ops

        args = (self,) if other is None else ((other, self) if reverse else (self, other))
        return getattr(ops, name)(*args)

    def __getitem__(self, key):
        from polykeras import ops
        from polykeras.ops.shapes import encode_key

        return ops.getitem(self, key=encode_key(key))

    def __truediv__(self, other):
        return self._op("divide", other)

    def __rtruediv__(self, other):
        return self._op("divide", other, reverse=True)

    def __pow__(self, other):
        return self._op("power", other)

    def __rpow__(self, other):
        return self._op("power", other, reverse=True)

    def __matmul__(self, other):
        return self._op("matmul", other)

    def __rmatmul__(self, other):
        return self._op("matmul", other, reverse=True)

    def __neg__(self):
        return self._op("negative")

    def __abs__(self):
        return self._op("abs")

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={format_shape(self.shape)}, dtype={self.dtype}, from layer {self.layer.name!r}>"
