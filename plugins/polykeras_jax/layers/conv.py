"""Convolutions and pooling (Keras 3 / TensorFlow semantics, channels_last;
the rules -- config, padding amounts -- are :mod:`polykeras.layer_rules.conv`).

* Convolution is cross-correlation (the kernel is not flipped), which is what
  ``lax.conv_general_dilated`` computes; kernels are HWIO (``WIO`` in 1-D),
  the canonical layout, so no transposition happens at the boundary; a
  grouped convolution is ``feature_group_count=groups`` on the same kernel
  ``(*kernel_size, in // groups, filters)``.
* Padding amounts are TensorFlow's, from the rules, passed to XLA
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
from .base import Layer

#: ``lax.conv_general_dilated`` dimension numbers for 1-D and 2-D channels_last data.
_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def _pads(rules, shape) -> list[tuple[int, int]]:
    """``(before, after)`` padding of each spatial axis of an input of ``shape``."""
    return [(before, after) for before, after, _ in rules.padding_amounts(shape[1:-1])]


class Conv2D(Layer):
    """N-D convolution; weights ``kernel (*kernel_size, in, filters)``, then ``bias``."""

    kind = "Conv2D"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.activation = activations.get(self.rules.activation)

    def __call__(self, weights, x, ctx):
        rules = self.rules
        z = lax.conv_general_dilated(x, weights[0], window_strides=rules.strides, padding=_pads(rules, x.shape),
                                     rhs_dilation=rules.dilation_rate, dimension_numbers=_DIMENSIONS[rules.rank],
                                     feature_group_count=rules.groups)
        if rules.use_bias:
            z = z + weights[1]
        return self.activation(z)


class Conv1D(Conv2D):
    kind = "Conv1D"


class MaxPooling2D(Layer):
    """Max over ``pool_size`` windows (``strides`` default to ``pool_size``)."""

    kind = "MaxPooling2D"

    def _window(self, shape):
        """``(dimensions, strides, padding)`` of ``lax.reduce_window`` on an input of ``shape``."""
        rules = self.rules
        return (1, *rules.pool_size, 1), (1, *rules.strides, 1), ((0, 0), *_pads(rules, shape), (0, 0))

    def __call__(self, weights, x, ctx):
        # -inf is max's identity, so JAX lowers this to reduce_window_max (which has a gradient rule).
        return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, *self._window(x.shape))


class MaxPooling1D(MaxPooling2D):
    kind = "MaxPooling1D"


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


class AveragePooling1D(AveragePooling2D):
    kind = "AveragePooling1D"


class GlobalAveragePooling2D(Layer):
    """Mean over the spatial axes (``keepdims`` keeps them with size 1)."""

    kind = "GlobalAveragePooling2D"

    def __call__(self, weights, x, ctx):
        return jnp.mean(x, axis=self.rules.axes, keepdims=self.rules.keepdims)


class GlobalAveragePooling1D(GlobalAveragePooling2D):
    """With a mask, Keras's mean of the unmasked steps, ``sum(x * m) / sum(m)``."""

    kind = "GlobalAveragePooling1D"

    def __call__(self, weights, x, ctx):
        if ctx.mask is None:
            return super().__call__(weights, x, ctx)
        m = ctx.mask.astype(x.dtype)[:, :, None]
        keep = self.rules.keepdims
        return jnp.sum(x * m, axis=1, keepdims=keep) / jnp.sum(m, axis=1, keepdims=keep)


class GlobalMaxPooling2D(Layer):
    """Max over the spatial axes; ``jnp.max``'s gradient shares a tie equally, as the reference's."""

    kind = "GlobalMaxPooling2D"

    def __call__(self, weights, x, ctx):
        return jnp.max(x, axis=self.rules.axes, keepdims=self.rules.keepdims)


class GlobalMaxPooling1D(GlobalMaxPooling2D):
    kind = "GlobalMaxPooling1D"
