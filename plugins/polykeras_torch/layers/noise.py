"""GaussianNoise, GaussianDropout, ActivityRegularization and Normalization in torch (the math is the
NumPy reference's, :mod:`polykeras_numpy.layers.noise`; autograd differentiates it). The noise comes
from :meth:`StepContext.dropout_mask` with the rules' :class:`polykeras.random.Normal`: host-drawn in
parity mode, else torch's generator."""

from __future__ import annotations

import torch

from .base import TorchLayer


class GaussianNoise(TorchLayer):
    kind = "GaussianNoise"

    def forward(self, params, x, ctx):
        if not self.rules.active(ctx.training):
            return x
        return x + ctx.dropout_mask(self.index, 0, tuple(x.shape), self.rules.noise(), x)


class GaussianDropout(TorchLayer):
    kind = "GaussianDropout"

    def forward(self, params, x, ctx):
        if not self.rules.active(ctx.training):
            return x
        return x * ctx.dropout_mask(self.index, 0, tuple(x.shape), self.rules.noise(), x)


class ActivityRegularization(TorchLayer):
    """The identity; its penalty goes to ``ctx.add_loss`` (1 / batch times Keras's L1L2)."""

    kind = "ActivityRegularization"

    def forward(self, params, x, ctx):
        rules = self.rules
        penalty = x.new_zeros(())
        if rules.l1:
            penalty = penalty + rules.l1 * x.abs().sum()
        if rules.l2:
            penalty = penalty + rules.l2 * x.square().sum()
        ctx.add_loss(penalty * rules.penalty_scale(tuple(x.shape)))
        return x


class AddLoss(TorchLayer):
    """A traced ``add_loss``: ``[x, loss_1, ...] -> x``, each scalar loss to ``ctx.add_loss``."""

    kind = "AddLoss"
    multiple_inputs = True

    def forward(self, params, xs, ctx):
        for value in xs[1:]:
            ctx.add_loss(value)
        return xs[0]


class Normalization(TorchLayer):
    kind = "Normalization"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        constants = self.rules.constants
        self.fixed = None if constants is None else tuple(self.constant(c) for c in constants)

    def forward(self, params, x, ctx):
        rules = self.rules
        if self.fixed is not None:
            mean, variance = self.fixed
        else:
            mean, variance = (p.reshape(rules.broadcast_shape) for p in params[:2])
        d = rules.scale(variance, torch.sqrt, lambda a, eps: torch.clamp(a, min=eps))
        return mean + x * d if rules.invert else (x - mean) / d


NOISE_LAYERS = (GaussianNoise, GaussianDropout, ActivityRegularization, AddLoss, Normalization)
