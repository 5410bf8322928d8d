"""TimeDistributed (Keras 3 semantics, :mod:`polykeras.layer_rules.time_distributed`):
the wrapped layer's kernel run once on the batch and time axes folded together.

Forward::

    x2      = x.reshape(batch * time, *x.shape[2:])   # time slices, batch-major
    y2      = inner.forward(x2)
    y       = y2.reshape(batch, time, *y2.shape[1:])

which is Keras's loop over the slices because every wrappable kind treats each
sample alone. Backward folds ``dy`` the same way, runs the inner kernel's own
backward (weight gradients summed over the slices, since they share the
weights) and unfolds ``dx``. A wrapped dropout kind asks for its mask on the
folded input; the host draws it as ``(batch, time, *rest)`` (the rules'
``mask_shape``: one mask per time step) and folds it alike.
"""

from __future__ import annotations

from .base import ForwardContext, Kernel


class TimeDistributed(Kernel):
    kind = "TimeDistributed"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        from . import KERNELS

        self.inner = KERNELS[self.rules.inner_spec.kind](self.rules.inner_spec, dtype)

    def forward(self, weights, x, ctx):
        batch, time = x.shape[:2]

        def folded_mask(shape, rate, stream):  # shape: the inner kernel's, (batch * time, *rest)
            return ctx.dropout_mask((batch, time, *shape[1:]), rate, stream).reshape(shape)

        inner_ctx = ForwardContext(ctx.training, folded_mask)
        y, cache = self.inner.forward(weights, x.reshape(batch * time, *x.shape[2:]), inner_ctx)
        return y.reshape(batch, time, *y.shape[1:]), (cache, x.shape)

    def backward(self, weights, cache, dy):
        inner_cache, x_shape = cache
        dx, dweights = self.inner.backward(weights, inner_cache, dy.reshape(-1, *dy.shape[2:]))
        return dx.reshape(x_shape), dweights
