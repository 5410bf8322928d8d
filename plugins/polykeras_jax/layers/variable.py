"""``Variable`` nodes in JAX: the weight itself (autodiff sums the gradients of its reads)."""

from __future__ import annotations

from .base import Layer


class Variable(Layer):
    kind = "Variable"
    multiple_inputs = True

    def __call__(self, weights, xs, ctx):
        return weights[0]
