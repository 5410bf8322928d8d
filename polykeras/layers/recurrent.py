"""Recurrent layers: SimpleRNN, LSTM (gates i, f, c, o) and GRU (gates z, r,
h; ``reset_after=True`` by default, as Keras 3), with Keras's weight layout:
kernel ``(in, n*units)``, recurrent_kernel ``(units, n*units)``, separate bias."""

from __future__ import annotations

import numpy as np

from polykeras import activations, initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer


class _RNN(Layer):
    gates = 1
    input_ndim = (3,)
    # masked steps are skipped (polykeras.layers.masking); the sequence output keeps the mask
    supports_masking = True
    reads_mask = True

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
                 unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        if return_state:
            raise NotImplementedError(f"{type(self).__name__}(return_state=True) is not supported yet")
        if stateful:
            raise NotImplementedError(f"{type(self).__name__}(stateful=True) is not supported yet")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= float(rate) < 1:
                raise ValueError(f"{type(self).__name__} {what} must be in [0, 1), got {rate!r}")
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = False
        self.go_backwards = bool(go_backwards)
        self.stateful, self.unroll = False, bool(unroll)

    def _bias_shape(self):
        return (self.gates * self.units,)

    def build(self, input_shape):
        n = self.gates * self.units
        self._add_weight("kernel", (input_shape[-1], n), self.kernel_initializer, self.kernel_regularizer)
        self._add_weight("recurrent_kernel", (self.units, n), self.recurrent_initializer, self.recurrent_regularizer)
        if self.use_bias:
            index = self._add_weight("bias", self._bias_shape(), self.bias_initializer, self.bias_regularizer)
            self._adjust_bias(self._weight_values[index])

    def _adjust_bias(self, bias: np.ndarray) -> None:
        """Hook for LSTM's ``unit_forget_bias``."""

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": serialize_regularizer(self.kernel_regularizer),
                "recurrent_regularizer": serialize_regularizer(self.recurrent_regularizer),
                "bias_regularizer": serialize_regularizer(self.bias_regularizer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll}


class SimpleRNN(_RNN):
    gates = 1


class LSTM(_RNN):
    gates = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias: bool = True,
                 **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _adjust_bias(self, bias):
        if self.unit_forget_bias:  # Keras: forget-gate bias starts at one
            bias[self.units:2 * self.units] += 1.0

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", reset_after: bool = True,
                 **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}
