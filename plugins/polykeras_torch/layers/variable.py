"""``Variable`` nodes in torch: the weight itself (autograd sums the gradients of its reads)."""

from __future__ import annotations

from .base import TorchLayer


class Variable(TorchLayer):
    kind = "Variable"
    multiple_inputs = True

    def forward(self, params, xs, ctx):
        return params[0]
