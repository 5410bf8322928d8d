"""BatchNormalization (Keras 3 semantics, feature axis last).

Training (``ctx.training``)::

    mean, var = mean and *biased* variance of x over every axis but the last
    y = gamma * (x - mean) / sqrt(var + epsilon) + beta
    moving_mean     <- moving_mean * momentum + mean * (1 - momentum)
    moving_variance <- moving_variance * momentum + var * (1 - momentum)

The moving statistics are non-trainable weights; their new values go through
``ctx.assign`` and the program applies them after the step. Keras 3 uses the
biased batch variance for the moving average too (TF-Keras 2's fused kernel
used the unbiased one).

Inference uses the moving statistics, so the layer is a fixed affine map.

Weights, in Keras's order: ``gamma`` (if ``scale``), ``beta`` (if ``center``),
``moving_mean``, ``moving_variance``, each of shape ``(C,)``. The config
(``axis``, ``momentum``, ``epsilon``, ``center``, ``scale``) and the weights'
positions are the core's rules, :mod:`polykeras.layer_rules.normalization`.
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class BatchNormalization(Kernel):
    """Batch normalization over the last axis; see the module docstring."""

    kind = "BatchNormalization"

    def _affine(self, weights):
        """``(gamma, beta)``, with 1 and 0 standing in for absent weights."""
        rules = self.rules
        gamma = weights[rules.gamma_index] if rules.scale else 1.0
        beta = weights[rules.beta_index] if rules.center else 0.0
        return gamma, beta

    def forward(self, weights, x, ctx):
        rules = self.rules
        gamma, beta = self._affine(weights)
        if ctx.training:
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)  # biased (ddof=0)
            m = rules.momentum
            ctx.assign(rules.mean_index, weights[rules.mean_index] * m + mean * (1.0 - m))
            ctx.assign(rules.variance_index, weights[rules.variance_index] * m + var * (1.0 - m))
        else:
            mean, var = weights[rules.mean_index], weights[rules.variance_index]
        inv_std = 1.0 / np.sqrt(var + rules.epsilon)
        x_hat = (x - mean) * inv_std
        y = x_hat * gamma + beta
        return y, (x_hat, inv_std, ctx.training)

    def backward(self, weights, cache, dy):
        x_hat, inv_std, training = cache
        gamma, _ = self._affine(weights)
        axes = tuple(range(dy.ndim - 1))
        dx_hat = dy * gamma
        if training:
            # mean and var depend on x too. With n samples per channel:
            # dx = inv_std / n * (n dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))
            n = x_hat.size // x_hat.shape[-1]
            dx = (inv_std / n) * (
                n * dx_hat - dx_hat.sum(axis=axes) - x_hat * (dx_hat * x_hat).sum(axis=axes)
            )
        else:
            dx = dx_hat * inv_std
        dweights: list[np.ndarray | None] = [None] * len(weights)
        if self.rules.scale:
            dweights[self.rules.gamma_index] = (dy * x_hat).sum(axis=axes)
        if self.rules.center:
            dweights[self.rules.beta_index] = dy.sum(axis=axes)
        return dx, dweights


class LayerNormalization(Kernel):
    """Per-sample normalisation over ``rules.axes`` (Keras 3 semantics; the
    rules, :mod:`polykeras.layer_rules.normalization`).

    In Keras's order of operations (which float32 results follow)::

        mean, var = mean and biased variance of x over the axes
        inv = 1 / sqrt(var + epsilon) * gamma
        y = x * inv + (beta - mean * inv)

    and with ``rms_scaling``: ``y = x * (1 / sqrt(var + epsilon)) * gamma``
    (``var`` still subtracts the mean; no ``beta``).
    """

    kind = "LayerNormalization"

    def _gamma_beta(self, weights, shape):
        rules, wshape = self.rules, self.rules.weight_shape(shape)
        gamma = weights[rules.gamma_index].reshape(wshape) if rules.scale else None
        beta = weights[rules.beta_index].reshape(wshape) if rules.center else None
        return gamma, beta

    def forward(self, weights, x, ctx):
        rules = self.rules
        gamma, beta = self._gamma_beta(weights, x.shape)
        mean = x.mean(axis=rules.axes, keepdims=True)
        var = x.var(axis=rules.axes, keepdims=True)  # biased, two-pass
        inv_std = 1.0 / np.sqrt(var + rules.epsilon)
        if rules.rms_scaling:
            y = x * inv_std
            if gamma is not None:
                y = y * gamma
            return y, (x, mean, inv_std)
        inv = inv_std if gamma is None else inv_std * gamma
        res = -mean * inv
        if beta is not None:
            res = res + beta
        return x * inv + res, (x, mean, inv_std)

    def backward(self, weights, cache, dy):
        x, mean, inv_std = cache
        rules = self.rules
        axes, others = rules.axes, rules.other_axes
        gamma, _ = self._gamma_beta(weights, x.shape)
        n = int(np.prod([x.shape[a] for a in axes]))
        du = dy if gamma is None else dy * gamma  # gradient reaching the normalised value
        centred = x - mean
        dweights: list[np.ndarray | None] = [None] * len(weights)
        if rules.rms_scaling:
            # y = x * s * gamma with s = (var + eps)^-1/2, ds/dx = -s^3 (x - mean) / n
            dx = du * inv_std - inv_std ** 3 * centred / n * (du * x).sum(axis=axes, keepdims=True)
            normalised = x * inv_std
        else:
            normalised = centred * inv_std
            dx = (inv_std / n) * (n * du - du.sum(axis=axes, keepdims=True)
                                  - normalised * (du * normalised).sum(axis=axes, keepdims=True))
        wshape = weights[0].shape if weights else ()
        if rules.scale:
            dweights[rules.gamma_index] = (dy * normalised).sum(axis=others).reshape(wshape)
        if rules.center:
            dweights[rules.beta_index] = dy.sum(axis=others).reshape(wshape)
        return dx, dweights


class GroupNormalization(Kernel):
    """Per sample and group of channels (the rules,
    :mod:`polykeras.layer_rules.normalization`), in Keras's order::

        x -> (..., groups, channels // groups); mean, var over every axis but batch and groups
        inv = 1 / sqrt(var + epsilon) * gamma;  y = x * inv + (beta - mean * inv)

    The backward is LayerNormalization's, per group, with per-channel ``gamma``.
    """

    kind = "GroupNormalization"

    def _gamma_beta(self, weights, grouped):
        rules, shape = self.rules, (1,) * (len(grouped) - 2) + grouped[-2:]
        gamma = weights[rules.gamma_index].reshape(shape) if rules.scale else None
        beta = weights[rules.beta_index].reshape(shape) if rules.center else None
        return gamma, beta

    def forward(self, weights, x, ctx):
        rules = self.rules
        xg = x.reshape(rules.grouped_shape(x.shape))
        axes = rules.reduced_axes(xg.ndim)
        gamma, beta = self._gamma_beta(weights, xg.shape)
        mean = xg.mean(axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(xg.var(axis=axes, keepdims=True) + rules.epsilon)
        inv = inv_std if gamma is None else inv_std * gamma
        res = -mean * inv if beta is None else beta - mean * inv
        return (xg * inv + res).reshape(x.shape), (xg, mean, inv_std)

    def backward(self, weights, cache, dy):
        xg, mean, inv_std = cache
        rules = self.rules
        axes = rules.reduced_axes(xg.ndim)
        gamma, _ = self._gamma_beta(weights, xg.shape)
        dyg = dy.reshape(xg.shape)
        n = int(np.prod([xg.shape[a] for a in axes]))
        normalised = (xg - mean) * inv_std
        du = dyg if gamma is None else dyg * gamma
        dx = (inv_std / n) * (n * du - du.sum(axis=axes, keepdims=True)
                              - normalised * (du * normalised).sum(axis=axes, keepdims=True))
        per_channel = tuple(range(xg.ndim - 2))
        dweights: list[np.ndarray | None] = [None] * len(weights)
        if rules.scale:
            dweights[rules.gamma_index] = (dyg * normalised).sum(axis=per_channel).reshape(-1)
        if rules.center:
            dweights[rules.beta_index] = dyg.sum(axis=per_channel).reshape(-1)
        return dx.reshape(dy.shape), dweights


class UnitNormalization(Kernel):
    """``y = x * s`` with ``s = min(1 / sqrt(sum(x^2)), 1 / epsilon)`` over the axes
    (Keras's ``ops.normalize(order=2)``). Where the norm is not clipped,
    ``dx = s * (dy - y * sum(dy * y))``; where it is, ``s`` is a constant: ``dx = s * dy``."""

    kind = "UnitNormalization"

    def forward(self, weights, x, ctx):
        axes = self.rules.axes
        with np.errstate(divide="ignore"):  # a zero vector: 1/0 = inf, clipped to 1/epsilon
            scale = np.minimum(1.0 / np.sqrt((x * x).sum(axis=axes, keepdims=True)), 1.0 / self.rules.epsilon)
        y = x * scale
        return y, (y, scale)

    def backward(self, weights, cache, dy):
        y, scale = cache
        clipped = scale >= 1.0 / self.rules.epsilon
        along = np.where(clipped, 0.0, (dy * y).sum(axis=self.rules.axes, keepdims=True))
        return scale * (dy - y * along), []
