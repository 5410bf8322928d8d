"""Core layers: Dense, Activation, Dropout, Flatten, Reshape."""

from __future__ import annotations

import math

from polykeras import activations
from polykeras.layers.base import Layer, format_shape
from polykeras.layers.kernel import KernelLayer


class Dense(KernelLayer):
    """``y = activation(x @ kernel + bias)`` on the last axis; kernel ``(in, units)``."""

    supports_masking = True

    def __init__(self, units: int, activation=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        if int(units) <= 0:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Dense layer {self.name!r} needs a known last input dimension, got {format_shape(input_shape)}")
        self._add_kernel_and_bias((input_shape[-1], self.units), self.units)

    def _check_input_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Dense layer {self.name!r} expects input of rank >= 2 (batch, features), got {format_shape(input_shape)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Activation(Layer):
    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class Dropout(Layer):
    """Inverted dropout in training; identity at inference."""

    supports_masking = True

    def __init__(self, rate: float, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= float(rate) < 1:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed}


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of ``(batch, steps, channels)`` inputs (one mask value per sample and channel)."""

    input_ndim = (3,)

    def __init__(self, rate: float, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["noise_shape"]  # Keras's spatial dropouts have none
        return config


class SpatialDropout2D(SpatialDropout1D):
    """Dropout of whole channels of NHWC inputs."""

    input_ndim = (4,)

    def __init__(self, rate: float, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        if data_format not in (None, "channels_last"):
            raise NotImplementedError(f"SpatialDropout2D data_format={data_format!r} is not supported; polykeras "
                                      "layers are channels_last")
        self.data_format = "channels_last"

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1:
            raise ValueError(f"Reshape target_shape may contain at most one -1, got {self.target_shape}")

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:]) if None not in input_shape[1:] else None
        target = list(self.target_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if size is not None:
                if size % known:
                    raise ValueError(f"Reshape {self.name!r}: cannot reshape {format_shape(input_shape)} to {self.target_shape}")
                target[target.index(-1)] = size // known
            else:
                target[target.index(-1)] = None
        elif size is not None and size != known:
            raise ValueError(
                f"Reshape {self.name!r}: input {format_shape(input_shape)} has {size} values per sample, "
                f"target_shape {self.target_shape} holds {known}"
            )
        return (input_shape[0],) + tuple(target)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}
