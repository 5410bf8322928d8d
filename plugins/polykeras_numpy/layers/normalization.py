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
``moving_mean``, ``moving_variance``, each of shape ``(C,)``.
"""

from __future__ import annotations

import numpy as np

from .base import Kernel


class BatchNormalization(Kernel):
    """Batch normalization over the last axis; see the module docstring."""

    kind = "BatchNormalization"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg = self.config
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        rank = len(spec.input_shape) if spec.input_shapes else None
        if not (axis == -1 or (rank is not None and axis == rank - 1)):
            raise NotImplementedError(
                f"BatchNormalization layer {spec.name!r}: axis={cfg.get('axis')!r} is not supported by "
                "the NumPy reference; only the last axis (axis=-1, channels_last) is"
            )
        self.momentum = float(cfg.get("momentum", 0.99))
        self.epsilon = float(cfg.get("epsilon", 1e-3))
        self.scale = bool(cfg.get("scale", True))
        self.center = bool(cfg.get("center", True))
        # Positions of each weight in the canonical list (None when absent).
        position = 0
        self.gamma_index = self.beta_index = None
        if self.scale:
            self.gamma_index, position = position, position + 1
        if self.center:
            self.beta_index, position = position, position + 1
        self.mean_index, self.variance_index = position, position + 1

    def _affine(self, weights):
        """``(gamma, beta)``, with 1 and 0 standing in for absent weights."""
        gamma = weights[self.gamma_index] if self.scale else 1.0
        beta = weights[self.beta_index] if self.center else 0.0
        return gamma, beta

    def forward(self, weights, x, ctx):
        gamma, beta = self._affine(weights)
        if ctx.training:
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)  # biased (ddof=0)
            m = self.momentum
            ctx.assign(self.mean_index, weights[self.mean_index] * m + mean * (1.0 - m))
            ctx.assign(self.variance_index, weights[self.variance_index] * m + var * (1.0 - m))
        else:
            mean, var = weights[self.mean_index], weights[self.variance_index]
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
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
        if self.scale:
            dweights[self.gamma_index] = (dy * x_hat).sum(axis=axes)
        if self.center:
            dweights[self.beta_index] = dy.sum(axis=axes)
        return dx, dweights
