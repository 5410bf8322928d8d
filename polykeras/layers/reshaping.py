"""Padding, cropping, upsampling and shape layers (channels_last, as Keras's
default); the rules are :mod:`polykeras.layer_rules.reshaping`."""

from __future__ import annotations

from polykeras.layers.base import Layer
from polykeras.layers.conv import _data_format
from polykeras.spec import LayerSpec


def _rules(layer: Layer, input_shape):
    """The core's rules for ``layer`` on ``input_shape``: one reading of the config for the API and every backend."""
    from polykeras.layer_rules import rules_for

    spec = LayerSpec(name=layer.name, kind=layer.kind, config=layer.get_config(), inbound=("input",),
                     input_shapes=(tuple(input_shape),), output_shape=(None,))
    return rules_for(spec)


class _RuleShaped(Layer):
    """A weightless layer whose output shape is its rules'."""

    def compute_output_shape(self, input_shape):
        return _rules(self, input_shape).output_shape(tuple(input_shape))


def _pairs(value, rank: int, what: str):
    """Keras's normal form: a pair for 1-D layers, a pair of pairs for 2-D ones."""
    from polykeras.layer_rules.reshaping import amounts

    pairs = amounts(value, rank, what, what)
    return pairs[0] if rank == 1 else pairs


class ZeroPadding2D(_RuleShaped):
    rank = 2
    input_ndim = (4,)

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, self.rank, "padding")
        self.data_format = _data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding1D(ZeroPadding2D):
    rank = 1
    input_ndim = (3,)

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(_RuleShaped):
    rank = 2
    input_ndim = (4,)

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, self.rank, "cropping")
        self.data_format = _data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping, "data_format": self.data_format}


class Cropping1D(_RuleShaped):
    input_ndim = (3,)

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, 1, "cropping")

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class UpSampling2D(_RuleShaped):
    input_ndim = (4,)

    def __init__(self, size=(2, 2), data_format=None, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = (int(size),) * 2 if isinstance(size, int) else tuple(int(s) for s in size)
        self.data_format = _data_format(data_format)
        self.interpolation = str(interpolation).lower()

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}


class UpSampling1D(_RuleShaped):
    input_ndim = (3,)

    def __init__(self, size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class RepeatVector(_RuleShaped):
    input_ndim = (2,)

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class Permute(_RuleShaped):
    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        self.input_ndim = (len(self.dims) + 1,)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class Identity(Layer):
    """Returns its input (a placeholder layer)."""

    supports_masking = True


class Rescaling(_RuleShaped):
    """``x * scale + offset`` (numbers, or arrays that broadcast against a sample)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = _plain(scale), _plain(offset)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _plain(value):
    """A number as a float, an array as nested lists (a JSON-able config, as Keras serialises it)."""
    import numpy as np

    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value.tolist()


RESHAPING_LAYERS = (ZeroPadding1D, ZeroPadding2D, Cropping1D, Cropping2D, UpSampling1D, UpSampling2D, RepeatVector,
                    Permute, Identity, Rescaling)
