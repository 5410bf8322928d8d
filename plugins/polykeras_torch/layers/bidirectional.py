"""Bidirectional in torch (Keras 3 semantics, :mod:`polykeras.layer_rules.bidirectional`):
the two wrapped layers are this backend's own recurrent layers (:mod:`.recurrent`).

* **one fused call** -- ``torch.lstm``/``torch.gru``/``torch.rnn_*`` with
  ``bidirectional=True`` (what ``nn.LSTM(bidirectional=True)`` runs; cuDNN runs both
  directions at once), when both layers could take their fused op alone, are of one kind
  with the same units, activation and biases, the forward one goes forward and no dropout
  mask applies (each direction would see its own input mask). Its output holds the backward
  direction's outputs in input order already; without ``return_sequences`` the backward
  layer's last output is the one at the first step. A mask is fine where every row is
  right-padded (its steps valid up to a length, at least one): the call then runs on a
  packed sequence (``pack_padded_sequence``), which is Keras's masking exactly -- each
  direction starts at its first valid step with a zero state, the outputs past a row's
  length are zeros, and the forward layer's last output is the one at the row's last valid
  step. Telling a right-padded mask apart reads it on the host once per call (the reading
  and the packed call are :mod:`.recurrent`'s, where a lone layer uses them too).
* otherwise **each layer on its own path** -- each direction takes its own fused op
  wherever a lone layer would, the backward one through its ``go_backwards`` path, else
  the time loop (a mask with holes or an all-masked row, recurrent dropout; a left-padded mask
  gives each layer its own fused call, :mod:`.recurrent`). So do calls with ``return_state`` and with
  ``initial_state`` (the node's inputs ``[x, *forward states, *backward states]``: each layer
  gets ``[x, *its states]``, which its fused op takes as ``hx``).

Native weights: each direction's own native layout, forward then backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import StepContext, TorchLayer
from .recurrent import mask_segments, packed_fused_call


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
        #: ``[x, *forward states, *backward states]`` with initial states
        self.multiple_inputs = rules.initial_state

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
        return (same and f.fusable and b.fusable and not rules.forward.go_backwards and not dropout
                and not rules.return_state  # (states: each layer on its own path, which returns them
                and not rules.initial_state)  # or takes them)

    @staticmethod
    def _right_padded_lengths(mask: torch.Tensor) -> torch.Tensor | None:
        """Each row's length where every row of ``mask`` is valid up to a length of at least one, else ``None``."""
        segments = mask_segments(mask)
        return None if segments is None or segments[2] else segments[1]

    def _fused_both(self, params, x, lengths):
        """Both directions in one fused call, ``(batch, T, 2 * units)`` in input order; over the packed
        sequence of ``lengths`` (zeros past each row's length) where given."""
        f, b, n = self.forward_layer, self.backward_layer, self.rules.n_forward
        forward_weights, has_biases = f.fused_weights(params[:n])
        weights = forward_weights + b.fused_weights(params[n:])[0]
        if lengths is None:
            return f.fused_call(x, weights, has_biases, bidirectional=True)
        return packed_fused_call(f, x, weights, has_biases, lengths, bidirectional=True)[0]

    def forward(self, params, x, ctx: StepContext):
        rules, n = self.rules, self.rules.n_forward
        lengths = None if ctx.mask is None else self._right_padded_lengths(ctx.mask)
        if self._one_fused_call(ctx) and (ctx.mask is None or lengths is not None):
            units = self.forward_layer.units
            both = self._fused_both(params, x, lengths)
            if rules.return_sequences:
                y_f, y_b = both[..., :units], both[..., units:]  # both in input order
            else:
                last = -1 if lengths is None else lengths.to(x.device) - 1
                y_f, y_b = both[torch.arange(x.shape[0], device=x.device), last, :units], both[:, 0, units:]
            return self._merge(both if rules.return_sequences else None, y_f, y_b)
        x_f, x_b = rules.split_inputs(x)  # with initial states: [x, *forward states], [x, *backward states]
        y_f = self.forward_layer.forward(params[:n], x_f, ctx)
        y_b = self.backward_layer.forward(params[n:], x_b, _BackwardStreams(ctx, rules.backward_stream))
        states = None
        if rules.return_state:  # each packed: its output, then its final states
            (y_f, states_f), (y_b, states_b) = self._unpack(y_f), self._unpack(y_b)
            states = states_f + states_b
        mask = ctx.mask
        if rules.return_sequences:
            if mask is not None:  # Keras's zero_output_for_mask, in each layer's processing order
                y_f = y_f * _processing_order(mask, rules.forward.go_backwards)[:, :, None].to(y_f.dtype)
                y_b = y_b * _processing_order(mask, rules.backward.go_backwards)[:, :, None].to(y_b.dtype)
            y_b = y_b.flip(1)
        y = self._merge(None, y_f, y_b)
        if states is None:
            return y
        width = y.shape[-1]
        padded = [F.pad(s, (0, width - s.shape[-1]))[:, None] for s in states]
        return torch.cat([y if rules.return_sequences else y[:, None]] + padded, dim=1)

    def _unpack(self, packed):
        """A wrapped layer's packed output as ``(output, [states])`` (:mod:`polykeras.layer_rules.bidirectional`)."""
        k = self.rules.n_states
        output = packed[:, :-k] if self.rules.return_sequences else packed[:, 0]
        return output, [packed[:, i - k] for i in range(k)]

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
