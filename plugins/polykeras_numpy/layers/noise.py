"""GaussianNoise, GaussianDropout, ActivityRegularization and Normalization: the reference
(rules: :mod:`polykeras.layer_rules.noise`).

* GaussianNoise: ``y = x + n`` in training, ``n`` the host-drawn ``Normal(0, stddev)`` noise
  (``ctx.dropout_mask`` with the rules' noise in place of a rate); ``dx = dy``.
* GaussianDropout: ``y = x * m``, ``m`` the host-drawn ``Normal(1, sqrt(rate / (1 - rate)))``;
  ``dx = dy * m``.
* ActivityRegularization: ``y = x``; ``ctx.add_loss(s * (l1 * sum|x| + l2 * sum x**2))`` with
  ``s = 1 / batch``; ``dx = dy + s * (l1 * sign(x) + 2 * l2 * x)``.
* Normalization: ``y = (x - mean) / d`` with ``d = max(sqrt(variance), 1e-7)``, ``dx = dy / d``;
  inverted ``y = mean + x * d``, ``dx = dy * d``. Its statistics are not trainable (no weight gradients).
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class GaussianNoise(Kernel):
    kind = "GaussianNoise"

    def forward(self, weights, x, ctx):
        if not self.rules.active(ctx.training):
            return x, None
        return x + ctx.dropout_mask(x.shape, self.rules.noise(), 0), None

    def backward(self, weights, cache, dy):
        return dy, []


class GaussianDropout(Kernel):
    kind = "GaussianDropout"

    def forward(self, weights, x, ctx):
        if not self.rules.active(ctx.training):
            return x, None
        multiplier = ctx.dropout_mask(x.shape, self.rules.noise(), 0)
        return x * multiplier, multiplier

    def backward(self, weights, cache, dy):
        return (dy if cache is None else dy * cache), []


class ActivityRegularization(Kernel):
    kind = "ActivityRegularization"

    def forward(self, weights, x, ctx):
        rules = self.rules
        scale = self.dtype.type(rules.penalty_scale(x.shape))
        l1, l2 = self.dtype.type(rules.l1), self.dtype.type(rules.l2)
        ctx.add_loss(scale * (l1 * np.abs(x).sum() + l2 * np.square(x).sum()))
        return x, (x, scale, l1, l2)

    def backward(self, weights, cache, dy):
        x, scale, l1, l2 = cache
        return dy + scale * (l1 * np.sign(x) + 2 * l2 * x), []


class AddLoss(Kernel):
    """A traced ``add_loss``: ``[x, loss_1, ...] -> x``; each scalar loss goes to ``ctx.add_loss``, so its
    gradient is 1 (the backward pass starts there)."""

    kind = "AddLoss"
    multiple_inputs = True

    def forward(self, weights, xs, ctx):
        for value in xs[1:]:
            ctx.add_loss(value)
        return xs[0], len(xs) - 1

    def backward(self, weights, cache, dy):
        return [dy] + [np.ones((), self.dtype)] * cache, []


class Normalization(Kernel):
    kind = "Normalization"

    def _scale(self, weights):
        mean, variance = self.rules.statistics(weights, self.dtype)
        return mean, self.rules.scale(variance, np.sqrt, np.maximum).astype(self.dtype)

    def forward(self, weights, x, ctx):
        mean, d = self._scale(weights)
        return (mean + x * d if self.rules.invert else (x - mean) / d), d

    def backward(self, weights, cache, dy):
        d = cache
        return (dy * d if self.rules.invert else dy / d), [None] * len(weights)


NOISE_KERNELS = (GaussianNoise, GaussianDropout, ActivityRegularization, AddLoss, Normalization)
