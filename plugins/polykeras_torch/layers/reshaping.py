"""Padding, cropping, upsampling and shape layers in torch (Keras 3
semantics, channels_last; the rules are :mod:`polykeras.layer_rules.reshaping`,
the math the NumPy reference's). All are data movement -- ``F.pad``, slices,
``repeat_interleave``, ``expand``, ``permute`` -- except bilinear upsampling,
two small matrix products with the rules' interpolation matrices
(``F.interpolate(mode="bilinear", align_corners=False)`` is the same map
for integer upscales, computed on NCHW)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import TorchLayer


class ZeroPadding2D(TorchLayer):
    kind = "ZeroPadding2D"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        # F.pad lists the last axis first: channels (none), then the spatial axes from the last
        self.pad = (0, 0) + tuple(v for pair in reversed(self.rules.pads) for v in pair)

    def forward(self, params, x, ctx):
        return F.pad(x, self.pad)


class ZeroPadding1D(ZeroPadding2D):
    kind = "ZeroPadding1D"


class Cropping2D(TorchLayer):
    kind = "Cropping2D"

    def forward(self, params, x, ctx):
        return x[self.rules.slices(tuple(x.shape))]


class Cropping1D(Cropping2D):
    kind = "Cropping1D"


class UpSampling2D(TorchLayer):
    kind = "UpSampling2D"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.matrices: dict[tuple, tuple] = {}  # bilinear: the interpolation matrices per input size

    def _bilinear(self, x):
        sizes = tuple(x.shape[1:-1])
        if sizes not in self.matrices:
            make = self.rules.bilinear_matrix
            with torch.inference_mode(False):  # built in a predict call, they serve training steps too
                self.matrices[sizes] = tuple(self.constant(make(int(n), s)) for n, s in zip(sizes, self.rules.size))
        a_h, a_w = self.matrices[sizes]
        return torch.einsum("oh,bhwc,pw->bopc", a_h, x, a_w)

    def forward(self, params, x, ctx):
        if self.rules.interpolation == "bilinear":
            return self._bilinear(x)
        for axis, s in enumerate(self.rules.size, start=1):
            if s != 1:
                x = x.repeat_interleave(s, dim=axis)
        return x


class UpSampling1D(UpSampling2D):
    kind = "UpSampling1D"


class RepeatVector(TorchLayer):
    kind = "RepeatVector"

    def forward(self, params, x, ctx):
        return x.unsqueeze(1).expand(-1, self.rules.n, -1)


class Permute(TorchLayer):
    kind = "Permute"

    def forward(self, params, x, ctx):
        return x.permute(self.rules.axes)


class Identity(TorchLayer):
    kind = "Identity"

    def forward(self, params, x, ctx):
        return x


class Rescaling(TorchLayer):
    kind = "Rescaling"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.scale, self.offset = (self.constant(v) for v in self.rules.values(np.float64))

    def forward(self, params, x, ctx):
        return x * self.scale + self.offset


RESHAPING_LAYERS = (ZeroPadding1D, ZeroPadding2D, Cropping1D, Cropping2D, UpSampling1D, UpSampling2D, RepeatVector,
                    Permute, Identity, Rescaling)
