"""GaussianNoise, GaussianDropout and ActivityRegularization (Keras 3 semantics; the rules are
:mod:`polykeras.layer_rules.noise`). The noise layers are active only in training; in parity mode their
noise is drawn on the host from the step seed, as dropout masks are (:class:`polykeras.random.Normal`)."""

from __future__ import annotations

import math

from polykeras.layers.base import Layer


class GaussianNoise(Layer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` in training."""

    supports_masking = True

    def __init__(self, stddev: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not (float(stddev) >= 0 and math.isfinite(float(stddev))):
            raise ValueError(f"GaussianNoise stddev must be a finite number >= 0, got {stddev!r}")
        self.stddev, self.seed = float(stddev), seed

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """Multiplies by 1-centred Gaussian noise of standard deviation ``sqrt(rate / (1 - rate))`` in training."""

    supports_masking = True

    def __init__(self, rate: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= float(rate) < 1:
            raise ValueError(f"GaussianDropout rate must be in [0, 1), got {rate!r}")
        self.rate, self.seed = float(rate), seed

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class ActivityRegularization(Layer):
    """The identity that adds ``(l1 * sum(|x|) + l2 * sum(x**2)) / batch`` to the loss (Keras 3 divides an
    activity regularizer by the batch size), in training and evaluation."""

    supports_masking = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for what, value in (("l1", l1), ("l2", l2)):
            if not (float(value) >= 0 and math.isfinite(float(value))):
                raise ValueError(f"ActivityRegularization {what} must be a finite number >= 0, got {value!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}


NOISE_LAYERS = (GaussianNoise, GaussianDropout, ActivityRegularization)
