"""Depthwise and separable convolutions (channels_last): the rules are
:mod:`polykeras.layer_rules.depthwise_conv`."""

from __future__ import annotations

from polykeras import activations, initializers, regularizers
from polykeras.layers.base import Layer, format_shape, serialize_regularizer
from polykeras.layers.conv import _data_format, _padding, _tuple, conv_output_length


class DepthwiseConv2D(Layer):
    """Each input channel convolved with ``depth_multiplier`` kernels of its own;
    weights ``kernel (kh, kw, in, depth_multiplier)`` and ``bias (in * depth_multiplier,)``."""

    rank = 2
    #: the constructor arguments of the kernels' initializers and regularizers, and Keras's weight names
    kernels = (("depthwise", "kernel"),)

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1, data_format=None,
                 dilation_rate=1, activation=None, use_bias: bool = True, bias_initializer="zeros",
                 bias_regularizer=None, **kwargs):
        inits = {p: initializers.get(kwargs.pop(f"{p}_initializer", "glorot_uniform")) for p, _ in self.kernels}
        regs = {p: regularizers.get(kwargs.pop(f"{p}_regularizer", None)) for p, _ in self.kernels}
        super().__init__(**kwargs)
        self.kernel_initializers, self.kernel_regularizers = inits, regs
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.depth_multiplier = int(depth_multiplier)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_ndim = (self.rank + 2,)

    def _kernel_shapes(self, in_channels: int) -> list[tuple]:
        return [self.kernel_size + (in_channels, self.depth_multiplier)]

    def _channels(self, in_channels: int) -> int:
        return in_channels * self.depth_multiplier

    def build(self, input_shape):
        for (prefix, name), shape in zip(self.kernels, self._kernel_shapes(input_shape[-1])):
            self._add_weight(name, shape, self.kernel_initializers[prefix], self.kernel_regularizers[prefix])
        if self.use_bias:
            self._add_weight("bias", (self._channels(input_shape[-1]),), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        spatial = tuple(conv_output_length(n, k, s, self.padding, d)
                        for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate))
        if any(n is not None and n <= 0 for n in spatial):
            raise ValueError(f"{type(self).__name__} {self.name!r}: kernel {self.kernel_size} does not fit input "
                             f"{format_shape(input_shape)} with padding={self.padding!r}")
        return (input_shape[0],) + spatial + (self._channels(input_shape[-1]),)

    def get_config(self):
        config = {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                  "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                  "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                  "activation": self.activation, "use_bias": self.use_bias}
        for prefix, _ in self.kernels:
            config[f"{prefix}_initializer"] = initializers.serialize(self.kernel_initializers[prefix])
            config[f"{prefix}_regularizer"] = serialize_regularizer(self.kernel_regularizers[prefix])
        return {**config, "bias_initializer": initializers.serialize(self.bias_initializer),
                "bias_regularizer": serialize_regularizer(self.bias_regularizer)}


class SeparableConv2D(DepthwiseConv2D):
    """A depthwise convolution, then a 1x1 one to ``filters`` channels; weights
    ``depthwise_kernel (kh, kw, in, depth_multiplier)``, ``pointwise_kernel (1, 1, in * depth_multiplier,
    filters)`` and ``bias (filters,)``."""

    kernels = (("depthwise", "depthwise_kernel"), ("pointwise", "pointwise_kernel"))

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier: int = 1, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, **kwargs)
        self.filters = int(filters)

    def _kernel_shapes(self, in_channels: int) -> list[tuple]:
        return [self.kernel_size + (in_channels, self.depth_multiplier),
                (1,) * self.rank + (in_channels * self.depth_multiplier, self.filters)]

    def _channels(self, in_channels: int) -> int:
        return self.filters

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class DepthwiseConv1D(DepthwiseConv2D):
    """1-D: weights ``kernel (k, in, depth_multiplier)`` and ``bias (in * depth_multiplier,)``."""

    rank = 1


class SeparableConv1D(SeparableConv2D):
    """1-D: weights ``depthwise_kernel (k, in, depth_multiplier)``, ``pointwise_kernel (1, in *
    depth_multiplier, filters)`` and ``bias (filters,)``."""

    rank = 1


# Keras's aliases
SeparableConvolution2D, SeparableConvolution1D = SeparableConv2D, SeparableConv1D
