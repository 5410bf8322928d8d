"""The base of the layers with a kernel and an optional bias (Dense, Conv1D, Conv2D)."""

from __future__ import annotations

from polykeras import activations, initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer


class KernelLayer(Layer):
    """A layer with a kernel and an optional bias (Dense, Conv1D, Conv2D): the
    constructor arguments, weights and config entries they share."""

    def __init__(self, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _add_kernel_and_bias(self, kernel_shape: tuple, units: int) -> None:
        self._add_weight("kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", (units,), self.bias_initializer, self.bias_regularizer)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": serialize_regularizer(self.kernel_regularizer),
                "bias_regularizer": serialize_regularizer(self.bias_regularizer)}
