"""Pooling layers (Keras 3 / TensorFlow semantics, channels_last).

The rules -- ``pool_size``, ``strides`` (``pool_size`` when ``None``),
padding amounts, the count of real elements per window -- are the core's,
:mod:`polykeras.layer_rules.conv`. The math:

* ``"same"`` padding uses TensorFlow's amounts. Max
  pooling pads with ``-inf`` so padding never wins; average pooling divides
  by the number of *valid* (non-padded) elements in each window, as
  ``tf.nn.avg_pool`` does.
* Max-pooling backward sends each window's gradient to the *first* maximal
  element of the window in row-major window order (TensorFlow's CPU rule; the
  choice only matters for ties).
* Global average pooling is the mean over the spatial axes, global max
  pooling the maximum (a tie shares the gradient); ``keepdims`` keeps them
  with size 1.

Like the convolutions, the windowed layers loop over the positions inside a
window (a handful) and work on the whole batch at each. The 1-D layer is the
2-D one on a height-1 image.
"""

from __future__ import annotations

import numpy as np

from .base import Kernel
from .conv import image_padding, window


class _WindowPooling(Kernel):
    """Window geometry of the windowed pooling layers."""

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.pool_size, self.strides = self.rules.pool_size, self.rules.strides
        if self.rules.rank == 1:  # a 1-D layer is the 2-D one on a height-1 image
            self.pool_size, self.strides = (1,) + self.pool_size, (1,) + self.strides

    def _pad(self, x):
        """Return the padded 4-D input (padding holds ``rules.pad_value``), the
        padding ``((top, bottom), (left, right))`` and the output size ``(oh, ow)``."""
        x4, pads, out_hw = image_padding(self.rules, x)
        xp = np.pad(x4, ((0, 0), *pads, (0, 0)), constant_values=self.rules.pad_value)
        return xp, pads, out_hw

    def _unpad(self, dxp, pads):
        """Crop the padding off a gradient and drop the fake height axis of 1-D."""
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:dxp.shape[1] - bottom, left:dxp.shape[2] - right]
        return dx[:, 0] if self.rules.rank == 1 else dx

    def _windows(self, out_hw):
        """Every position ``(i, j)`` inside the window, in row-major order, as
        the index of the strided view it sees on the padded input."""
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return [window(i, j, *out_hw, sh, sw) for i in range(ph) for j in range(pw)]


class MaxPooling2D(_WindowPooling):
    """Max over ``pool_size`` windows; input ``(batch, H, W, C)``. No weights."""

    kind = "MaxPooling2D"

    def forward(self, weights, x, ctx):
        xp, pads, out_hw = self._pad(x)
        y = None
        for index in self._windows(out_hw):
            y = xp[index].copy() if y is None else np.maximum(y, xp[index])
        return (y[:, 0] if self.rules.rank == 1 else y), (xp, pads, y)

    def backward(self, weights, cache, dy):
        xp, pads, y = cache
        dy = dy.reshape(y.shape)
        dxp = np.zeros_like(xp)
        routed = np.zeros(y.shape, dtype=bool)  # this window already gave its gradient away
        for index in self._windows(y.shape[1:3]):
            first_max = (xp[index] == y) & ~routed
            dxp[index] += np.where(first_max, dy, 0.0).astype(dy.dtype, copy=False)
            routed |= first_max
        return self._unpad(dxp, pads), []


class MaxPooling1D(MaxPooling2D):
    """Max over windows of ``pool_size`` steps; input ``(batch, steps, C)``."""

    kind = "MaxPooling1D"


class AveragePooling2D(_WindowPooling):
    """Mean over ``pool_size`` windows, counting only non-padded elements."""

    kind = "AveragePooling2D"

    def forward(self, weights, x, ctx):
        xp, pads, out_hw = self._pad(x)
        # how many real (non-padding) elements each window covers, (1, oh, ow, 1) (oh = 1 in 1-D)
        counts = self.rules.real_counts(x.shape[1:-1], self.dtype).reshape(1, *out_hw, 1)
        y = sum(xp[index] for index in self._windows(out_hw)) / counts
        return (y[:, 0] if self.rules.rank == 1 else y), (xp.shape, pads, out_hw, counts)

    def backward(self, weights, cache, dy):
        xp_shape, pads, out_hw, counts = cache
        # every element of a window receives an equal share of its gradient
        share = dy.reshape((xp_shape[0], *out_hw, xp_shape[3])) / counts
        dxp = np.zeros(xp_shape, dtype=share.dtype)
        for index in self._windows(out_hw):
            dxp[index] += share
        return self._unpad(dxp, pads), []


class AveragePooling1D(AveragePooling2D):
    """Mean over windows of ``pool_size`` steps, counting only non-padded ones."""

    kind = "AveragePooling1D"


class GlobalAveragePooling2D(Kernel):
    """Mean over H and W: ``(batch, H, W, C) -> (batch, C)`` (or
    ``(batch, 1, 1, C)`` with ``keepdims``)."""

    kind = "GlobalAveragePooling2D"

    def forward(self, weights, x, ctx):
        return x.mean(axis=self.rules.axes, keepdims=self.rules.keepdims), x.shape

    def backward(self, weights, cache, dy):
        x_shape, axes = cache, self.rules.axes
        count = int(np.prod([x_shape[a] for a in axes]))
        dy = dy.reshape([1 if a in axes else d for a, d in enumerate(x_shape)])
        return np.broadcast_to(dy / count, x_shape).copy(), []


class GlobalAveragePooling1D(GlobalAveragePooling2D):
    """Mean over steps: ``(batch, steps, C) -> (batch, C)``; with a mask, Keras's mean of the unmasked
    steps, ``sum(x * m) / sum(m)`` (NaN for a sample whose steps are all masked, as in Keras)."""

    kind = "GlobalAveragePooling1D"

    def forward(self, weights, x, ctx):
        if ctx.mask is None:
            return super().forward(weights, x, ctx)
        m = ctx.mask.astype(x.dtype)[:, :, None]
        keep = self.rules.keepdims
        count = m.sum(axis=1, keepdims=keep)
        return (x * m).sum(axis=1, keepdims=keep) / count, (m, count)

    def backward(self, weights, cache, dy):
        if not isinstance(cache[0], np.ndarray):  # no mask: the cache is the input's shape
            return super().backward(weights, cache, dy)
        m, count = cache
        if not self.rules.keepdims:
            dy, count = dy[:, None, :], count[:, None, :]
        return dy * m / count, []


class GlobalMaxPooling2D(Kernel):
    """Max over H and W: ``(batch, H, W, C) -> (batch, C)`` (or
    ``(batch, 1, 1, C)`` with ``keepdims``).

    Backward: a tie for the maximum *shares* the gradient equally among the
    tied elements -- the gradient of a max reduction in TensorFlow
    (``reduce_max``), torch (``amax``) and jax (``jnp.max``), which Keras's
    ``ops.max`` is on each. (Windowed max pooling gives a window's gradient
    to its first maximum instead, TensorFlow's ``max_pool`` rule.)
    """

    kind = "GlobalMaxPooling2D"

    def forward(self, weights, x, ctx):
        y = x.max(axis=self.rules.axes, keepdims=True)
        return (y if self.rules.keepdims else y.reshape([d for a, d in enumerate(y.shape) if a not in self.rules.axes])
                ), (x, y)

    def backward(self, weights, cache, dy):
        x, y = cache
        winners = (x == y).astype(x.dtype)
        share = dy.reshape(y.shape) / winners.sum(axis=self.rules.axes, keepdims=True)
        return winners * share, []


class GlobalMaxPooling1D(GlobalMaxPooling2D):
    """Max over steps: ``(batch, steps, C) -> (batch, C)``."""

    kind = "GlobalMaxPooling1D"
