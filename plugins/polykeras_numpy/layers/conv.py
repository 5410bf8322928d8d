"""Convolutions: Conv1D and Conv2D (Keras 3 / TensorFlow semantics).

The rules -- config, TensorFlow's ``"same"`` and ``"causal"`` padding
amounts, output sizes -- are the core's, :mod:`polykeras.layer_rules.conv`.
The math:

* Cross-correlation, as Keras and TensorFlow compute it: the kernel is *not*
  flipped. ``y[n, p, q, f] = sum_{i, j, c} x[n, p*sh + i*dh, q*sw + j*dw, c]
  * kernel[i, j, c, f]`` on the padded input.
* channels_last only: inputs ``(batch, H, W, C)`` / ``(batch, steps, C)``,
  kernels ``(kh, kw, in, filters)`` / ``(k, in, filters)``.
* The input is padded with zeros by the rules' TensorFlow amounts
  (:func:`polykeras.layer_rules.padding_amounts`: ``"same"`` puts the smaller
  half before, ``"causal"`` pads ``(k - 1) * dilation`` on the left only).

The implementation loops over kernel positions (a handful) and does one
matrix product per position over the whole batch, which reads like the
formula above. Conv1D is Conv2D on a height-1 image. A grouped convolution
(``groups > 1``) is one such convolution per block of channels and filters.

:func:`image_padding` and :func:`window` are shared with the pooling layers.
"""

from __future__ import annotations

import numpy as np

from polykeras.layer_rules import as_tuple, padding_amounts, window  # noqa: F401  (re-exported)

from .. import activations
from .base import Kernel


def image_padding(rules, x: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """``x`` as a 4-D NHWC image (a 1-D input gets a height axis of 1, never
    padded), the TensorFlow padding ``[(top, bottom), (left, right)]`` that
    ``rules`` give for it and the output size ``(oh, ow)``."""
    amounts = rules.padding_amounts(x.shape[1:-1])
    if rules.rank == 1:
        x, amounts = x[:, None], [(0, 0, 1), *amounts]
    return x, [a[:2] for a in amounts], (amounts[0][2], amounts[1][2])


def conv2d(xp: np.ndarray, kernel: np.ndarray, strides, dilation, out_hw) -> np.ndarray:
    """Valid cross-correlation of the padded NHWC ``xp`` with an HWIO ``kernel``."""
    kh, kw, _, filters = kernel.shape
    (sh, sw), (dh, dw), (oh, ow) = strides, dilation, out_hw
    y = np.zeros((xp.shape[0], oh, ow, filters), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            y += xp[window(i * dh, j * dw, oh, ow, sh, sw)] @ kernel[i, j]
    return y


def conv2d_backward(xp: np.ndarray, kernel: np.ndarray, dz: np.ndarray, strides, dilation, input_grad: bool = True):
    """Gradients of :func:`conv2d` with respect to ``xp`` (``None`` without
    ``input_grad``) and ``kernel``."""
    kh, kw, cin, filters = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh, ow = dz.shape[1:3]
    dz2 = dz.reshape(-1, filters)
    dxp = np.zeros_like(xp) if input_grad else None
    dkernel = np.empty_like(kernel)
    for i in range(kh):
        for j in range(kw):
            index = window(i * dh, j * dw, oh, ow, sh, sw)
            dkernel[i, j] = xp[index].reshape(-1, cin).T @ dz2
            if input_grad:
                dxp[index] += dz @ kernel[i, j].T  # windows overlap when stride < k: accumulate
    return dxp, dkernel


class Conv2D(Kernel):
    """2-D convolution, channels_last. Weights ``kernel (kh, kw, in, filters)``
    then ``bias (filters,)`` if ``use_bias``."""

    kind = "Conv2D"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        rules = self.rules
        # A 1-D convolution is a 2-D one on a height-1 image with a height-1 kernel.
        pad = (1,) * (2 - rules.rank)
        self.kernel_size, self.strides = pad + rules.kernel_size, pad + rules.strides
        self.dilation = pad + rules.dilation_rate
        activations.check(rules.activation)

    def _image_kernel(self, kernel):
        """The kernel as HWIO (a no-op for Conv2D; adds kh = 1 for Conv1D)."""
        return kernel.reshape(self.kernel_size + kernel.shape[-2:])

    def _blocks(self, xp, kernel):
        """``(input block, kernel block)`` of each group: channels and filters split into contiguous blocks."""
        c, f = kernel.shape[-2], kernel.shape[-1] // self.rules.groups
        return [(xp[..., g * c:(g + 1) * c], kernel[..., g * f:(g + 1) * f]) for g in range(self.rules.groups)]

    def forward(self, weights, x, ctx):
        x4, pads, out_hw = image_padding(self.rules, x)
        xp = np.pad(x4, ((0, 0), *pads, (0, 0)))
        z = np.concatenate([conv2d(xb, kb, self.strides, self.dilation, out_hw)
                            for xb, kb in self._blocks(xp, self._image_kernel(weights[0]))], axis=-1)
        if self.rules.use_bias:
            z = z + weights[1]
        y = activations.forward(self.rules.activation, z)
        return (y[:, 0] if self.rules.rank == 1 else y), (xp, pads, z, y)

    def backward(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=True)

    def backward_weights(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=False)[1]

    def _backward(self, weights, cache, dy, input_grad: bool):
        xp, pads, z, y = cache
        dz = activations.backward(self.rules.activation, z, y, dy.reshape(z.shape))
        blocks = self._blocks(xp, self._image_kernel(weights[0]))
        f = blocks[0][1].shape[-1]
        grads = [conv2d_backward(xb, kb, dz[..., g * f:(g + 1) * f], self.strides, self.dilation, input_grad)
                 for g, (xb, kb) in enumerate(blocks)]
        dxp = np.concatenate([dxb for dxb, _ in grads], axis=-1) if input_grad else None
        dkernel = np.concatenate([dkb for _, dkb in grads], axis=-1)
        dweights = [dkernel.reshape(weights[0].shape)]
        if self.rules.use_bias:
            dweights.append(dz.sum(axis=(0, 1, 2)))
        if not input_grad:
            return None, dweights
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right]
        return (dx[:, 0] if self.rules.rank == 1 else dx), dweights


class Conv1D(Conv2D):
    """1-D convolution over ``(batch, steps, channels)``; padding valid, same or
    causal. Weights ``kernel (k, in, filters)`` then ``bias (filters,)``."""

    kind = "Conv1D"
