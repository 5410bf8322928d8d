"""Bidirectional in torch (Keras 3 semantics, :mod:`polykeras.layer_rules.bidirectional`):
the two wrapped layers are this backend's own recurrent layers (:mod:`.recurrent`).

* **one fused call** -- ``torch.lstm``/``torch.gru``/``torch.rnn_*`` with
  ``bidirectional=True`` (what ``nn.LSTM(bidirectional=True)`` runs; cuDNN runs both
  directions at once), when both layers could take their fused op alone, are of one kind
  with the same units, activation and biases, the forward one goes forward, there is no
  mask and no dropout mask applies (each direction would see its own input mask). Its
  output holds the backward direction's outputs in input order already; without
  ``return_sequences`` the backward layer's last output is the one at the first step.
* otherwise **each layer on its own path** -- each direction takes its own fused op
  wherever a lone layer would, the backward one through its ``go_backwards`` path, else
  the time loop (masks, recurrent dropout).

Native weights: each direction's own native layout, forward then backward.
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

    def _one_fused_call(self, ctx: StepContext) -> bool:
        rules, f, b = self.rules, self.forward_layer, self.backward_layer
        dropout = any(r.input_mask_active(ctx.training) or r.recurrent_mask_active(ctx.training)
                      for r in (rules.forward, rules.backward))
        same = (f.kind == b.kind and f.units == b.units and f.rules.activation == b.rules.activation
                and f.rules.recurrent_activation == b.rules.recurrent_activation
                and f.rules.use_bias == b.rules.use_bias)
        return same and f.fusable and b.fusable and not rules.forward.go_backwards and ctx.mask is None and not dropout

    def forward(self, params, x, ctx: StepContext):
        rules, n = self.rules, self.rules.n_forward
        if self._one_fused_call(ctx):
            f, b = self.forward_layer, self.backward_layer
            forward_weights, has_biases = f.fused_weights(params[:n])
            both = f.fused_call(x, forward_weights + b.fused_weights(params[n:])[0], has_biases, bidirectional=True)
            if rules.return_sequences:
                y_f, y_b = both[..., :f.units], both[..., f.units:]  # both in input order
            else:
                y_f, y_b = both[:, -1, :f.units], both[:, 0, f.units:]
            return self._merge(both if rules.return_sequences else None, y_f, y_b)
        y_f = self.forward_layer.forward(params[:n], x, ctx)
        y_b = self.backward_layer.forward(params[n:], x, _BackwardStreams(ctx, rules.backward_stream))
        mask = ctx.mask
        if rules.return_sequences:
            if mask is not None:  # Keras's zero_output_for_mask, in each layer's processing order
                y_f = y_f * _processing_order(mask, rules.forward.go_backwards)[:, :, None].to(y_f.dtype)
                y_b = y_b * _processing_order(mask, rules.backward.go_backwards)[:, :, None].to(y_b.dtype)
            y_b = y_b.flip(1)
        return self._merge(None, y_f, y_b)

    def _merge(self, concatenated, y_f, y_b):
        mode = self.rules.merge_mode
        if mode in ("concat", None):
            return concatenated if concatenated is not None else torch.cat([y_f, y_b], dim=-1)
        if mode == "sum":
            return y_f + y_b
        if mode == "ave":
            return (y_f + y_b) / 2
        return y_f * y_b


def _processing_order(mask: torch.Tensor, go_backwards: bool) -> torch.Tensor:
    return mask.flip(1) if go_backwards else mask
