"""Convolution and pooling layers (channels_last, as Keras's default)."""

from __future__ import annotations

from polykeras.layers.base import Layer, format_shape
from polykeras.layers.kernel import KernelLayer


def _tuple(value, n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value}")
    return value


def _padding(value: str, allowed=("valid", "same")) -> str:
    value = str(value).lower()
    if value not in allowed:
        raise ValueError(f"padding must be one of {', '.join(allowed)}, got {value!r}")
    return value


def conv_output_length(length, kernel: int, stride: int, padding: str, dilation: int = 1):
    """Keras's output length of a convolution or pooling window along one axis."""
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding in ("same", "causal"):
        return -(-length // stride)
    return (length - effective) // stride + 1


def _data_format(value):
    if value not in (None, "channels_last"):
        raise NotImplementedError(f"data_format={value!r} is not supported; polykeras layers are channels_last")
    return "channels_last"


class _Conv(KernelLayer):
    rank = 0
    paddings = ("valid", "same")

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups: int = 1, activation=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding, self.paddings)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        self.groups = int(groups)
        if self.groups <= 0 or self.filters % self.groups:
            raise ValueError(f"groups must be a positive int dividing filters={self.filters}, got {groups}")
        self.input_ndim = (self.rank + 2,)

    def build(self, input_shape):
        if input_shape[-1] % self.groups:
            raise ValueError(f"{type(self).__name__} {self.name!r}: groups={self.groups} does not divide the "
                             f"{input_shape[-1]} input channels")
        self._add_kernel_and_bias(self.kernel_size + (input_shape[-1] // self.groups, self.filters), self.filters)

    def compute_output_shape(self, input_shape):
        spatial = tuple(
            conv_output_length(n, k, s, self.padding, d)
            for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)
        )
        if any(n is not None and n <= 0 for n in spatial):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: kernel {self.kernel_size} does not fit input "
                f"{format_shape(input_shape)} with padding={self.padding!r}"
            )
        return (input_shape[0],) + spatial + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups}


class Conv2D(_Conv):
    """2-D cross-correlation, kernel ``(kh, kw, in, filters)``, input NHWC."""

    rank = 2


class Conv1D(_Conv):
    """1-D cross-correlation, kernel ``(k, in, filters)``, input ``(batch, steps, channels)``."""

    rank = 1
    paddings = ("valid", "same", "causal")


class _Pooling(Layer):
    rank = 0
    default_pool = 2

    def __init__(self, pool_size=None, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _tuple(self.default_pool if pool_size is None else pool_size, self.rank, "pool_size")
        self.strides = self.pool_size if strides is None else _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)
        self.input_ndim = (self.rank + 2,)

    def compute_output_shape(self, input_shape):
        spatial = tuple(conv_output_length(n, k, s, self.padding)
                        for n, k, s in zip(input_shape[1:-1], self.pool_size, self.strides))
        if any(n is not None and n <= 0 for n in spatial):
            raise ValueError(f"{type(self).__name__} {self.name!r}: pool {self.pool_size} does not fit input "
                             f"{format_shape(input_shape)}")
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling2D(_Pooling):
    rank = 2


class AveragePooling2D(_Pooling):
    rank = 2


class MaxPooling1D(_Pooling):
    rank = 1


class AveragePooling1D(_Pooling):
    rank = 1


class _GlobalPooling(Layer):
    rank = 0

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.keepdims = bool(keepdims)
        self.input_ndim = (self.rank + 2,)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling):
    rank = 2


class GlobalAveragePooling1D(_GlobalPooling):
    rank = 1
    reads_mask = True  # the mean of the unmasked steps (polykeras.layers.masking)


class GlobalMaxPooling2D(_GlobalPooling):
    rank = 2


class GlobalMaxPooling1D(_GlobalPooling):
    rank = 1


# Keras's aliases
Convolution2D, Convolution1D = Conv2D, Conv1D
MaxPool2D, MaxPool1D, AvgPool2D, AvgPool1D = MaxPooling2D, MaxPooling1D, AveragePooling2D, AveragePooling1D
GlobalAvgPool2D, GlobalAvgPool1D = GlobalAveragePooling2D, GlobalAveragePooling1D
GlobalMaxPool2D, GlobalMaxPool1D = GlobalMaxPooling2D, GlobalMaxPooling1D
