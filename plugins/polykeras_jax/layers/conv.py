"""Convolutions and pooling (Keras 3 / TensorFlow semantics, channels_last),
as :mod:`polykeras_numpy.layers.conv` and ``.pooling`` define them.

* Convolution is cross-correlation (the kernel is not flipped), which is what
  ``lax.conv_general_dilated`` computes; kernels are HWIO (``WIO`` in 1-D),
  the canonical layout, so no transposition happens at the boundary.
* Padding amounts are computed here, TensorFlow's way, and passed to XLA
  explicitly: ``"same"`` gives ``out = ceil(in / stride)`` with the smaller
  half of the padding before; ``"causal"`` (Conv1D) pads ``(k-1)*dilation``
  on the left only. (XLA's ``"SAME"`` string agrees with TF for convolutions;
  explicit pairs make the rule visible and serve ``"causal"`` too.)
* Max pooling pads with ``-inf`` (``lax.reduce_window`` pads with its init
  value); average pooling divides each window's sum by the number of *real*
  elements in it, as ``tf.nn.avg_pool`` does.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import activations
from .base import Layer, as_tuple, channels_last

#: ``lax.conv_general_dilated`` dimension numbers for 1-D and 2-D channels_last data.
_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def padding_amounts(size: int, k: int, stride: int, dilation: int, padding: str, layer: str) -> tuple[int, int]:
    """``(before, after)`` padding along one spatial axis, TensorFlow's rule."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        before = after = 0
        out = (size - k_eff) // stride + 1
    elif padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + k_eff - size, 0)
        before, after = total // 2, total - total // 2
    elif padding == "causal":
        before, after = k_eff - 1, 0
        out = (size + before - k_eff) // stride + 1
    else:
        raise ValueError(f"layer {layer!r}: unknown padding {padding!r}; expected 'valid', 'same' or 'causal'")
    if out <= 0:
        raise ValueError(f"layer {layer!r}: input size {size} is too small for a window of {k_eff} "
                         f"with padding={padding!r}")
    return before, after


class Conv2D(Layer):
    """N-D convolution; weights ``kernel (*kernel_size, in, filters)``, then ``bias``."""

    kind = "Conv2D"
    rank = 2

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg, name, n = self.config, spec.name, self.rank
        self.kernel_size = as_tuple(cfg["kernel_size"], n, "kernel_size", name)
        self.strides = as_tuple(cfg.get("strides", 1), n, "strides", name)
        self.dilation = as_tuple(cfg.get("dilation_rate", 1), n, "dilation_rate", name)
        self.padding = str(cfg.get("padding", "valid")).lower()
        allowed = ("valid", "same", "causal") if n == 1 else ("valid", "same")
        if self.padding not in allowed:
            raise ValueError(f"{self.kind} layer {name!r}: padding={self.padding!r}; expected one of {allowed}")
        channels_last(self)
        if int(cfg.get("groups", 1) or 1) != 1:
            raise NotImplementedError(f"{self.kind} layer {name!r}: groups={cfg['groups']} is not supported; only 1")
        self.activation = activations.get(cfg.get("activation", "linear"))
        self.use_bias = bool(cfg.get("use_bias", True))

    def __call__(self, weights, x, ctx):
        pads = [padding_amounts(size, k, s, d, self.padding, self.spec.name)
                for size, k, s, d in zip(x.shape[1:-1], self.kernel_size, self.strides, self.dilation)]
        z = lax.conv_general_dilated(x, weights[0], window_strides=self.strides, padding=pads,
                                     rhs_dilation=self.dilation, dimension_numbers=_DIMENSIONS[self.rank])
        if self.use_bias:
            z = z + weights[1]
        return self.activation(z)


class Conv1D(Conv2D):
    kind = "Conv1D"
    rank = 1


class MaxPooling2D(Layer):
    """Max over ``pool_size`` windows (``strides`` default to ``pool_size``)."""

    kind = "MaxPooling2D"
    rank = 2

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg, name, n = self.config, spec.name, self.rank
        self.pool_size = as_tuple(cfg.get("pool_size", 2), n, "pool_size", name)
        strides = cfg.get("strides")
        self.strides = self.pool_size if strides is None else as_tuple(strides, n, "strides", name)
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"{self.kind} layer {name!r}: padding={self.padding!r}; expected 'valid' or 'same'")
        channels_last(self)

    def _window(self, shape):
        """``(dimensions, strides, padding)`` of ``lax.reduce_window`` on an input of ``shape``."""
        pads = [padding_amounts(size, p, s, 1, self.padding, self.spec.name)
                for size, p, s in zip(shape[1:-1], self.pool_size, self.strides)]
        return (1, *self.pool_size, 1), (1, *self.strides, 1), ((0, 0), *pads, (0, 0))

    def __call__(self, weights, x, ctx):
        # -inf is max's identity, so JAX lowers this to reduce_window_max (which has a gradient rule).
        return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, *self._window(x.shape))


class MaxPooling1D(MaxPooling2D):
    kind = "MaxPooling1D"
    rank = 1


class AveragePooling2D(MaxPooling2D):
    """Mean over windows, counting only the real (non-padded) elements."""

    kind = "AveragePooling2D"

    def __call__(self, weights, x, ctx):
        window = self._window(x.shape)
        zero = np.array(0, x.dtype)
        sums = lax.reduce_window(x, zero, lax.add, *window)
        ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)  # a constant: XLA folds the counts
        counts = lax.reduce_window(ones, zero, lax.add, *window)
        return sums / counts


class GlobalAveragePooling2D(Layer):
    """Mean over the spatial axes (``keepdims`` keeps them with size 1)."""

    kind = "GlobalAveragePooling2D"
    axes: tuple[int, ...] = (1, 2)

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.keepdims = bool(self.config.get("keepdims", False))
        channels_last(self)

    def __call__(self, weights, x, ctx):
        return jnp.mean(x, axis=self.axes, keepdims=self.keepdims)


class GlobalAveragePooling1D(GlobalAveragePooling2D):
    kind = "GlobalAveragePooling1D"
    axes = (1,)
