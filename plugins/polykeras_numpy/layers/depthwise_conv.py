"""Depthwise and separable convolutions: DepthwiseConv1D/2D and
SeparableConv1D/2D (Keras 3 / TensorFlow semantics; the rules are
:mod:`polykeras.layer_rules.depthwise_conv`).

The math, on the zero-padded input (TensorFlow's padding, as :mod:`.conv`):

* depthwise: ``d[n, p, q, c, m] = sum_{i, j} xp[n, p*sh + i*dh, q*sw + j*dw, c]
  * kernel[i, j, c, m]``, then ``(c, m)`` flattened to channel ``c *
  depth_multiplier + m`` (TensorFlow's order);
* separable: ``z = d @ pointwise_kernel[0, 0]``, a 1x1 convolution;
* then the bias and the activation.

As in :mod:`.conv`, a loop over kernel positions; each position is a
broadcast product over the whole batch (no sum over channels: each channel
has its own kernels). The 1-D layers run as 2-D ones on a height-1 image.
"""

from __future__ import annotations

import numpy as np

from polykeras.layer_rules import window

from .. import activations
from .base import Kernel
from .conv import image_padding


def depthwise_conv2d(xp: np.ndarray, kernel: np.ndarray, strides, dilation, out_hw) -> np.ndarray:
    """``(batch, oh, ow, C, M)``: each channel of the padded NHWC ``xp`` with its
    ``M`` kernels of ``kernel (kh, kw, C, M)``, valid cross-correlation."""
    kh, kw, channels, multiplier = kernel.shape
    (sh, sw), (dh, dw), (oh, ow) = strides, dilation, out_hw
    y = np.zeros((xp.shape[0], oh, ow, channels, multiplier), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            y += xp[window(i * dh, j * dw, oh, ow, sh, sw)][..., None] * kernel[i, j]
    return y


def depthwise_conv2d_backward(xp: np.ndarray, kernel: np.ndarray, dy: np.ndarray, strides, dilation,
                              input_grad: bool = True):
    """Gradients of :func:`depthwise_conv2d` with respect to ``xp`` (``None``
    without ``input_grad``) and ``kernel``, given ``dy (batch, oh, ow, C, M)``."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation
    oh, ow = dy.shape[1:3]
    dxp = np.zeros_like(xp) if input_grad else None
    dkernel = np.empty_like(kernel)
    for i in range(kh):
        for j in range(kw):
            index = window(i * dh, j * dw, oh, ow, sh, sw)
            dkernel[i, j] = np.einsum("nhwc,nhwcm->cm", xp[index], dy)
            if input_grad:
                dxp[index] += (dy * kernel[i, j]).sum(axis=-1)  # windows overlap when stride < k: accumulate
    return dxp, dkernel


class DepthwiseConv2D(Kernel):
    """Weights ``kernel (kh, kw, in, depth_multiplier)`` then ``bias (in *
    depth_multiplier,)`` if ``use_bias``."""

    kind = "DepthwiseConv2D"
    separable = False

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        rules = self.rules
        pad = (1,) * (2 - rules.rank)  # a 1-D layer runs on a height-1 image with a height-1 kernel
        self.kernel_size, self.strides, self.dilation = pad + rules.kernel_size, pad + rules.strides, \
            pad + rules.dilation_rate
        activations.check(rules.activation)

    def _image_kernel(self, kernel):
        """The depthwise kernel as ``(kh, kw, C, M)`` (adds kh = 1 in 1-D)."""
        return kernel.reshape(self.kernel_size + kernel.shape[-2:])

    def forward(self, weights, x, ctx):
        rules = self.rules
        x4, pads, out_hw = image_padding(rules, x)
        xp = np.pad(x4, ((0, 0), *pads, (0, 0)))
        d5 = depthwise_conv2d(xp, self._image_kernel(weights[0]), self.strides, self.dilation, out_hw)
        d = d5.reshape(d5.shape[:3] + (-1,))
        z = d @ weights[1].reshape(weights[1].shape[-2:]) if self.separable else d
        if rules.use_bias:
            z = z + weights[-1]
        y = activations.forward(rules.activation, z)
        return (y[:, 0] if rules.rank == 1 else y), (xp, pads, d, z, y)

    def backward(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=True)

    def backward_weights(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=False)[1]

    def _backward(self, weights, cache, dy, input_grad: bool):
        xp, pads, d, z, y = cache
        rules = self.rules
        dz = activations.backward(rules.activation, z, y, dy.reshape(z.shape))
        dweights = []
        if self.separable:
            pointwise = weights[1].reshape(weights[1].shape[-2:])
            dpointwise = d.reshape(-1, d.shape[-1]).T @ dz.reshape(-1, dz.shape[-1])
            dd = dz @ pointwise.T
        else:
            dd = dz
        kernel = self._image_kernel(weights[0])
        dxp, dkernel = depthwise_conv2d_backward(xp, kernel, dd.reshape(dd.shape[:3] + kernel.shape[2:]),
                                                 self.strides, self.dilation, input_grad)
        dweights.append(dkernel.reshape(weights[0].shape))
        if self.separable:
            dweights.append(dpointwise.reshape(weights[1].shape))
        if rules.use_bias:
            dweights.append(dz.sum(axis=(0, 1, 2)))
        if not input_grad:
            return None, dweights
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right]
        return (dx[:, 0] if rules.rank == 1 else dx), dweights


class SeparableConv2D(DepthwiseConv2D):
    """Weights ``depthwise_kernel (kh, kw, in, depth_multiplier)``,
    ``pointwise_kernel (1, 1, in * depth_multiplier, filters)``, then ``bias (filters,)``."""

    kind = "SeparableConv2D"
    separable = True


class DepthwiseConv1D(DepthwiseConv2D):
    kind = "DepthwiseConv1D"


class SeparableConv1D(SeparableConv2D):
    kind = "SeparableConv1D"
