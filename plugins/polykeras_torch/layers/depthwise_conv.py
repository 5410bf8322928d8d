"""Depthwise and separable convolutions in torch, with Keras/TensorFlow
semantics (the rules are :mod:`polykeras.layer_rules.depthwise_conv`).

A depthwise convolution is ``F.conv2d`` with ``groups=in_channels``: group
``c`` holds output channels ``c * depth_multiplier + m``, the order
TensorFlow uses, so Keras's ``kernel (kh, kw, C, M)`` is torch's ``(C * M, 1,
kh, kw)`` by a transpose and a reshape. The pointwise step of
SeparableConv2D is a 1x1 ``F.conv2d`` (weight ``(filters, C * M, 1, 1)``).
Padding and the NHWC <-> NCHW views are those of :mod:`.conv`; the 1-D layers
use ``F.conv1d`` on NCL views the same way.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from .. import activations
from .base import TorchLayer
from .conv import _pads, _torch_padding


class DepthwiseConv2D(TorchLayer):
    kind = "DepthwiseConv2D"
    separable = False

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        self.activation = activations.get(rules.activation)
        self.channels = spec.input_shape[-1]
        pads, _ = _pads(rules, spec)
        self.explicit_pad, self.padding = _torch_padding(
            pads, [(k - 1) * d + 1 for k, d in zip(rules.kernel_size, rules.dilation_rate)])

    def to_native(self, weights):  # (*k, C, M) -> (C * M, 1, *k); pointwise (*1, CM, F) -> (F, CM, *1)
        r = self.rules.rank
        *k, c, m = weights[0].shape
        native = [np.ascontiguousarray(weights[0].transpose(r, r + 1, *range(r)).reshape(c * m, 1, *k))]
        if self.separable:
            native.append(np.ascontiguousarray(weights[1].transpose(r + 1, r, *range(r))))
        return native + list(weights[len(native):])

    def to_canonical(self, arrays):
        r = self.rules.rank
        k = arrays[0].shape[2:]
        canonical = [np.ascontiguousarray(arrays[0].reshape(self.channels, -1, *k).transpose(*range(2, r + 2), 0, 1))]
        if self.separable:
            canonical.append(np.ascontiguousarray(arrays[1].transpose(*range(2, r + 2), 1, 0)))
        return canonical + list(arrays[len(canonical):])

    def forward(self, params, x, ctx):
        rules = self.rules
        conv = F.conv2d if rules.rank == 2 else F.conv1d
        xn = x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))  # NHWC -> NCHW view (channels_last memory)
        if self.explicit_pad is not None:
            xn = F.pad(xn, self.explicit_pad)
        bias = params[-1] if rules.use_bias else None
        z = conv(xn, params[0], None if self.separable else bias, rules.strides, self.padding, rules.dilation_rate,
                 groups=self.channels)
        if self.separable:
            z = conv(z, params[1], bias)
        return self.activation(z.permute(0, *range(2, z.ndim), 1))


class SeparableConv2D(DepthwiseConv2D):
    kind = "SeparableConv2D"
    separable = True


class DepthwiseConv1D(DepthwiseConv2D):
    kind = "DepthwiseConv1D"


class SeparableConv1D(SeparableConv2D):
    kind = "SeparableConv1D"
