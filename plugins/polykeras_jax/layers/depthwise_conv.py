"""Depthwise and separable convolutions (Keras 3 / TensorFlow semantics,
channels_last; the rules are :mod:`polykeras.layer_rules.depthwise_conv`).

A depthwise convolution is ``lax.conv_general_dilated`` with
``feature_group_count=in_channels`` and Keras's ``kernel (kh, kw, C, M)``
reshaped to ``HWIO`` ``(kh, kw, 1, C * M)``: output channel ``c * M + m``
belongs to group ``c``, TensorFlow's order. SeparableConv2D's pointwise step
is a product with ``pointwise_kernel[0, 0]`` over the channels (a 1x1
convolution). Padding amounts are the rules' (TensorFlow's), as in :mod:`.conv`;
the 1-D layers are the same on ``NWC``/``WIO``.
"""

from __future__ import annotations

from jax import lax

from .. import activations
from .base import Layer
from .conv import _DIMENSIONS, _pads


class DepthwiseConv2D(Layer):
    kind = "DepthwiseConv2D"
    separable = False

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.rules.activation)

    def __call__(self, weights, x, ctx):
        rules = self.rules
        *k, c, m = weights[0].shape
        z = lax.conv_general_dilated(x, weights[0].reshape(*k, 1, c * m), window_strides=rules.strides,
                                     padding=_pads(rules, x.shape), rhs_dilation=rules.dilation_rate,
                                     dimension_numbers=_DIMENSIONS[rules.rank], feature_group_count=c)
        if self.separable:
            z = z @ weights[1].reshape(weights[1].shape[-2:])
        if rules.use_bias:
            z = z + weights[-1]
        return self.activation(z)


class SeparableConv2D(DepthwiseConv2D):
    kind = "SeparableConv2D"
    separable = True


class DepthwiseConv1D(DepthwiseConv2D):
    kind = "DepthwiseConv1D"


class SeparableConv1D(SeparableConv2D):
    kind = "SeparableConv1D"
