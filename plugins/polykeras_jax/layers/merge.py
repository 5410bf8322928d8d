"""Merge layers in JAX. The rules are the core's (:mod:`polykeras.layers.merge`);
autodiff differentiates them (``jnp.maximum``/``minimum`` split a tie's
gradient equally, as the reference does)."""

from __future__ import annotations

import jax.numpy as jnp

from polykeras.layers.merge import NORMALIZE_EPSILON, concat_axis, dot_axes, dot_subscripts, expanded_shapes

from .base import Layer


def expanded(xs: list) -> list:
    """The inputs at one rank (:func:`~polykeras.layers.merge.expanded_shapes`)."""
    return [x.reshape(shape) for x, shape in zip(xs, expanded_shapes([tuple(x.shape) for x in xs]))]


class Merge(Layer):
    multiple_inputs = True


def _folding(kind_name: str, fold):
    class Elementwise(Merge):
        kind = kind_name

        def __call__(self, weights, xs, ctx):
            xs = expanded(list(xs))
            out = xs[0]
            for x in xs[1:]:
                out = fold(out, x)
            return out

    Elementwise.__name__ = Elementwise.__qualname__ = kind_name
    return Elementwise


Add = _folding("Add", jnp.add)
Subtract = _folding("Subtract", jnp.subtract)
Multiply = _folding("Multiply", jnp.multiply)
Maximum = _folding("Maximum", jnp.maximum)
Minimum = _folding("Minimum", jnp.minimum)


class Average(Merge):
    kind = "Average"

    def __call__(self, weights, xs, ctx):
        xs = expanded(list(xs))
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / len(xs)


class Concatenate(Merge):
    kind = "Concatenate"

    def __call__(self, weights, xs, ctx):
        return jnp.concatenate(list(xs), axis=concat_axis(int(self.config.get("axis", -1)), xs[0].ndim))


def _normalize(x, axis: int):
    inv = 1.0 / jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return x * jnp.minimum(inv, 1.0 / NORMALIZE_EPSILON)


class Dot(Merge):
    kind = "Dot"

    def __call__(self, weights, xs, ctx):
        a, b = xs
        ax, bx = dot_axes(self.config["axes"], a.ndim, b.ndim)
        if self.config.get("normalize"):
            a, b = _normalize(a, ax), _normalize(b, bx)
        sa, sb, so = dot_subscripts(a.ndim, b.ndim, ax, bx)
        out = jnp.einsum(f"{sa},{sb}->{so}", a, b)
        return out[:, None] if out.ndim == 1 else out


MERGE_LAYERS = (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)
