"""Convolutions: Conv1D and Conv2D (Keras 3 / TensorFlow semantics).

* Cross-correlation, as Keras and TensorFlow compute it: the kernel is *not*
  flipped. ``y[n, p, q, f] = sum_{i, j, c} x[n, p*sh + i*dh, q*sw + j*dw, c]
  * kernel[i, j, c, f]`` on the padded input.
* channels_last only: inputs ``(batch, H, W, C)`` / ``(batch, steps, C)``,
  kernels ``(kh, kw, in, filters)`` / ``(k, in, filters)``.
* ``"same"`` padding is TensorFlow's: ``out = ceil(in / stride)``, the total
  padding ``max((out - 1) * stride + k_eff - in, 0)`` is split with the
  smaller half *before* (top/left) and the rest after, where
  ``k_eff = (k - 1) * dilation + 1``. ``"causal"`` (Conv1D) pads
  ``(k - 1) * dilation`` on the left only.
* ``dilation_rate`` is supported; ``groups`` other than 1 is not.

The implementation loops over kernel positions (a handful) and does one
matrix product per position over the whole batch, which reads like the
formula above. Conv1D is Conv2D on a height-1 image.

:func:`padding_amounts` and :func:`window` are shared with the pooling layers.
"""

from __future__ import annotations

import numpy as np

from .. import activations
from .base import Kernel


def as_tuple(value, n: int, what: str, layer: str) -> tuple[int, ...]:
    """Accept an int or a length-``n`` list/tuple (config after JSON) and return a tuple."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) != n:
        raise ValueError(f"layer {layer!r}: {what} must have {n} entries, got {value!r}")
    return values


def padding_amounts(size: int, k: int, stride: int, dilation: int, padding: str, layer: str) -> tuple[int, int, int]:
    """Return ``(pad_before, pad_after, out_size)`` along one spatial axis."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        before = after = 0
        out = (size - k_eff) // stride + 1
    elif padding == "same":
        out = -(-size // stride)  # ceil
        total = max((out - 1) * stride + k_eff - size, 0)
        before, after = total // 2, total - total // 2
    elif padding == "causal":
        before, after = k_eff - 1, 0
        out = (size + before - k_eff) // stride + 1
    else:
        raise ValueError(f"layer {layer!r}: unknown padding {padding!r}; expected 'valid', 'same' or 'causal'")
    if out <= 0:
        raise ValueError(
            f"layer {layer!r}: input size {size} is too small for a window of {k_eff} "
            f"with padding={padding!r}"
        )
    return before, after, out


def window(i0: int, j0: int, out_h: int, out_w: int, sh: int, sw: int) -> tuple[slice, ...]:
    """Index of the ``(batch, out_h, out_w, C)`` strided view that kernel
    position ``(i0, j0)`` (already multiplied by the dilation) sees on the
    padded input."""
    return (
        slice(None),
        slice(i0, i0 + (out_h - 1) * sh + 1, sh),
        slice(j0, j0 + (out_w - 1) * sw + 1, sw),
    )


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
    rank = 2

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg, name, n = self.config, spec.name, self.rank
        self.filters = int(cfg["filters"])
        kernel_size = as_tuple(cfg["kernel_size"], n, "kernel_size", name)
        strides = as_tuple(cfg.get("strides", 1), n, "strides", name)
        dilation = as_tuple(cfg.get("dilation_rate", 1), n, "dilation_rate", name)
        # A 1-D convolution is a 2-D one on a height-1 image with a height-1 kernel.
        pad = (1,) * (2 - n)
        self.kernel_size, self.strides, self.dilation = pad + kernel_size, pad + strides, pad + dilation
        self.padding = str(cfg.get("padding", "valid")).lower()
        allowed = ("valid", "same", "causal") if n == 1 else ("valid", "same")
        if self.padding not in allowed:
            raise ValueError(f"{self.kind} layer {name!r}: padding={self.padding!r}; expected one of {allowed}")
        data_format = cfg.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise NotImplementedError(
                f"{self.kind} layer {name!r}: data_format={data_format!r} is not supported by the "
                "NumPy reference; use 'channels_last' (the canonical layout)"
            )
        groups = int(cfg.get("groups", 1) or 1)
        if groups != 1:
            raise NotImplementedError(f"{self.kind} layer {name!r}: groups={groups} is not supported; only groups=1")
        self.activation = cfg.get("activation", "linear")
        activations.check(self.activation)
        self.use_bias = bool(cfg.get("use_bias", True))

    def _image_kernel(self, kernel):
        """The kernel as HWIO (a no-op for Conv2D; adds kh = 1 for Conv1D)."""
        return kernel.reshape(self.kernel_size + kernel.shape[-2:])

    def forward(self, weights, x, ctx):
        x4 = x[:, None] if self.rank == 1 else x
        # (before, after, out) for height and width; for Conv1D the height
        # axis has size 1 and a size-1 window, so it is never padded.
        amounts = [
            padding_amounts(size, k, s, d, self.padding, self.spec.name)
            for size, k, s, d in zip(x4.shape[1:3], self.kernel_size, self.strides, self.dilation)
        ]
        pads = [a[:2] for a in amounts]
        xp = np.pad(x4, ((0, 0), *pads, (0, 0)))
        out_hw = (amounts[0][2], amounts[1][2])
        z = conv2d(xp, self._image_kernel(weights[0]), self.strides, self.dilation, out_hw)
        if self.use_bias:
            z = z + weights[1]
        y = activations.forward(self.activation, z)
        return (y[:, 0] if self.rank == 1 else y), (xp, pads, z, y)

    def backward(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=True)

    def backward_weights(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=False)[1]

    def _backward(self, weights, cache, dy, input_grad: bool):
        xp, pads, z, y = cache
        dz = activations.backward(self.activation, z, y, dy.reshape(z.shape))
        dxp, dkernel = conv2d_backward(xp, self._image_kernel(weights[0]), dz, self.strides, self.dilation,
                                       input_grad)
        dweights = [dkernel.reshape(weights[0].shape)]
        if self.use_bias:
            dweights.append(dz.sum(axis=(0, 1, 2)))
        if not input_grad:
            return None, dweights
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right]
        return (dx[:, 0] if self.rank == 1 else dx), dweights


class Conv1D(Conv2D):
    """1-D convolution over ``(batch, steps, channels)``; padding valid, same or
    causal. Weights ``kernel (k, in, filters)`` then ``bias (filters,)``."""

    kind = "Conv1D"
    rank = 1
