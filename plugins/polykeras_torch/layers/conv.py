"""Convolutions and pooling in torch, with Keras/TensorFlow semantics.

Layout: the canonical activations are channels_last (NHWC / NLC), torch's
kernels want NCHW / NCL. ``x.permute(0, 3, 1, 2)`` of an NHWC tensor is an
NCHW tensor in *channels_last memory format* -- a free view, which torch's
CPU (oneDNN) and GPU convolutions and poolings accept and answer in the same
memory format. Permuting the result back to NHWC is again a free view, so a
Conv-Conv-Pool-Flatten stack moves no data for layout changes, and Flatten
sees NHWC order, the order Keras's Dense kernel rows follow.

Padding is TensorFlow's (:func:`polykeras.layer_rules.padding_amounts`):
``"same"`` puts the odd extra row/column at the end, which torch's symmetric
``padding=`` cannot express, so asymmetric cases pad explicitly with
``F.pad`` (``-inf`` for max pooling; average pooling then divides by the
number of real elements per window, as ``tf.nn.avg_pool`` does). Symmetric
cases use torch's built-in padding, which is the same computation.

Kernels are held in torch's layout: Conv2D ``(filters, in, kh, kw)`` (OIHW)
from Keras's HWIO, Conv1D ``(filters, in, k)`` from ``(k, in, filters)``
(``in // groups`` for a grouped convolution, ``groups=`` in torch: both
frameworks split channels and filters into contiguous blocks).
Convolution is cross-correlation in both frameworks: no kernel flip.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from .. import activations
from .base import TorchLayer


def _pads(rules, spec) -> tuple[list[tuple[int, int]], list[int]]:
    """``[(before, after), ...]`` and output sizes for each spatial axis of
    ``spec``'s input, by the layer's rules."""
    amounts = rules.padding_amounts(spec.input_shape[1:-1])
    return [a[:2] for a in amounts], [a[2] for a in amounts]


def _torch_padding(pads: list[tuple[int, int]], kernel) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """Split TF padding into what torch's ``padding=`` can do (symmetric, at
    most half the window) and an explicit ``F.pad`` spec for the rest
    (``None`` when nothing is left)."""
    if all(b == a and b <= k // 2 for (b, a), k in zip(pads, kernel)):
        return None, tuple(b for b, _ in pads)
    flat = tuple(v for before_after in reversed(pads) for v in before_after)  # F.pad: last axis first
    return flat, (0,) * len(pads)


class Conv2D(TorchLayer):
    kind = "Conv2D"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        self.activation = activations.get(rules.activation)
        self.strides, self.dilation = rules.strides, rules.dilation_rate
        pads, _ = _pads(rules, spec)
        self.explicit_pad, self.padding = _torch_padding(
            pads, [(k - 1) * d + 1 for k, d in zip(rules.kernel_size, self.dilation)])

    def to_native(self, weights):  # HWIO -> OIHW
        return [np.ascontiguousarray(weights[0].transpose(3, 2, 0, 1)), *weights[1:]]

    def to_canonical(self, arrays):  # OIHW -> HWIO
        return [np.ascontiguousarray(arrays[0].transpose(2, 3, 1, 0)), *arrays[1:]]

    def forward(self, params, x, ctx):
        xn = x.permute(0, 3, 1, 2)  # NHWC -> NCHW view (channels_last memory)
        if self.explicit_pad is not None:
            xn = F.pad(xn, self.explicit_pad)
        z = F.conv2d(xn, params[0], params[1] if self.rules.use_bias else None, self.strides, self.padding,
                     self.dilation, self.rules.groups)
        return self.activation(z.permute(0, 2, 3, 1))


class Conv1D(Conv2D):
    """``(batch, steps, channels)``; ``"causal"`` pads ``(k-1)*dilation`` in front."""

    kind = "Conv1D"

    def to_native(self, weights):  # (k, in, out) -> (out, in, k)
        return [np.ascontiguousarray(weights[0].transpose(2, 1, 0)), *weights[1:]]

    def to_canonical(self, arrays):
        return [np.ascontiguousarray(arrays[0].transpose(2, 1, 0)), *arrays[1:]]

    def forward(self, params, x, ctx):
        xn = x.permute(0, 2, 1)
        if self.explicit_pad is not None:
            xn = F.pad(xn, self.explicit_pad)
        z = F.conv1d(xn, params[0], params[1] if self.rules.use_bias else None, self.strides, self.padding,
                     self.dilation, self.rules.groups)
        return self.activation(z.permute(0, 2, 1))


class _Pooling(TorchLayer):
    """Window geometry shared by the pooling layers (1-D runs as 1-D in torch)."""

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.window, self.strides = self.rules.pool_size, self.rules.strides
        self.pads, self.out_sizes = _pads(self.rules, spec)
        self.explicit_pad, self.padding = _torch_padding(self.pads, self.window)

    def _to_channels_first(self, x):
        return x.permute(0, 3, 1, 2) if self.rules.rank == 2 else x.permute(0, 2, 1)

    def _to_channels_last(self, y):
        return y.permute(0, 2, 3, 1) if self.rules.rank == 2 else y.permute(0, 2, 1)


class MaxPooling2D(_Pooling):
    """Max pooling; padding never wins (``-inf``). Ties send the gradient to
    the first maximum in row-major window order in torch's CPU kernel, as in
    the reference."""

    kind = "MaxPooling2D"

    def forward(self, params, x, ctx):
        xn = self._to_channels_first(x)
        if self.explicit_pad is not None:
            xn = F.pad(xn, self.explicit_pad, value=float("-inf"))
        pool = F.max_pool2d if self.rules.rank == 2 else F.max_pool1d
        return self._to_channels_last(pool(xn, self.window, self.strides, self.padding))


class MaxPooling1D(MaxPooling2D):
    kind = "MaxPooling1D"


class AveragePooling2D(_Pooling):
    """Mean over the *real* elements of each window (``count_include_pad=False``
    where torch can pad; else zero-pad, pool, and rescale by the counts)."""

    kind = "AveragePooling2D"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.rescale = None
        if self.explicit_pad is not None:
            counts = self.rules.real_counts(spec.input_shape[1:-1])
            self.rescale = self.constant(np.prod(self.window) / counts)  # (1, *out_sizes, 1)

    def forward(self, params, x, ctx):
        xn = self._to_channels_first(x)
        if self.explicit_pad is not None:
            xn = F.pad(xn, self.explicit_pad)
        pool = F.avg_pool2d if self.rules.rank == 2 else F.avg_pool1d
        y = self._to_channels_last(pool(xn, self.window, self.strides, self.padding, count_include_pad=False))
        return y if self.rescale is None else y * self.rescale


class AveragePooling1D(AveragePooling2D):
    kind = "AveragePooling1D"


class GlobalAveragePooling2D(TorchLayer):
    kind = "GlobalAveragePooling2D"

    def forward(self, params, x, ctx):
        return x.mean(dim=self.rules.axes, keepdim=self.rules.keepdims)


class GlobalAveragePooling1D(GlobalAveragePooling2D):
    """With a mask, Keras's mean of the unmasked steps, ``sum(x * m) / sum(m)``."""

    kind = "GlobalAveragePooling1D"

    def forward(self, params, x, ctx):
        if ctx.mask is None:
            return super().forward(params, x, ctx)
        m = ctx.mask.to(x.dtype)[:, :, None]
        keep = self.rules.keepdims
        return (x * m).sum(dim=1, keepdim=keep) / m.sum(dim=1, keepdim=keep)


class GlobalMaxPooling2D(TorchLayer):
    """``amax`` over the spatial axes: its gradient shares a tie equally, as the reference's."""

    kind = "GlobalMaxPooling2D"

    def forward(self, params, x, ctx):
        return x.amax(dim=self.rules.axes, keepdim=self.rules.keepdims)


class GlobalMaxPooling1D(GlobalMaxPooling2D):
    kind = "GlobalMaxPooling1D"
