"""Noise and regularization layers, and feature Normalization (Keras 3 semantics).

* ``GaussianNoise(stddev)`` adds ``N(0, stddev**2)`` noise in training;
  ``GaussianDropout(rate)`` multiplies by ``N(1, rate / (1 - rate))`` noise in
  training. Both are the identity at inference and when ``stddev``/``rate`` is 0.
  The noise is asked for where a dropout mask is (:meth:`GaussianNoiseRules.noise`
  gives the :class:`polykeras.random.Normal` in place of a rate), so parity mode
  draws it on the host from the step seed like dropout masks.
* ``ActivityRegularization(l1, l2)`` is the identity that adds
  ``(l1 * sum(|x|) + l2 * sum(x**2)) / batch`` to the loss, in training and in
  evaluation: Keras 3's activity regularizer, which divides by the batch size.
* ``Normalization(axis, mean, variance, invert)``: ``(x - mean) /
  max(sqrt(variance), epsilon)`` (``invert``: ``mean + x * max(sqrt(variance),
  epsilon)``), ``epsilon`` being Keras's fuzz factor 1e-7. ``mean``/``variance``
  are the config's constants when given, else the layer's non-trainable weights
  ``mean``, ``variance`` (and ``count``, kept for Keras's files) set by ``adapt``.
"""

from __future__ import annotations

import math

import numpy as np

from polykeras.random import Normal

from .base import SameShape

#: Keras's ``backend.epsilon()`` default, which ``Normalization`` floors the standard deviation with.
NORMALIZATION_EPSILON = 1e-7


class GaussianNoiseRules(SameShape):
    """``stddev >= 0``."""

    kind = "GaussianNoise"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.stddev = float(self.config.get("stddev", 0.0))
        if not (self.stddev >= 0.0 and math.isfinite(self.stddev)):
            raise ValueError(f"GaussianNoise layer {self.name!r}: stddev must be a finite number >= 0, "
                             f"got {self.config.get('stddev')!r}")

    def active(self, training: bool) -> bool:
        """Whether the layer adds anything (else it is the identity)."""
        return bool(training) and self.stddev != 0.0

    def noise(self) -> Normal:
        """The noise added to the input (asked for in place of a dropout rate)."""
        return Normal(0.0, self.stddev)


class GaussianDropoutRules(SameShape):
    """``rate`` in ``[0, 1)``: the multiplier's standard deviation is ``sqrt(rate / (1 - rate))``."""

    kind = "GaussianDropout"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.rate = float(self.config.get("rate", 0.0))
        if not 0.0 <= self.rate < 1.0:  # Keras takes 1 and then divides by zero in training
            raise ValueError(f"GaussianDropout layer {self.name!r}: rate must be in [0, 1), got {self.rate}")

    def active(self, training: bool) -> bool:
        return bool(training) and self.rate != 0.0

    def noise(self) -> Normal:
        """The multiplier of the input (asked for in place of a dropout rate)."""
        return Normal(1.0, math.sqrt(self.rate / (1.0 - self.rate)))


class ActivityRegularizationRules(SameShape):
    """``l1, l2 >= 0``; :meth:`penalty_scale` is Keras's division by the batch size."""

    kind = "ActivityRegularization"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.l1, self.l2 = float(self.config.get("l1", 0.0)), float(self.config.get("l2", 0.0))
        for what, value in (("l1", self.l1), ("l2", self.l2)):
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"ActivityRegularization layer {self.name!r}: {what} must be a finite number >= 0, "
                                 f"got {value}")

    @staticmethod
    def penalty_scale(x_shape: tuple) -> float:
        """What the penalty of an output of ``x_shape`` is multiplied by: ``1 / batch`` (Keras 3 divides the
        activity regularizer's value by the output's first dimension, ``divide_no_nan``: 0 for an empty batch)."""
        return 0.0 if not x_shape or x_shape[0] == 0 else 1.0 / x_shape[0]


class NormalizationRules(SameShape):
    """The kept axes (``axis``; ``None`` keeps none), the statistics' shape, the config's constants."""

    kind = "Normalization"

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        shape = tuple(spec.input_shape)
        ndim = len(shape)
        axis = self.config.get("axis", -1)
        axis = () if axis is None else (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(axis)
        if any(not -ndim <= a < ndim for a in axis):
            raise ValueError(f"Normalization layer {self.name!r}: axis {axis} out of range for inputs of rank "
                             f"{ndim} (batch included), shape {shape}")
        self.keep = tuple(sorted({a % ndim for a in axis}))
        if 0 in self.keep:
            raise self.unsupported("axis including the batch axis 0", "; the statistics are per feature")
        unknown = [a for a in self.keep if shape[a] is None]
        if unknown:
            raise ValueError(f"Normalization layer {self.name!r}: the kept axes {unknown} of inputs {shape} must "
                             "have a known size")
        #: the shape of ``mean``/``variance`` (weights, or the config's constants broadcast to it)
        self.stats_shape = tuple(int(shape[a]) for a in self.keep)
        #: the statistics' shape broadcast against an input (1 on the reduced axes, the batch's too)
        self.broadcast_shape = tuple(int(shape[d]) if d in self.keep else 1 for d in range(ndim))
        self.invert = bool(self.config.get("invert", False))
        mean, variance = self.config.get("mean"), self.config.get("variance")
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization layer {self.name!r}: give both mean and variance, or neither "
                             f"(got mean={mean!r}, variance={variance!r})")
        self.constants = None if mean is None else (self._broadcast(mean, "mean"), self._broadcast(variance, "variance"))

    def _broadcast(self, value, what: str) -> np.ndarray:
        """A config constant (a number, or an array aligned with the kept axes from the right) as
        float64 of :attr:`broadcast_shape`, as Keras's ``build`` reshapes it."""
        value = np.asarray(value, dtype=np.float64)
        if value.ndim > len(self.keep):
            raise ValueError(f"Normalization layer {self.name!r}: {what} of shape {value.shape} has more dimensions "
                             f"than the {len(self.keep)} kept axes")
        expanded = [1] * len(self.broadcast_shape)
        for i in range(1, value.ndim + 1):
            expanded[self.keep[-i]] = value.shape[-i]
        try:
            return np.array(np.broadcast_to(value.reshape(expanded), self.broadcast_shape))  # writable
        except ValueError:
            raise ValueError(f"Normalization layer {self.name!r}: {what} of shape {value.shape} does not broadcast "
                             f"to the statistics' shape {self.stats_shape}") from None

    def statistics(self, weights: list, dtype) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, variance)`` of :attr:`broadcast_shape` in ``dtype``: the constants, or the weights
        ``[mean, variance, count]`` reshaped (NumPy arrays only; the backends reshape their own tensors)."""
        if self.constants is not None:
            return self.constants[0].astype(dtype), self.constants[1].astype(dtype)
        return (np.asarray(weights[0], dtype).reshape(self.broadcast_shape),
                np.asarray(weights[1], dtype).reshape(self.broadcast_shape))

    @staticmethod
    def scale(variance, sqrt, maximum):
        """``max(sqrt(variance), epsilon)``, written with the backend's ``sqrt`` and ``maximum``."""
        return maximum(sqrt(variance), NORMALIZATION_EPSILON)


NOISE_RULES = (GaussianNoiseRules, GaussianDropoutRules, ActivityRegularizationRules, NormalizationRules)
