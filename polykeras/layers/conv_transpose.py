"""Transposed convolutions (channels_last): the rules, output sizes included,
are :mod:`polykeras.layer_rules.conv_transpose`."""

from __future__ import annotations

from polykeras.layers.conv import _data_format, _padding, _tuple
from polykeras.layers.kernel import KernelLayer
from polykeras.layer_rules.conv_transpose import transpose_amounts


class _ConvTranspose(KernelLayer):
    rank = 0

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.output_padding = None if output_padding is None else _tuple(output_padding, self.rank, "output_padding")
        self.data_format = _data_format(data_format)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        self.input_ndim = (self.rank + 2,)

    def build(self, input_shape):
        # Keras's layout: the output channels before the input channels
        self._add_kernel_and_bias(self.kernel_size + (self.filters, input_shape[-1]), self.filters)

    def compute_output_shape(self, input_shape):
        ops = self.output_padding or (None,) * self.rank
        spatial = tuple(None if n is None else transpose_amounts(n, k, s, d, self.padding, p, self.name)[1]
                        for n, k, s, d, p in zip(input_shape[1:-1], self.kernel_size, self.strides,
                                                 self.dilation_rate, ops))
        return (input_shape[0],) + spatial + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate}


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution, kernel ``(kh, kw, filters, in)``, input NHWC."""

    rank = 2


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution, kernel ``(k, filters, in)``, input ``(batch, steps, channels)``."""

    rank = 1


# Keras's aliases
Convolution2DTranspose, Convolution1DTranspose = Conv2DTranspose, Conv1DTranspose
