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
