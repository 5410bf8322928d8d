"""BatchNormalization (Keras semantics: biased batch variance, moving
statistics updated with ``momentum`` in training, used at inference)."""

from __future__ import annotations

from polykeras import initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer


class BatchNormalization(Layer):
    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis) if not isinstance(axis, (list, tuple)) else axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        if self.axis not in (-1, len(input_shape) - 1):
            raise NotImplementedError(f"BatchNormalization {self.name!r}: only the last axis (axis=-1) is supported, got axis={self.axis}")
        self.axis = -1
        channels = (input_shape[-1],)
        if self.scale:
            self.add_weight("gamma", channels, self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", channels, self.beta_initializer, self.beta_regularizer)
        self.add_weight("moving_mean", channels, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", channels, self.moving_variance_initializer, trainable=False)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": serialize_regularizer(self.beta_regularizer),
                "gamma_regularizer": serialize_regularizer(self.gamma_regularizer)}
