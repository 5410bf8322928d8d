"""Transposed convolutions: Conv1DTranspose and Conv2DTranspose (Keras 3 /
TensorFlow semantics; the rules -- output sizes, where the output window
starts -- are :mod:`polykeras.layer_rules.conv_transpose`).

The math, along each spatial axis: every input pixel ``p`` scatters
``x[n, p, c] * kernel[i, f, c]`` to position ``p * stride + i * dilation`` of
a "full" result (``(size - 1) * stride + k_eff`` positions, plus zeros to
reach ``crop + out``); the output is positions ``[crop, crop + out)`` of it.
channels_last: inputs ``(batch, H, W, C)``, kernels ``(kh, kw, filters, in)``.

As in :mod:`.conv`, one matrix product per kernel position over the whole
batch: the scatter of position ``(i, j)`` is the strided window
:func:`~polykeras.layer_rules.window` of the full result, so the backward pass
reads that same window. Conv1DTranspose is Conv2DTranspose on a height-1 image.
"""

from __future__ import annotations

import numpy as np

from polykeras.layer_rules import window

from .. import activations
from .base import Kernel


def conv2d_transpose(x: np.ndarray, kernel: np.ndarray, strides, dilation, full_hw) -> np.ndarray:
    """The full (uncropped) transposed convolution of NHWC ``x`` with an
    ``(kh, kw, filters, in)`` kernel, on a ``full_hw`` canvas."""
    kh, kw, filters, _ = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    h, w = x.shape[1:3]
    y = np.zeros((x.shape[0], *full_hw, filters), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            y[window(i * dh, j * dw, h, w, sh, sw)] += x @ kernel[i, j].T
    return y


def conv2d_transpose_backward(x: np.ndarray, kernel: np.ndarray, dfull: np.ndarray, strides, dilation,
                              input_grad: bool = True):
    """Gradients of :func:`conv2d_transpose` with respect to ``x`` (``None``
    without ``input_grad``) and ``kernel``, given ``dfull`` on the canvas."""
    kh, kw, filters, cin = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    h, w = x.shape[1:3]
    x2 = x.reshape(-1, cin)
    dx = np.zeros_like(x) if input_grad else None
    dkernel = np.empty_like(kernel)
    for i in range(kh):
        for j in range(kw):
            part = dfull[window(i * dh, j * dw, h, w, sh, sw)]
            dkernel[i, j] = part.reshape(-1, filters).T @ x2
            if input_grad:
                dx += part @ kernel[i, j]
    return dx, dkernel


class Conv2DTranspose(Kernel):
    """Weights ``kernel (kh, kw, filters, in)`` then ``bias (filters,)`` if ``use_bias``."""

    kind = "Conv2DTranspose"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        rules = self.rules
        pad = (1,) * (2 - rules.rank)  # a 1-D layer runs on a height-1 image
        self.kernel_size, self.strides = pad + rules.kernel_size, pad + rules.strides
        self.dilation = pad + rules.dilation_rate
        activations.check(rules.activation)

    def _geometry(self, sizes):
        """Per image axis ``(crop, out)`` and the canvas size ``max(full, crop + out)``."""
        amounts = self.rules.amounts(sizes)
        if self.rules.rank == 1:
            amounts = [(0, 1, 1), *amounts]
        return [(c, o) for c, o, _ in amounts], tuple(max(f, c + o) for c, o, f in amounts)

    def forward(self, weights, x, ctx):
        x4 = x[:, None] if self.rules.rank == 1 else x
        crops, canvas = self._geometry(x.shape[1:-1])
        kernel = weights[0].reshape(self.kernel_size + weights[0].shape[-2:])
        full = conv2d_transpose(x4, kernel, self.strides, self.dilation, canvas)
        z = full[(slice(None), *(slice(c, c + o) for c, o in crops))]
        if self.rules.use_bias:
            z = z + weights[1]
        y = activations.forward(self.rules.activation, z)
        return (y[:, 0] if self.rules.rank == 1 else y), (x4, crops, canvas, z, y)

    def backward(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=True)

    def backward_weights(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=False)[1]

    def _backward(self, weights, cache, dy, input_grad: bool):
        x4, crops, canvas, z, y = cache
        dz = activations.backward(self.rules.activation, z, y, dy.reshape(z.shape))
        dfull = np.zeros((dz.shape[0], *canvas, dz.shape[-1]), dtype=dz.dtype)
        dfull[(slice(None), *(slice(c, c + o) for c, o in crops))] = dz
        kernel = weights[0].reshape(self.kernel_size + weights[0].shape[-2:])
        dx, dkernel = conv2d_transpose_backward(x4, kernel, dfull, self.strides, self.dilation, input_grad)
        dweights = [dkernel.reshape(weights[0].shape)]
        if self.rules.use_bias:
            dweights.append(dz.sum(axis=(0, 1, 2)))
        if not input_grad:
            return None, dweights
        return (dx[:, 0] if self.rules.rank == 1 else dx), dweights


class Conv1DTranspose(Conv2DTranspose):
    """``(batch, steps, channels)``; weights ``kernel (k, filters, in)`` then ``bias``."""

    kind = "Conv1DTranspose"
