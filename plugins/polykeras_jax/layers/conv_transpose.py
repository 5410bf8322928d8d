"""Transposed convolutions (Keras 3 / TensorFlow semantics, channels_last;
the rules -- output sizes, where the output window starts -- are
:mod:`polykeras.layer_rules.conv_transpose`).

``lax.conv_transpose`` with ``transpose_kernel=True`` is the input gradient of
a convolution, which is what a TensorFlow transposed convolution is: Keras's
``(*kernel_size, filters, in)`` kernel, read as ``HWIO``, has its spatial axes
flipped and its channel axes swapped by it. Its padding pair ``(k_eff - 1 -
crop, crop + out - full + k_eff - 1)`` per axis selects the rules' output
window ``[crop, crop + out)`` of the full result (a negative amount crops).
"""

from __future__ import annotations

from jax import lax

from .. import activations
from .base import Layer

_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


class Conv2DTranspose(Layer):
    kind = "Conv2DTranspose"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.rules.activation)

    def __call__(self, weights, x, ctx):
        rules = self.rules
        pads = []
        for (crop, out, full), k, d in zip(rules.amounts(x.shape[1:-1]), rules.kernel_size, rules.dilation_rate):
            k_eff = (k - 1) * d + 1
            pads.append((k_eff - 1 - crop, crop + out - full + k_eff - 1))
        z = lax.conv_transpose(x, weights[0], rules.strides, pads, rhs_dilation=rules.dilation_rate,
                               dimension_numbers=_DIMENSIONS[rules.rank], transpose_kernel=True)
        if rules.use_bias:
            z = z + weights[1]
        return self.activation(z)


class Conv1DTranspose(Conv2DTranspose):
    kind = "Conv1DTranspose"
