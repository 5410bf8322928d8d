"""Padding, cropping, upsampling and shape layers (Keras 3 semantics,
channels_last). The rules -- the amounts, factors, permutations and output
shapes -- are the core's, :mod:`polykeras.layer_rules.reshaping`. Each
backward is the transpose of its forward's linear map:

* zero padding <-> cropping: each one's gradient is the other;
* nearest upsampling repeats, so its gradient sums each ``size`` block;
  bilinear upsampling is ``y = A_h x A_w^T`` per channel, its gradient
  ``A_h^T dy A_w``;
* RepeatVector's gradient sums the copies; Permute's applies the inverse
  permutation; Identity passes it on; Rescaling's multiplies by ``scale``.
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class ZeroPadding2D(Kernel):
    kind = "ZeroPadding2D"

    def forward(self, weights, x, ctx):
        return np.pad(x, ((0, 0), *self.rules.pads, (0, 0))), x.shape

    def backward(self, weights, cache, dy):
        index = (slice(None),) + tuple(slice(b, b + n) for (b, _), n in zip(self.rules.pads, cache[1:-1]))
        return dy[index].copy(), []


class ZeroPadding1D(ZeroPadding2D):
    kind = "ZeroPadding1D"


class Cropping2D(Kernel):
    kind = "Cropping2D"

    def forward(self, weights, x, ctx):
        return x[self.rules.slices(x.shape)].copy(), x.shape

    def backward(self, weights, cache, dy):
        dx = np.zeros(cache, dtype=dy.dtype)
        dx[self.rules.slices(cache)] = dy
        return dx, []


class Cropping1D(Cropping2D):
    kind = "Cropping1D"


class UpSampling2D(Kernel):
    """``nearest``: each element repeated ``size`` times along each spatial axis;
    ``bilinear`` (2-D): the rules' interpolation matrices applied per axis."""

    kind = "UpSampling2D"

    def _matrices(self, shape):
        make = self.rules.bilinear_matrix
        return [make(int(n), s, self.dtype) for n, s in zip(shape[1:-1], self.rules.size)]

    def forward(self, weights, x, ctx):
        if self.rules.interpolation == "bilinear":
            a_h, a_w = self._matrices(x.shape)
            return np.einsum("oh,bhwc,pw->bopc", a_h, x, a_w), x.shape
        y = x
        for axis, s in enumerate(self.rules.size, start=1):
            y = np.repeat(y, s, axis=axis)
        return y, x.shape

    def backward(self, weights, cache, dy):
        x_shape = cache
        if self.rules.interpolation == "bilinear":
            a_h, a_w = self._matrices(x_shape)
            return np.einsum("oh,bopc,pw->bhwc", a_h, dy, a_w), []
        # split each upsampled axis into (n, size) and sum over the copies
        split = [x_shape[0]]
        for n, s in zip(x_shape[1:-1], self.rules.size):
            split += [n, s]
        split.append(x_shape[-1])
        copies = tuple(range(2, 2 * len(self.rules.size) + 1, 2))
        return dy.reshape(split).sum(axis=copies), []


class UpSampling1D(UpSampling2D):
    kind = "UpSampling1D"


class RepeatVector(Kernel):
    kind = "RepeatVector"

    def forward(self, weights, x, ctx):
        return np.repeat(x[:, None, :], self.rules.n, axis=1), None

    def backward(self, weights, cache, dy):
        return dy.sum(axis=1), []


class Permute(Kernel):
    kind = "Permute"

    def forward(self, weights, x, ctx):
        return np.transpose(x, self.rules.axes).copy(), None

    def backward(self, weights, cache, dy):
        return np.transpose(dy, self.rules.inverse).copy(), []


class Identity(Kernel):
    kind = "Identity"

    def forward(self, weights, x, ctx):
        return x, None

    def backward(self, weights, cache, dy):
        return dy, []


class Rescaling(Kernel):
    """``x * scale + offset``."""

    kind = "Rescaling"

    def forward(self, weights, x, ctx):
        scale, offset = self.rules.values(self.dtype)
        return x * scale + offset, None

    def backward(self, weights, cache, dy):
        return dy * self.rules.values(self.dtype)[0], []


RESHAPING_KERNELS = (ZeroPadding1D, ZeroPadding2D, Cropping1D, Cropping2D, UpSampling1D, UpSampling2D, RepeatVector,
                     Permute, Identity, Rescaling)
