"""LayerNormalization in torch (Keras 3 semantics; the rules are
:mod:`polykeras.layer_rules.normalization`, the math the NumPy reference's).

Normalising over the trailing axes (``axis=-1``, the transformer case) is
``F.layer_norm`` -- one fused kernel, as Keras's own torch backend uses -- which
computes ``(x - mean) * rsqrt(var + eps) * gamma + beta`` with the biased
variance: Keras's function, rounded in a different order. Other axes, and
``rms_scaling``, are written out in Keras's order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import TorchLayer


class LayerNormalization(TorchLayer):
    kind = "LayerNormalization"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        trailing = rules.axes == tuple(range(rules.rank - len(rules.axes), rules.rank))
        self.fused = trailing and not rules.rms_scaling
        self.normalized_shape = tuple(int(spec.input_shape[a]) for a in rules.axes)

    def forward(self, params, x, ctx):
        rules = self.rules
        gamma = params[rules.gamma_index] if rules.scale else None
        beta = params[rules.beta_index] if rules.center else None
        if self.fused:
            return F.layer_norm(x, self.normalized_shape, gamma, beta, rules.epsilon)
        wshape = rules.weight_shape(x.shape)
        var, mean = torch.var_mean(x, dim=rules.axes, keepdim=True, correction=0)
        inv = torch.rsqrt(var + rules.epsilon)
        if gamma is not None:
            inv = inv * gamma.reshape(wshape)
        if rules.rms_scaling:
            return x * inv
        res = -mean * inv
        if beta is not None:
            res = res + beta.reshape(wshape)
        return x * inv + res


class GroupNormalization(TorchLayer):
    """Per sample and group of channels, written out in Keras's order (see the
    rules): ``inv = rsqrt(var + eps) * gamma``, ``y = x * inv + (beta - mean * inv)``.
    (``F.group_norm`` computes the same function on channels-first data, but
    fails in torch 2.13 when given a bias without a weight.)"""

    kind = "GroupNormalization"

    def forward(self, params, x, ctx):
        rules = self.rules
        xg = x.reshape(rules.grouped_shape(x.shape))
        axes = rules.reduced_axes(xg.dim())
        wshape = (1,) * (xg.dim() - 2) + tuple(xg.shape[-2:])
        var, mean = torch.var_mean(xg, dim=axes, keepdim=True, correction=0)
        inv = torch.rsqrt(var + rules.epsilon)
        if rules.scale:
            inv = inv * params[rules.gamma_index].reshape(wshape)
        res = -mean * inv
        if rules.center:
            res = res + params[rules.beta_index].reshape(wshape)
        return (xg * inv + res).reshape(x.shape)


class UnitNormalization(TorchLayer):
    """``x * min(rsqrt(sum(x^2)), 1 / epsilon)`` over the axes, as Keras's ``ops.normalize``."""

    kind = "UnitNormalization"

    def forward(self, params, x, ctx):
        rules = self.rules
        scale = torch.rsqrt((x * x).sum(dim=rules.axes, keepdim=True)).clamp(max=1.0 / rules.epsilon)
        return x * scale
