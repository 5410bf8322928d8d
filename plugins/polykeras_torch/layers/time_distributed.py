"""TimeDistributed in torch (Keras 3 semantics, :mod:`polykeras.layer_rules.time_distributed`):
this backend's own layer of the wrapped kind, run once on the batch and time axes folded
together (``(batch * time, ...)``, a view for contiguous input). A wrapped dropout kind's
mask is drawn as ``(batch, time, *rest)`` -- one per time step, the rules' ``mask_shape``
-- and folded alike. Native weights: the wrapped layer's.
"""

from __future__ import annotations

import torch

from .base import StepContext, TorchLayer


class _FoldedMasks:
    """``ctx`` as the wrapped layer sees it: its dropout masks drawn per (sample, time step), then folded."""

    def __init__(self, ctx: StepContext, x: torch.Tensor):
        self._ctx, self._x = ctx, x

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def dropout_mask(self, layer_index, stream, shape, rate, like):
        batch, time = self._x.shape[:2]
        mask = self._ctx.dropout_mask(layer_index, stream, (batch, time, *shape[1:]), rate, self._x)
        return mask.reshape(shape)


class TimeDistributed(TorchLayer):
    kind = "TimeDistributed"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        from . import LAYERS

        self.inner = LAYERS[self.rules.inner_spec.kind](self.rules.inner_spec, index, dtype, device)

    def to_native(self, weights):
        return self.inner.to_native(weights)

    def to_canonical(self, arrays):
        return self.inner.to_canonical(arrays)

    def forward(self, params, x, ctx: StepContext):
        batch, time = x.shape[:2]
        y = self.inner.forward(params, x.reshape(batch * time, *x.shape[2:]), _FoldedMasks(ctx, x))
        return y.reshape(batch, time, *y.shape[1:])
