"""Symbolic tensors: what flows through a functional model while it is built."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from polykeras.spec import Shape

if TYPE_CHECKING:
    from polykeras.layers.base import Layer


#: The custom layers whose ``call()`` is being traced, outermost first, each with the
#: symbolic reads of its variables in this trace (see :mod:`polykeras.layers.variable`).
TRACING: list[tuple["Layer", dict]] = []
_SERIALS = itertools.count()
#: Non-empty while a loss or metric function is traced (:func:`polykeras.layers.operation.free_batch_axis`).
FREE_BATCH_AXIS: list[bool] = []
#: The layers and subclassed models whose ``call()`` is being traced, innermost last, each with the
#: ``(layer, loss tensor)`` pairs its ``add_loss`` calls recorded so far (:mod:`polykeras.layers.added_loss`).
#: While it is non-empty an op may reduce the batch axis, for a value that goes to ``add_loss``.
COLLECTING: list[tuple[object, list]] = []


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
        #: Keras's ``_keras_mask``: a boolean symbolic tensor ``(batch, T)`` marking the valid steps, and
        #: the mask this node's layer reads (``reads_mask``), if any (:func:`attach_mask`)
        self.mask: SymbolicTensor | None = None
        self.mask_input: SymbolicTensor | None = None
        #: the layer whose ``compute_mask`` recorded this node (an ``Embedding``'s ``ids != 0``), if any:
        #: part of that layer, not a layer of the model's config (Keras recomputes it from the layer)
        self.mask_of: Layer | None = None
        #: for a mask, the tensor whose layer call made it (a config names the mask through it)
        self.carrier: SymbolicTensor | None = None
        #: for one of the tensors a call of several outputs returned (a recurrent layer's ``[output, h, c]``
        #: with ``return_state``): ``(the call's node, tensor index)``; the node outputs them packed and
        #: this ``getitem`` node takes its part (:mod:`polykeras.layers.recurrent`)
        self.part_of: tuple[SymbolicTensor, int] | None = None
        #: True for a value an op computed across the batch (``ops.mean(x)`` over axis 0), which only
        #: ``add_loss`` may take (:func:`polykeras.layers.added_loss.check_across_batch`)
        self.across_batch = False
        self.serial = next(_SERIALS)

    @property
    def sources(self) -> tuple["SymbolicTensor", ...]:
        """The tensors this node depends on: its inputs, and the mask it reads."""
        return self.inputs if self.mask_input is None else self.inputs + (self.mask_input,)

    def __bool__(self):
        raise TypeError(
            "a symbolic tensor has no value to branch on: polykeras traces call() once, with symbolic tensors, "
            "so Python control flow (if/while/and/or) may depend on static facts -- shapes, config, the training "
            "flag -- but not on tensor values: choose per entry with ops.where(condition, a, b), branch on a scalar "
            "with ops.cond(pred, true_fn, false_fn), loop with ops.while_loop(cond, body, loop_vars) or "
            "ops.fori_loop(lower, upper, body_fun, init_val)")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _operator(self, op: str, other=None, reverse: bool = False) -> "SymbolicTensor":
        """``self <op> other``: Keras's merge layer for ``+ - *`` between two batched symbolic
        tensors, else a :mod:`polykeras.ops` node (NumPy broadcasting)."""
        if (op in _MERGE_LAYERS and isinstance(other, SymbolicTensor) and self.batched and other.batched
                and not FREE_BATCH_AXIS):
            from polykeras.layers import merge

            return getattr(merge, _MERGE_LAYERS[op])()([other, self] if reverse else [self, other])
        return apply_operator(self, op, other, reverse)

    def __getitem__(self, key):
        from polykeras import ops
        from polykeras.ops.shapes import encode_key

        return ops.getitem(self, key=encode_key(key))

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={format_shape(self.shape)}, dtype={self.dtype}, from layer {self.layer.name!r}>"


#: Python's operators and the ops they record: (method, op, operands reversed).
OPERATORS = [("__add__", "add", False), ("__radd__", "add", True), ("__sub__", "subtract", False),
             ("__rsub__", "subtract", True), ("__mul__", "multiply", False), ("__rmul__", "multiply", True),
             ("__truediv__", "divide", False), ("__rtruediv__", "divide", True), ("__matmul__", "matmul", False),
             ("__rmatmul__", "matmul", True), ("__pow__", "power", False), ("__rpow__", "power", True),
             ("__neg__", "negative", False), ("__abs__", "abs", False), ("__lt__", "less", False),
             ("__le__", "less_equal", False), ("__gt__", "greater", False), ("__ge__", "greater_equal", False),
             ("__and__", "logical_and", False), ("__rand__", "logical_and", True), ("__or__", "logical_or", False),
             ("__ror__", "logical_or", True), ("__invert__", "logical_not", False)]
UNARY = ("negative", "abs", "logical_not")
_MERGE_LAYERS = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply"}


def apply_operator(value, op: str, other=None, reverse: bool = False):
    """``value <op> other`` (or ``other <op> value``) as a :mod:`polykeras.ops` call."""
    from polykeras import ops

    args = (value,) if op in UNARY else ((other, value) if reverse else (value, other))
    return getattr(ops, op)(*args)


def install_operators(cls) -> None:
    """Give ``cls`` the arithmetic operators, each calling ``self._operator(op, other, reverse)``."""
    def method(op: str, reverse: bool):
        return lambda self, other=None: self._operator(op, other, reverse)

    for name, op, reverse in OPERATORS:
        setattr(cls, name, method(op, reverse))


install_operators(SymbolicTensor)


def attach_mask(layer: "Layer", out: SymbolicTensor, tensors: list[SymbolicTensor], several: bool) -> None:
    """Keras's masking on one layer call: the layer reads its (first) input's mask if it
    ``reads_mask``, and ``layer.compute_mask`` gives the output's (an ``Embedding(mask_zero=True)``
    records the op that makes one); see :mod:`polykeras.layers.masking`."""
    if layer.reads_mask and tensors and tensors[0].mask is not None:
        out.mask_input = tensors[0].mask
    masks = [t.mask for t in tensors]
    first_new = out.serial + 1
    out.mask = layer.compute_mask(list(tensors) if several else tensors[0], masks if several else masks[0])
    if out.mask is not None and out.mask.carrier is None:
        out.mask.carrier = out
    stack = [out.mask] if out.mask is not None else []
    while stack:  # the nodes compute_mask just recorded belong to the layer (as in a summary)
        t = stack.pop()
        if t.serial >= first_new and t.mask_of is None:
            t.mask_of, t.owner = layer, t.owner or layer
            stack.extend(t.inputs)
