"""Pooling layers (Keras 3 / TensorFlow semantics, channels_last).

* ``strides`` defaults to ``pool_size`` when ``None``.
* ``"same"`` padding uses TensorFlow's amounts (see :mod:`.conv`). Max
  pooling pads with ``-inf`` so padding never wins; average pooling divides
  by the number of *valid* (non-padded) elements in each window, as
  ``tf.nn.avg_pool`` does.
* Max-pooling backward sends each window's gradient to the *first* maximal
  element of the window in row-major window order (TensorFlow's CPU rule; the
  choice only matters for ties).
* Global average pooling is the mean over the spatial axes; ``keepdims``
  keeps them with size 1.

Like the convolutions, the windowed layers loop over the positions inside a
window (a handful) and work on the whole batch at each. The 1-D layer is the
2-D one on a height-1 image.
"""

from __future__ import annotations

import numpy as np

from .base import Kernel
from .conv import as_tuple, padding_amounts, window


class _WindowPooling(Kernel):
    """Shared configuration and window geometry of the windowed pooling layers."""

    rank = 2
    pad_value = 0.0

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg, name, n = self.config, spec.name, self.rank
        self.pool_size = as_tuple(cfg.get("pool_size", 2), n, "pool_size", name)
        strides = cfg.get("strides")
        self.strides = self.pool_size if strides is None else as_tuple(strides, n, "strides", name)
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"{self.kind} layer {name!r}: padding={self.padding!r}; expected 'valid' or 'same'")
        data_format = cfg.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise NotImplementedError(
                f"{self.kind} layer {name!r}: data_format={data_format!r} is not supported by the "
                "NumPy reference; use 'channels_last'"
            )
        if self.rank == 1:  # a 1-D layer is the 2-D one on a height-1 image
            self.pool_size, self.strides = (1,) + self.pool_size, (1,) + self.strides

    def _pad(self, x):
        """Return the padded 4-D input, the padding ``((top, bottom), (left, right))``
        and the output size ``(oh, ow)``."""
        x4 = x[:, None] if self.rank == 1 else x
        amounts = [
            padding_amounts(size, p, s, 1, self.padding, self.spec.name)
            for size, p, s in zip(x4.shape[1:3], self.pool_size, self.strides)
        ]
        pads = [a[:2] for a in amounts]
        xp = np.pad(x4, ((0, 0), *pads, (0, 0)), constant_values=self.pad_value)
        return xp, pads, (amounts[0][2], amounts[1][2])

    def _unpad(self, dxp, pads):
        """Crop the padding off a gradient and drop the fake height axis of 1-D."""
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:dxp.shape[1] - bottom, left:dxp.shape[2] - right]
        return dx[:, 0] if self.rank == 1 else dx

    def _windows(self, out_hw):
        """Every position ``(i, j)`` inside the window, in row-major order, as
        the index of the strided view it sees on the padded input."""
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return [window(i, j, *out_hw, sh, sw) for i in range(ph) for j in range(pw)]


class MaxPooling2D(_WindowPooling):
    """Max over ``pool_size`` windows; input ``(batch, H, W, C)``. No weights."""

    kind = "MaxPooling2D"
    pad_value = -np.inf

    def forward(self, weights, x, ctx):
        xp, pads, out_hw = self._pad(x)
        y = None
        for index in self._windows(out_hw):
            y = xp[index].copy() if y is None else np.maximum(y, xp[index])
        return (y[:, 0] if self.rank == 1 else y), (xp, pads, y)

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
    rank = 1


class AveragePooling2D(_WindowPooling):
    """Mean over ``pool_size`` windows, counting only non-padded elements."""

    kind = "AveragePooling2D"
    pad_value = 0.0

    def _counts(self, xp_shape, pads, out_hw):
        """How many real (non-padding) elements each output window covers,
        shaped ``(1, oh, ow, 1)`` to broadcast over batch and channels."""
        (top, bottom), (left, right) = pads
        real = np.zeros((1, xp_shape[1], xp_shape[2], 1), dtype=self.dtype)
        real[:, top:xp_shape[1] - bottom, left:xp_shape[2] - right] = 1.0
        return sum(real[index] for index in self._windows(out_hw))

    def forward(self, weights, x, ctx):
        xp, pads, out_hw = self._pad(x)
        y = sum(xp[index] for index in self._windows(out_hw)) / self._counts(xp.shape, pads, out_hw)
        return (y[:, 0] if self.rank == 1 else y), (xp.shape, pads, out_hw)

    def backward(self, weights, cache, dy):
        xp_shape, pads, out_hw = cache
        # every element of a window receives an equal share of its gradient
        share = dy.reshape((xp_shape[0], *out_hw, xp_shape[3])) / self._counts(xp_shape, pads, out_hw)
        dxp = np.zeros(xp_shape, dtype=share.dtype)
        for index in self._windows(out_hw):
            dxp[index] += share
        return self._unpad(dxp, pads), []


class GlobalAveragePooling2D(Kernel):
    """Mean over H and W: ``(batch, H, W, C) -> (batch, C)`` (or
    ``(batch, 1, 1, C)`` with ``keepdims``)."""

    kind = "GlobalAveragePooling2D"
    axes: tuple[int, ...] = (1, 2)

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.keepdims = bool(self.config.get("keepdims", False))
        data_format = self.config.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise NotImplementedError(
                f"{self.kind} layer {spec.name!r}: data_format={data_format!r} is not supported by the "
                "NumPy reference; use 'channels_last'"
            )

    def forward(self, weights, x, ctx):
        return x.mean(axis=self.axes, keepdims=self.keepdims), x.shape

    def backward(self, weights, cache, dy):
        x_shape = cache
        count = int(np.prod([x_shape[a] for a in self.axes]))
        dy = dy.reshape([1 if a in self.axes else d for a, d in enumerate(x_shape)])
        return np.broadcast_to(dy / count, x_shape).copy(), []


class GlobalAveragePooling1D(GlobalAveragePooling2D):
    """Mean over steps: ``(batch, steps, C) -> (batch, C)``."""

    kind = "GlobalAveragePooling1D"
    axes = (1,)
