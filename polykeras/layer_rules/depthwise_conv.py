"""Depthwise and separable convolutions: DepthwiseConv1D/2D and
SeparableConv1D/2D (Keras 3 / TensorFlow semantics, channels_last).

* DepthwiseConv2D convolves each input channel ``c`` on its own with
  ``depth_multiplier`` kernels: output channel ``c * depth_multiplier + m`` is
  ``sum_{i, j} x[p*sh + i*dh, q*sw + j*dw, c] * kernel[i, j, c, m]`` on the
  padded input (TensorFlow's channel order). Its weights are Keras's
  ``kernel (kh, kw, in, depth_multiplier)`` and ``bias (in * depth_multiplier,)``.
* SeparableConv2D is that depthwise convolution followed by a 1x1
  convolution, then the bias and the activation: weights
  ``depthwise_kernel (kh, kw, in, depth_multiplier)``, ``pointwise_kernel (1,
  1, in * depth_multiplier, filters)``, ``bias (filters,)``.
* Window, strides, dilation and padding (``valid``/``same``) are those of the
  other convolutions: :func:`~polykeras.layer_rules.padding_amounts`.
* The 1-D layers are the same along one axis: ``kernel (k, in, depth_multiplier)``,
  ``pointwise_kernel (1, in * depth_multiplier, filters)``.
"""

from __future__ import annotations

from polykeras.spec import Shape

from .base import as_tuple
from .conv import _Windowed


class DepthwiseConv2DRules(_Windowed):
    """``kernel_size``/``strides``/``dilation_rate`` (tuples of ``rank`` ints),
    ``padding``, ``depth_multiplier``, ``activation``, ``use_bias``;
    ``channels`` is the number of output channels for ``in`` input channels."""

    kind = "DepthwiseConv2D"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg, name, n = self.config, self.name, self.rank
        self.kernel_size = as_tuple(cfg["kernel_size"], n, "kernel_size", name)
        self.strides = as_tuple(cfg.get("strides", 1), n, "strides", name)
        self.dilation_rate = as_tuple(cfg.get("dilation_rate", 1), n, "dilation_rate", name)
        self.window_size = self.kernel_size
        self.padding = self._read_padding()
        self.require_channels_last()
        self.depth_multiplier = int(cfg.get("depth_multiplier", 1))
        if self.depth_multiplier <= 0:
            raise ValueError(f"{spec.kind} layer {name!r}: depth_multiplier={self.depth_multiplier}; expected a "
                             "positive int")
        self.activation = cfg.get("activation", "linear")
        self.use_bias = bool(cfg.get("use_bias", True))

    def channels(self, in_channels: int) -> int:
        return in_channels * self.depth_multiplier

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0],) + self._spatial_output(input_shape) + (self.channels(input_shape[-1]),)


class SeparableConv2DRules(DepthwiseConv2DRules):
    """The depthwise rules and ``filters``, the channels of the pointwise convolution."""

    kind = "SeparableConv2D"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.filters = int(self.config["filters"])

    def channels(self, in_channels: int) -> int:
        return self.filters


class DepthwiseConv1DRules(DepthwiseConv2DRules):
    kind = "DepthwiseConv1D"
    rank = 1


class SeparableConv1DRules(SeparableConv2DRules):
    kind = "SeparableConv1D"
    rank = 1
