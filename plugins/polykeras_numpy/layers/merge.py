"""Merge layers: several inputs, one output, no weights.

The rules (broadcasting by expanding lower-rank inputs at axis 1, ``Dot``'s
axes and normalisation) are the core's, in :mod:`polykeras.layers.merge`.
Backward passes undo the broadcasting by summing the gradient over the axes
an input was broadcast along (:func:`unbroadcast`).
"""

from __future__ import annotations

import numpy as np

from polykeras.layers.merge import NORMALIZE_EPSILON, concat_axis, dot_axes, dot_subscripts, expanded_shapes

from .base import Kernel


def expanded(xs: list) -> list:
    """The inputs at one rank (:func:`~polykeras.layers.merge.expanded_shapes`)."""
    return [x.reshape(shape) for x, shape in zip(xs, expanded_shapes([tuple(x.shape) for x in xs]))]


def unbroadcast(d: np.ndarray, shape: tuple) -> np.ndarray:
    """``d`` (of the broadcast output's shape) summed back to an input's
    ``shape``: over the inserted axes after the batch axis and the size-1 axes."""
    extra = d.ndim - len(shape)
    if extra:
        d = d.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


class ElementwiseMerge(Kernel):
    multiple_inputs = True

    def forward(self, weights, xs, ctx):
        return self.combine(expanded(list(xs))), [x.shape for x in xs]

    def backward(self, weights, cache, dy):
        shapes = cache
        return [unbroadcast(d, shape) for d, shape in zip(self.input_grads(dy, len(shapes)), shapes)], []

    def combine(self, xs):
        raise NotImplementedError

    def input_grads(self, dy, n: int):
        """The gradient of each of the ``n`` (expanded) inputs."""
        raise NotImplementedError


class Add(ElementwiseMerge):
    kind = "Add"

    def combine(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def input_grads(self, dy, n):
        return [dy] * n


class Average(Add):
    kind = "Average"

    def combine(self, xs):
        return super().combine(xs) / len(xs)

    def input_grads(self, dy, n):
        return [dy / n] * n


class Subtract(ElementwiseMerge):
    kind = "Subtract"

    def combine(self, xs):
        return xs[0] - xs[1]

    def input_grads(self, dy, n):
        return [dy, -dy]


class Multiply(ElementwiseMerge):
    """Gradient of input ``i``: ``dy`` times the product of the *other* inputs
    (not ``output / x_i``, which fails where ``x_i`` is zero)."""

    kind = "Multiply"

    def forward(self, weights, xs, ctx):
        full = expanded(list(xs))
        return self.combine(full), ([x.shape for x in xs], full)

    def backward(self, weights, cache, dy):
        shapes, full = cache
        grads = []
        for i, shape in enumerate(shapes):
            d = dy
            for j, x in enumerate(full):
                if j != i:
                    d = d * x
            grads.append(unbroadcast(d, shape))
        return grads, []

    def combine(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Maximum(ElementwiseMerge):
    """Folds ``fold(max(a, b), c)``; at each fold the gradient goes to the
    larger operand, half to each where they tie."""

    kind = "Maximum"
    pick = staticmethod(np.maximum)

    def forward(self, weights, xs, ctx):
        full = expanded(list(xs))
        out, partials = full[0], [full[0]]
        for x in full[1:]:
            out = self.pick(out, x)
            partials.append(out)
        return out, ([x.shape for x in xs], full, partials)

    def backward(self, weights, cache, dy):
        shapes, full, partials = cache
        grads: list = [None] * len(full)
        d_acc = dy
        for i in range(len(full) - 1, 0, -1):  # undo the folds, last first
            a, b = partials[i - 1], full[i]
            wins_a = (a == self.pick(a, b)).astype(dy.dtype)
            wins_b = (b == self.pick(a, b)).astype(dy.dtype)
            share = wins_a + wins_b  # 2 where they tie
            grads[i] = d_acc * wins_b / share
            d_acc = d_acc * wins_a / share
        grads[0] = d_acc
        return [unbroadcast(g, shape) for g, shape in zip(grads, shapes)], []


class Minimum(Maximum):
    kind = "Minimum"
    pick = staticmethod(np.minimum)


class Concatenate(Kernel):
    kind = "Concatenate"
    multiple_inputs = True

    def forward(self, weights, xs, ctx):
        axis = concat_axis(int(self.config.get("axis", -1)), xs[0].ndim)
        return np.concatenate(xs, axis=axis), (axis, [x.shape[axis] for x in xs])

    def backward(self, weights, cache, dy):
        axis, sizes = cache
        return np.split(dy, np.cumsum(sizes)[:-1], axis=axis), []


def _normalize(x: np.ndarray, axis: int):
    """``keras.ops.normalize``: ``x * min(1/sqrt(sum(x**2)), 1/eps)`` along ``axis``."""
    s = np.sum(x * x, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = 1.0 / np.sqrt(s)
    clipped = inv >= 1.0 / NORMALIZE_EPSILON
    inv = np.where(clipped, x.dtype.type(1.0 / NORMALIZE_EPSILON), inv)
    return x * inv, (x, inv, clipped)


def _normalize_backward(cache, d: np.ndarray, axis: int) -> np.ndarray:
    """Where the norm is not clipped: ``inv * (d - x * inv**2 * sum(x * d))``;
    where it is, the factor is a constant: ``d / eps``."""
    x, inv, clipped = cache
    free = inv * (d - x * inv ** 2 * np.sum(x * d, axis=axis, keepdims=True))
    return np.where(clipped, d * inv, free)


class Dot(Kernel):
    """Keras's ``batch_dot``: per sample, contract ``axes[0]`` of ``a`` with
    ``axes[1]`` of ``b``; output axes are ``a``'s remaining ones, then ``b``'s."""

    kind = "Dot"
    multiple_inputs = True

    def forward(self, weights, xs, ctx):
        a, b = xs
        ax, bx = dot_axes(self.config["axes"], a.ndim, b.ndim)
        norms = None
        if self.config.get("normalize"):
            (a, ca), (b, cb) = _normalize(a, ax), _normalize(b, bx)
            norms = (ca, cb)
        sa, sb, so = dot_subscripts(a.ndim, b.ndim, ax, bx)
        out = np.einsum(f"{sa},{sb}->{so}", a, b)
        return (out[:, None] if out.ndim == 1 else out), (a, b, ax, bx, norms)

    def backward(self, weights, cache, dy):
        a, b, ax, bx, norms = cache
        sa, sb, so = dot_subscripts(a.ndim, b.ndim, ax, bx)
        d = dy.reshape(dy.shape[:1]) if len(so) == 1 else dy
        da = np.einsum(f"{so},{sb}->{sa}", d, b)
        db = np.einsum(f"{so},{sa}->{sb}", d, a)
        if norms is not None:
            da, db = _normalize_backward(norms[0], da, ax), _normalize_backward(norms[1], db, bx)
        return [da, db], []


MERGE_KERNELS = (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)
