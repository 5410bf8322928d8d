"""Transposed convolutions in torch, with Keras/TensorFlow semantics (the
rules -- output sizes, where the output window starts -- are
:mod:`polykeras.layer_rules.conv_transpose`).

``F.conv_transpose2d`` with no padding computes the "full" result, ``(n - 1)
* stride + k_eff`` positions per axis; the layer's output is the window
``[crop, crop + out)`` of it, zero-padded at the end where it runs past (a
``"valid"`` layer whose kernel is smaller than its stride). torch's own
``padding=`` crops both ends equally and its ``output_padding=`` is capped
below the stride, which cannot express every TensorFlow placement; the
explicit window can, and it is a view. Where the output runs past the full
result, the bias is added after the zero padding (it lands on the zeros too).

Layout: NHWC -> NCHW by a free permute (channels_last memory, as in
:mod:`.conv`). Kernels: Keras's ``(kh, kw, filters, in)`` is torch's
``(in, filters, kh, kw)`` for a transposed convolution; Conv1DTranspose's
``(k, filters, in)`` is ``(in, filters, k)``.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from .. import activations
from .base import TorchLayer


class Conv2DTranspose(TorchLayer):
    kind = "Conv2DTranspose"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        self.activation = activations.get(rules.activation)
        amounts = rules.amounts(spec.input_shape[1:-1])
        self.window = tuple(slice(c, c + o) for c, o, _ in amounts)
        # F.pad's spec (last axis first) for outputs that run past the full result, else None
        tail = [max(c + o - f, 0) for c, o, f in amounts]
        self.tail = tuple(v for t in reversed(tail) for v in (0, t)) if any(tail) else None

    def to_native(self, weights):  # (*k, filters, in) -> (in, filters, *k)
        axes = tuple(range(weights[0].ndim))
        return [np.ascontiguousarray(weights[0].transpose(axes[-1], axes[-2], *axes[:-2])), *weights[1:]]

    def to_canonical(self, arrays):  # (in, filters, *k) -> (*k, filters, in)
        axes = tuple(range(arrays[0].ndim))
        return [np.ascontiguousarray(arrays[0].transpose(*axes[2:], 1, 0)), *arrays[1:]]

    def forward(self, params, x, ctx):
        rules = self.rules
        channels_first = (0, x.ndim - 1, *range(1, x.ndim - 1))  # NHWC -> NCHW, NLC -> NCL
        conv = F.conv_transpose2d if rules.rank == 2 else F.conv_transpose1d
        if self.tail is None:
            full = conv(x.permute(*channels_first), params[0], params[1] if rules.use_bias else None,
                        rules.strides, dilation=rules.dilation_rate)
            z = full[(slice(None), slice(None), *self.window)].permute(0, *range(2, x.ndim), 1)
        else:  # the bias goes on the zeros past the full result too: added after the padding
            full = F.pad(conv(x.permute(*channels_first), params[0], None, rules.strides,
                              dilation=rules.dilation_rate), self.tail)
            z = full[(slice(None), slice(None), *self.window)].permute(0, *range(2, x.ndim), 1)
            if rules.use_bias:
                z = z + params[1]
        return self.activation(z)


class Conv1DTranspose(Conv2DTranspose):
    kind = "Conv1DTranspose"
