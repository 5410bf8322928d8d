"""Merge layers: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum``, ``Concatenate`` and ``Dot``, called on a list of tensors.

Semantics are Keras 3's (``keras.layers.Add`` etc.), and the rules every backend
needs live here, once:

* **Element-wise merges** broadcast over the non-batch axes, aligned on the
  right: an input of lower rank is expanded at axis 1 (after the batch axis)
  until all ranks agree (:func:`expanded_shapes`), then ordinary broadcasting
  applies; sizes must be equal or 1. ``Maximum``/``Minimum`` fold left to right
  (``max(max(a, b), c)``); where two inputs tie, the gradient is split equally
  between them (what ``jnp.maximum`` and ``torch.maximum`` do).
* ``Concatenate(axis)`` joins along ``axis`` (batch axis included in the
  count, default ``-1``); all other sizes must agree.
* ``Dot(axes, normalize)`` is Keras's ``batch_dot``: per sample, contract
  axis ``axes[0]`` of the first input with ``axes[1]`` of the second; the
  result's axes are the first input's remaining axes, then the second's; two
  rank-2 inputs give ``(batch, 1)``. ``normalize=True`` first L2-normalises
  each input along its contracted axis as ``keras.ops.normalize`` does:
  ``x * min(1/sqrt(sum(x**2)), 1/epsilon)`` with ``epsilon = 1e-7``.
"""

from __future__ import annotations

from polykeras.layers import masking
from polykeras.layers.base import Layer, format_shape

#: ``keras.backend.epsilon()``, the floor of the norm in ``Dot(normalize=True)``.
NORMALIZE_EPSILON = 1e-7


def expanded_shapes(shapes: list[tuple]) -> list[tuple]:
    """Each input's shape with size-1 axes inserted at axis 1 until all have
    the largest rank (Keras's rule for merging inputs of different ranks); the
    inputs, reshaped to these, broadcast as usual."""
    top = max(len(s) for s in shapes)
    return [tuple(s[:1]) + (1,) * (top - len(s)) + tuple(s[1:]) for s in shapes]


def elementwise_merge(kind: str, xs: list, xp):
    """Keras's element-wise merge ``kind`` of ``xs`` with the array namespace ``xp`` (``numpy``,
    ``torch``, ``jax.numpy``): the inputs brought to one rank, folded left to right; ``Average``
    divides the sum by the number of inputs."""
    xs = [x.reshape(shape) for x, shape in zip(xs, expanded_shapes([tuple(x.shape) for x in xs]))]
    fold = {"Add": xp.add, "Average": xp.add, "Subtract": xp.subtract, "Multiply": xp.multiply,
            "Maximum": xp.maximum, "Minimum": xp.minimum}[kind]
    out = xs[0]
    for x in xs[1:]:
        out = fold(out, x)
    return out / len(xs) if kind == "Average" else out


def concat_axis(axis: int, rank: int) -> int:
    """``Concatenate``'s axis as a non-negative index into a rank-``rank`` input."""
    return axis % rank


def dot_axes(axes, rank1: int, rank2: int) -> tuple[int, int]:
    """``Dot``'s contracted axes, non-negative, for inputs of these ranks."""
    if isinstance(axes, int):
        return (axes % rank1, axes % rank2)
    return (int(axes[0]) % rank1, int(axes[1]) % rank2)


def dot_subscripts(rank1: int, rank2: int, axis1: int, axis2: int) -> tuple[str, str, str]:
    """``Dot`` as an einsum: subscripts of the two inputs and of the output
    (batch axis ``a`` shared, ``axis1`` of the first contracted with ``axis2``
    of the second). Two rank-2 inputs give a rank-1 result, which ``Dot``
    reshapes to ``(batch, 1)``."""
    letters = iter("bcdefghijklmnopqrstuvwxyz")
    first = ["a"] + [next(letters) for _ in range(rank1 - 1)]
    second = ["a"] + [next(letters) for _ in range(rank2 - 1)]
    second[axis2] = first[axis1]
    out = ["a"] + [c for i, c in enumerate(first) if i not in (0, axis1)] + \
        [c for i, c in enumerate(second) if i not in (0, axis2)]
    return "".join(first), "".join(second), "".join(out)


class Merge(Layer):
    """The base of the merge layers: called on a list of tensors."""

    multiple_inputs = True
    supports_masking = True
    #: How many inputs the layer takes (``None``: two or more).
    arity: int | None = None

    def compute_mask(self, inputs, mask=None):
        """The ``logical_and`` of the inputs' masks, as Keras's merge layers."""
        return masking.combined(mask or [])

    def _check_input_shape(self, input_shape) -> None:
        if not isinstance(input_shape, list) or len(input_shape) < 2 or (self.arity and len(input_shape) != self.arity):
            want = f"exactly {self.arity}" if self.arity else "at least 2"
            got = len(input_shape) if isinstance(input_shape, list) else 1
            raise ValueError(f"{type(self).__name__} layer {self.name!r} must be called on a list of {want} "
                             f"tensors, got {got}")
        batches = {s[0] for s in input_shape if s and s[0] is not None}
        if len(batches) > 1:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} cannot merge tensors with different batch "
                             f"sizes: {', '.join(map(format_shape, input_shape))}")

    def get_config(self):
        return super().get_config()


class ElementwiseMerge(Merge):
    """A merge computed element by element after broadcasting (see the module docstring)."""

    def compute_output_shape(self, input_shapes):
        out: tuple = ()
        for shape in input_shapes:
            out = _broadcast(out, tuple(shape[1:]), self, input_shapes)
        return (None,) + out


def _broadcast(a: tuple, b: tuple, layer: Layer, shapes) -> tuple:
    if len(a) < len(b):
        a, b = b, a
    lead = a[:len(a) - len(b)]
    out = []
    for i, j in zip(a[len(a) - len(b):], b):
        if i is None or j is None:
            out.append(None if i != 1 and j != 1 else (j if i == 1 else i))
        elif i == 1 or j == 1 or i == j:
            out.append(j if i == 1 else i)
        else:
            raise ValueError(f"{type(layer).__name__} layer {layer.name!r}: inputs of shapes "
                             f"{', '.join(map(format_shape, shapes))} do not broadcast together (non-batch sizes "
                             f"must be equal or 1, aligned on the right)")
    return tuple(lead) + tuple(out)


class Add(ElementwiseMerge):
    """``a + b + ...``"""


class Subtract(ElementwiseMerge):
    """``a - b`` (exactly two inputs)."""

    arity = 2


class Multiply(ElementwiseMerge):
    """``a * b * ...``"""


class Average(ElementwiseMerge):
    """``(a + b + ...) / n``"""


class Maximum(ElementwiseMerge):
    """Element-wise maximum of the inputs."""


class Minimum(ElementwiseMerge):
    """Element-wise minimum of the inputs."""


class Concatenate(Merge):
    """Join the inputs along ``axis`` (default ``-1``, the batch axis counts as 0)."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shapes):
        ranks = {len(s) for s in input_shapes}
        if len(ranks) != 1:
            raise ValueError(f"Concatenate layer {self.name!r} needs inputs of one rank, got shapes "
                             f"{', '.join(map(format_shape, input_shapes))}")
        rank = ranks.pop()
        axis = concat_axis(self.axis, rank)
        if axis == 0:
            raise ValueError(f"Concatenate layer {self.name!r}: axis={self.axis} is the batch axis; concatenate "
                             "along a feature axis (e.g. axis=-1)")
        out = list(input_shapes[0])
        for shape in input_shapes[1:]:
            for i, (a, b) in enumerate(zip(out, shape)):
                if i == axis:
                    out[i] = None if a is None or b is None else a + b
                elif i and a is not None and b is not None and a != b:
                    raise ValueError(f"Concatenate layer {self.name!r} (axis={self.axis}) needs inputs whose shapes "
                                     f"agree except along the axis, got {', '.join(map(format_shape, input_shapes))}")
                elif a is None:
                    out[i] = b
        out[0] = None
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(Merge):
    """Per-sample dot product along ``axes`` (Keras's ``batch_dot``; see the module docstring)."""

    arity = 2

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, int) for a in axes):
                raise ValueError(f"Dot axes must be an int or a pair of ints, got {axes!r}")
            axes = tuple(int(a) for a in axes)
        elif not isinstance(axes, int):
            raise TypeError(f"Dot axes must be an int or a pair of ints, got {axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def compute_output_shape(self, input_shapes):
        s1, s2 = input_shapes
        a1, a2 = dot_axes(self.axes, len(s1), len(s2))
        if 0 in (a1, a2):
            raise ValueError(f"Dot layer {self.name!r}: axes={self.axes!r} contracts the batch axis")
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise ValueError(f"Dot layer {self.name!r}: axis {a1} of {format_shape(s1)} has size {s1[a1]}, axis {a2} "
                             f"of {format_shape(s2)} has size {s2[a2]}; the contracted sizes must be equal")
        rest = [d for i, d in enumerate(s1) if i not in (0, a1)] + [d for i, d in enumerate(s2) if i not in (0, a2)]
        return (None,) + (tuple(rest) if rest else (1,))

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


MERGE_LAYERS = (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)


# Keras's functional shortcuts: ``layers.add([a, b])`` is ``layers.Add()([a, b])``.
def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes, normalize: bool = False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
