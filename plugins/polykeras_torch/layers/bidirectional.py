"""Bidirectional in torch (Keras 3 semantics, :mod:`polykeras.layer_rules.bidirectional`):
the two wrapped layers are this backend's own recurrent layers (:mod:`.recurrent`), so
each direction takes the fused ``torch.lstm``/``torch.gru``/``torch.rnn_*`` call
wherever a lone layer would (no mask, no recurrent-dropout mask in training, standard
activations); the backward one through its ``go_backwards`` path. Native weights:
each direction's own native layout, forward then backward.
"""

from __future__ import annotations

import torch

from .base import StepContext, TorchLayer


class _BackwardStreams:
    """``ctx`` as the backward layer sees it: its dropout masks from streams shifted past the forward's."""

    def __init__(self, ctx: StepContext, shift: int):
        self._ctx, self._shift = ctx, shift

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def dropout_mask(self, layer_index, stream, shape, rate, like):
        return self._ctx.dropout_mask(layer_index, stream + self._shift, shape, rate, like)


class Bidirectional(TorchLayer):
    kind = "Bidirectional"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        from . import LAYERS

        rules = self.rules
        self.forward_layer = LAYERS[rules.forward_spec.kind](rules.forward_spec, index, dtype, device)
        self.backward_layer = LAYERS[rules.backward_spec.kind](rules.backward_spec, index, dtype, device)

    def to_native(self, weights):
        n = self.rules.n_forward
        return self.forward_layer.to_native(weights[:n]) + self.backward_layer.to_native(weights[n:])

    def to_canonical(self, arrays):
        n = self.rules.n_forward
        return self.forward_layer.to_canonical(arrays[:n]) + self.backward_layer.to_canonical(arrays[n:])

    def forward(self, params, x, ctx: StepContext):
        rules, n = self.rules, self.rules.n_forward
        y_f = self.forward_layer.forward(params[:n], x, ctx)
        y_b = self.backward_layer.forward(params[n:], x, _BackwardStreams(ctx, rules.backward_stream))
        mask = ctx.mask
        if rules.return_sequences:
            if mask is not None:  # Keras's zero_output_for_mask, in each layer's processing order
                y_f = y_f * _processing_order(mask, rules.forward.go_backwards)[:, :, None].to(y_f.dtype)
                y_b = y_b * _processing_order(mask, rules.backward.go_backwards)[:, :, None].to(y_b.dtype)
            y_b = y_b.flip(1)
        mode = rules.merge_mode
        if mode in ("concat", None):
            return torch.cat([y_f, y_b], dim=-1)
        if mode == "sum":
            return y_f + y_b
        if mode == "ave":
            return (y_f + y_b) / 2
        return y_f * y_b


def _processing_order(mask: torch.Tensor, go_backwards: bool) -> torch.Tensor:
    return mask.flip(1) if go_backwards else mask
