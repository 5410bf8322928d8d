"""Core layers in torch: Dense, Activation, Dropout, Flatten, Reshape,
Embedding and BatchNormalization. The rules are the core's
(:mod:`polykeras.layer_rules.core`, ``.normalization``); the math is the
NumPy reference's."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import activations
from .base import StepContext, TorchLayer


class Dense(TorchLayer):
    """``activation(x @ kernel + bias)``. The kernel is held as ``(units, in)``,
    ``nn.Linear``'s layout, so ``F.linear`` runs the same GEMM a plain torch
    model does."""

    kind = "Dense"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.activation = activations.get(self.rules.activation)

    def to_native(self, weights):
        return [weights[0].T.copy(), *weights[1:]]

    def to_canonical(self, arrays):
        return [arrays[0].T.copy(), *arrays[1:]]

    def forward(self, params, x, ctx):
        return self.activation(F.linear(x, params[0], params[1] if self.rules.use_bias else None))


class Activation(TorchLayer):
    kind = "Activation"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        self.activation = activations.get(self.rules.activation)

    def forward(self, params, x, ctx):
        return self.activation(x)


class Dropout(TorchLayer):
    """Inverted dropout; the mask (``noise_shape`` applied) comes from
    :meth:`StepContext.dropout_mask`, stream 0."""

    kind = "Dropout"

    def forward(self, params, x, ctx: StepContext):
        rules = self.rules
        if not rules.active(ctx.training):
            return x
        return x * ctx.dropout_mask(self.index, 0, rules.mask_shape(tuple(x.shape)), rules.rate, x)


class SpatialDropout1D(Dropout):
    """Dropout of whole channels (the rules' mask shape)."""

    kind = "SpatialDropout1D"


class SpatialDropout2D(Dropout):
    kind = "SpatialDropout2D"


class Flatten(TorchLayer):
    """C-order flatten of the canonical (channels_last) layout. Convolutions
    hand over NHWC views of channels_last memory, so this is a free view and
    the order matches Keras's Dense kernel rows."""

    kind = "Flatten"

    def forward(self, params, x, ctx):
        return x.reshape(x.shape[0], -1)


class Reshape(TorchLayer):
    kind = "Reshape"

    def forward(self, params, x, ctx):
        return x.reshape(self.rules.output_shape(tuple(x.shape)))


class Embedding(TorchLayer):
    """Table lookup; ids arrive as int32 (``F.embedding`` takes them as is).
    The table gradient is dense, like the reference and ``nn.Embedding``'s
    default."""

    kind = "Embedding"
    differentiable_input = False

    def check_ids(self, ids: np.ndarray) -> None:
        """Raise the rules' ``ValueError`` for ids outside the table.
        The program calls this on the host copy of the input, where it costs
        no device synchronisation."""
        self.rules.ids(ids)

    def forward(self, params, x, ctx):
        if x.is_floating_point():
            x = x.long()
        return F.embedding(x, params[0])


class BatchNormalization(TorchLayer):
    """Keras's batch normalization over the last axis, written out rather
    than ``F.batch_norm`` because torch's running variance is the *unbiased*
    batch variance and its momentum is Keras's ``1 - momentum``; Keras 3
    moves the statistics with the biased variance:
    ``moving = moving * momentum + batch * (1 - momentum)``."""

    kind = "BatchNormalization"

    def forward(self, params, x, ctx: StepContext):
        rules = self.rules
        mean_var, var_var = params[rules.mean_index], params[rules.variance_index]
        if ctx.training:
            var, mean = torch.var_mean(x, dim=tuple(range(x.dim() - 1)), correction=0)
            with torch.no_grad():
                m = rules.momentum
                ctx.assign(mean_var, mean_var * m + mean * (1.0 - m))
                ctx.assign(var_var, var_var * m + var * (1.0 - m))
        else:
            mean, var = mean_var, var_var
        y = (x - mean) * torch.rsqrt(var + rules.epsilon)
        if rules.scale:
            y = y * params[rules.gamma_index]
        if rules.center:
            y = y + params[rules.beta_index]
        return y
