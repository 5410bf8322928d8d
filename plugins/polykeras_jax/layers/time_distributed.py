"""TimeDistributed in JAX (Keras 3 semantics, :mod:`polykeras.layer_rules.time_distributed`):
this backend's own layer of the wrapped kind, run once on the batch and time axes folded
together (``(batch * time, ...)``). A wrapped dropout kind's mask is drawn as
``(batch, time, *rest)`` -- one per time step, the rules' ``mask_shape`` -- and folded alike.
"""

from __future__ import annotations

from .base import Layer, LayerContext


class _FoldedMasks:
    """``ctx`` as the wrapped layer sees it: its dropout masks drawn per (sample, time step), then folded."""

    def __init__(self, ctx: LayerContext, batch: int, time: int):
        self._ctx, self._batch, self._time = ctx, batch, time

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def dropout_mask(self, stream, shape, rate):
        mask = self._ctx.dropout_mask(stream, (self._batch, self._time, *shape[1:]), rate)
        return mask.reshape(shape)


class TimeDistributed(Layer):
    kind = "TimeDistributed"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        from . import LAYERS

        self.inner = LAYERS[self.rules.inner_spec.kind](self.rules.inner_spec, dtype)

    def __call__(self, weights, x, ctx):
        batch, time = x.shape[:2]
        y = self.inner(weights, x.reshape(batch * time, *x.shape[2:]), _FoldedMasks(ctx, batch, time))
        return y.reshape(batch, time, *y.shape[1:])
