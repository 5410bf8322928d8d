"""GaussianNoise, GaussianDropout, ActivityRegularization and Normalization in JAX (the math is the
NumPy reference's, :mod:`polykeras_numpy.layers.noise`; ``jax.grad`` differentiates it). The noise comes
from ``ctx.dropout_mask`` with the rules' :class:`polykeras.random.Normal`: host-drawn in parity mode,
else ``jax.random.normal`` from the step's key."""

from __future__ import annotations

import jax.numpy as jnp

from .base import Layer


class GaussianNoise(Layer):
    kind = "GaussianNoise"

    def __call__(self, weights, x, ctx):
        if not self.rules.active(ctx.training):
            return x
        return x + ctx.dropout_mask(0, x.shape, self.rules.noise())


class GaussianDropout(Layer):
    kind = "GaussianDropout"

    def __call__(self, weights, x, ctx):
        if not self.rules.active(ctx.training):
            return x
        return x * ctx.dropout_mask(0, x.shape, self.rules.noise())


class ActivityRegularization(Layer):
    """The identity; its penalty goes to ``ctx.add_loss`` (1 / batch times Keras's L1L2)."""

    kind = "ActivityRegularization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        penalty = jnp.zeros((), x.dtype)
        if rules.l1:  # |x| as x * sign(x): the gradient sign(x), 0 at 0 as in the reference
            penalty = penalty + rules.l1 * jnp.sum(x * jnp.sign(x))
        if rules.l2:
            penalty = penalty + rules.l2 * jnp.sum(jnp.square(x))
        ctx.add_loss(penalty * rules.penalty_scale(tuple(x.shape)))
        return x


class AddLoss(Layer):
    """A traced ``add_loss``: ``[x, loss_1, ...] -> x``, each scalar loss to ``ctx.add_loss``."""

    kind = "AddLoss"
    multiple_inputs = True

    def __call__(self, weights, xs, ctx):
        for value in xs[1:]:
            ctx.add_loss(value)
        return xs[0]


class Normalization(Layer):
    kind = "Normalization"

    def __call__(self, weights, x, ctx):
        rules = self.rules
        if rules.constants is not None:
            mean, variance = (jnp.asarray(c, x.dtype) for c in rules.constants)
        else:
            mean, variance = (jnp.reshape(w, rules.broadcast_shape) for w in weights[:2])
        d = rules.scale(variance, jnp.sqrt, jnp.maximum)
        return mean + x * d if rules.invert else (x - mean) / d


NOISE_LAYERS = (GaussianNoise, GaussianDropout, ActivityRegularization, AddLoss, Normalization)
