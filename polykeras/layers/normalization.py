"""BatchNormalization (Keras semantics: biased batch variance, moving
statistics updated with ``momentum`` in training, used at inference)."""

from __future__ import annotations

from polykeras import initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer


class BatchNormalization(Layer):
    supports_masking = True

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

    @property
    def _inference_only(self) -> bool:
        """Keras 3: a BatchNormalization that is not trainable runs in inference mode (moving
        statistics, no update of them), in training too."""
        return not self.trainable

    def build(self, input_shape):
        if self.axis not in (-1, len(input_shape) - 1):
            raise NotImplementedError(f"BatchNormalization {self.name!r}: only the last axis (axis=-1) is supported, got axis={self.axis}")
        self.axis = -1
        channels = (input_shape[-1],)
        if self.scale:
            self._add_weight("gamma", channels, self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self._add_weight("beta", channels, self.beta_initializer, self.beta_regularizer)
        self._add_weight("moving_mean", channels, self.moving_mean_initializer, trainable=False)
        self._add_weight("moving_variance", channels, self.moving_variance_initializer, trainable=False)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": serialize_regularizer(self.beta_regularizer),
                "gamma_regularizer": serialize_regularizer(self.gamma_regularizer)}


class LayerNormalization(Layer):
    """Normalisation of each sample over ``axis`` (Keras 3 semantics; the rules
    are :mod:`polykeras.layer_rules.normalization`). ``gamma`` (if ``scale`` or
    ``rms_scaling``) and ``beta`` (if ``center`` and not ``rms_scaling``) span
    the normalised axes, in Keras's order."""

    supports_masking = True

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 rms_scaling: bool = False, beta_initializer="zeros", gamma_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"LayerNormalization axis must be an int or a list of ints, got {axis!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        from polykeras.layer_rules.normalization import layer_norm_axes

        axes = layer_norm_axes(self.axis, len(input_shape), self.name)
        # Keras keeps the axes as given (sorted) once built, and spans the weights over them
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        shape = tuple(input_shape[a] for a in axes)
        if None in shape:
            raise ValueError(f"LayerNormalization {self.name!r}: the normalised axes {self.axis} of input "
                             f"{tuple(input_shape)} must have known sizes")
        if self.scale or self.rms_scaling:
            self._add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
        if self.center and not self.rms_scaling:
            self._add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": serialize_regularizer(self.beta_regularizer),
                "gamma_regularizer": serialize_regularizer(self.gamma_regularizer)}


class GroupNormalization(Layer):
    """Per-sample normalisation over groups of channels (Keras 3; ``groups=-1``:
    instance normalization). ``gamma``/``beta`` are per channel."""

    supports_masking = True

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise ValueError(f"GroupNormalization groups must be a positive int or -1, got {groups!r}")
        self.groups, self.axis, self.epsilon = groups, int(axis), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(f"GroupNormalization {self.name!r}: axis {self.axis} of input {tuple(input_shape)} "
                             "must have a known size")
        if self.groups == -1:
            self.groups = int(channels)  # as Keras: the config then says how many
        if channels % self.groups:
            raise ValueError(f"GroupNormalization {self.name!r}: groups={self.groups} must divide the {channels} "
                             "channels")
        if self.scale:
            self._add_weight("gamma", (channels,), self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self._add_weight("beta", (channels,), self.beta_initializer, self.beta_regularizer)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": serialize_regularizer(self.beta_regularizer),
                "gamma_regularizer": serialize_regularizer(self.gamma_regularizer)}


class UnitNormalization(Layer):
    """``x / |x|`` (L2) over ``axis`` (an int or a list), as Keras's ``ops.normalize``."""

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
