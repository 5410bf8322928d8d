"""The reference of ``Variable`` nodes (a custom layer's weight read in its
traced ``call()``): the output is the weight; its gradient is the output's,
summed over the reads by the program."""

from __future__ import annotations

from .base import Kernel


class Variable(Kernel):
    kind = "Variable"
    multiple_inputs = True

    def forward(self, weights, xs, ctx):
        return weights[0], None

    def backward(self, weights, cache, dy):
        return [], self.backward_weights(weights, cache, dy)

    def backward_weights(self, weights, cache, dy):
        # every read adds to the weight's gradient (a later read of a shared layer's variable carries no
        # WeightSpec of its own; the program drops the gradients of non-trainable weights)
        return [dy]
