"""Merge layers in JAX. The rules are the core's (:mod:`polykeras.layers.merge`);
autodiff differentiates them (``jnp.maximum``/``minimum`` split a tie's
gradient equally, as the reference does)."""

from __future__ import annotations

import jax.numpy as jnp

from polykeras.layers.merge import NORMALIZE_EPSILON, concat_axis, dot_axes, dot_subscripts, elementwise_merge

from .base import Layer


class Merge(Layer):
    multiple_inputs = True


class Elementwise(Merge):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: :func:`~polykeras.layers.merge.elementwise_merge`."""

    def __call__(self, weights, xs, ctx):
        return elementwise_merge(self.kind, list(xs), jnp)


Add, Subtract, Multiply, Average, Maximum, Minimum = (type(kind, (Elementwise,), {"kind": kind}) for kind in (
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"))


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
