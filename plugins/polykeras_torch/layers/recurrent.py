"""Recurrent layers in torch: SimpleRNN, LSTM, GRU with Keras 3 semantics.

Two paths compute the same function (the rules are the core's,
:mod:`polykeras.layer_rules.recurrent`; the math is the NumPy reference's):

* **fused** -- ``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh`` /
  ``torch.rnn_relu``, the ops behind ``nn.LSTM`` & co. (oneDNN on CPU, cuDNN
  on GPU): the whole sequence in one call, no Python per time step. Keras
  semantics allow it when the activations are the standard ones, GRU uses
  ``reset_after=True`` and no recurrent-dropout mask is active (training with
  ``recurrent_dropout`` masks ``h_{t-1}`` per sample inside the recurrence,
  which no fused kernel can do). Input dropout is fine: its mask is constant
  over time, so it is applied to the whole input before the call.
* **loop** -- a time loop of torch ops differentiated by autograd, for
  everything else (recurrent dropout in training, other activations, GRU with
  ``reset_after=False``, a mask with holes or an all-masked row: a masked step
  keeps the state, as the reference's ``where``).

A mask where each row is valid for one run of steps (at least one), read on the
host once per call (:func:`mask_segments`), still takes the fused op: Keras's
right padding (a prefix valid; ``Embedding(mask_zero=True)`` on ``padding='post'``)
and left padding (a suffix valid: ``pad_sequences``'s default, and right padding
under ``go_backwards``, which reverses the sequence and the mask). A masked step
keeps the state, so before a row's run the state is the initial one (zeros or
``initial_state``), and after it the state at its last valid step: each row's run
is moved to the front (a per-row roll), run by the fused op from its initial
state and moved back; the masked steps' outputs are the reference's carried ``h``
-- the initial ``h`` before the run, the last valid step's after it. The op runs
over all ``T`` steps (the outputs up to a row's length do not see the padding
after it; the final ``h`` is the output at the row's last valid step), except for
an LSTM returning its states, whose ``c`` there only a packed sequence gives
(``pack_padded_sequence``: :func:`packed_fused_call`, which :mod:`.bidirectional`
uses too; on the CPU it is slower than the full call -- see ``_fused_segments``).

Native weight layout (``to_native``), chosen so the fused ops take the
weights as they are:

* SimpleRNN and LSTM: ``w_ih = kernel.T``, ``w_hh = recurrent_kernel.T``,
  ``b_ih = bias``; torch's second bias ``b_hh`` is a constant zero. Keras's
  LSTM gate order i, f, c, o is torch's i, f, g, o -- no reordering.
* GRU: Keras orders the gates z, r, h; torch r, z, n. Every gate-stacked
  array is permuted to r, z, n. With ``reset_after`` Keras's bias ``(2, 3u)``
  rows are exactly torch's ``b_ih`` and ``b_hh`` (torch's ``n`` gate is
  ``tanh(W_in x + b_in + r * (W_hn h + b_hn))``: the reset-after form), and
  both write the update as ``h = z * h_prev + (1 - z) * n``.

Conversions are permutations and transposes only, so gradients convert with
the same functions.

``initial_state`` (the node's inbound after the sequence: ``[x, h0(, c0)]``)
is the fused ops' ``hx`` (``nn.LSTM``'s ``(h0, c0)``) or the loop's first
state; ``return_state`` packs the output and the final states (the fused ops
return ``h_n``/``c_n``) as the rules say (:mod:`polykeras.layer_rules.recurrent`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import activations
from .base import StepContext, TorchLayer


class _Recurrent(TorchLayer):
    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        self.units, self.gates = rules.units, rules.gates
        self.act = activations.get(rules.activation)
        self.rec_act = activations.get(rules.recurrent_activation)
        self.fusable = self._fusable()
        #: ``[x, h0(, c0)]`` with initial states
        self.multiple_inputs = rules.initial_state
        self.zero_bias = self.constant(np.zeros(self.gates * self.units))

    # -- layout ------------------------------------------------------------
    def _gate_order(self) -> np.ndarray:
        """Column permutation from Keras's gate order to the native one."""
        return np.arange(self.gates * self.units)

    def to_native(self, weights):
        perm = self._gate_order()
        native = [weights[0][:, perm].T.copy(), weights[1][:, perm].T.copy()]
        if len(weights) > 2:
            native.append(weights[2][..., perm].copy())
        return native

    def to_canonical(self, arrays):
        inverse = np.argsort(self._gate_order())
        canonical = [arrays[0].T[:, inverse].copy(), arrays[1].T[:, inverse].copy()]
        if len(arrays) > 2:
            canonical.append(arrays[2][..., inverse].copy())
        return canonical

    # -- forward -------------------------------------------------------------
    def forward(self, params, x, ctx: StepContext):
        rules, initial = self.rules, None
        if self.multiple_inputs:
            x, initial = x[0], tuple(x[1:])
        steps_mask = ctx.mask
        if rules.go_backwards:
            x = x.flip(1)
            steps_mask = None if steps_mask is None else steps_mask.flip(1)
        rec_mask = None
        if rules.input_mask_active(ctx.training):  # one mask for every step
            x = x * ctx.dropout_mask(self.index, 0, (x.shape[0], x.shape[2]), rules.dropout, x)[:, None, :]
        if rules.recurrent_mask_active(ctx.training):
            rec_mask = ctx.dropout_mask(self.index, 1, (x.shape[0], self.units), rules.recurrent_dropout, x)
        segments = None if steps_mask is None or rec_mask is not None or not self.fusable else \
            mask_segments(steps_mask)
        if rec_mask is None and self.fusable and (steps_mask is None or segments is not None):
            if steps_mask is None:
                sequence, final = self.fused_call(x, *self.fused_weights(params), initial=initial, with_states=True)
                output = sequence if rules.return_sequences else sequence[:, -1]
            else:
                output, final = self._fused_segments(params, x, steps_mask, segments, initial)
        else:
            outputs, final = self._loop(params, x, rec_mask, steps_mask, initial)
            output = torch.stack(outputs, dim=1) if rules.return_sequences else outputs[-1]
        if not rules.return_state:
            return output
        return torch.cat([output if rules.return_sequences else output[:, None], torch.stack(final, dim=1)], dim=1)

    def _fusable(self) -> bool:
        return self.rules.activation == "tanh" and self.rules.recurrent_activation == "sigmoid"

    def fused_weights(self, params) -> tuple[list[torch.Tensor], bool]:
        """The flat weight list of this kind's fused op (one direction), and whether it has biases."""
        return self._flat_weights(params)

    def fused_call(self, x, weights, has_biases, bidirectional: bool = False, batch_sizes=None, initial=None,
                   with_states: bool = False):
        """The fused op's output sequence ``(batch, T, units)``; ``bidirectional``: ``weights`` holds both
        directions' lists (forward first) and the output is ``(batch, T, 2 * units)``, the backward
        direction's outputs in input order (``nn.LSTM(bidirectional=True)``'s layout). With
        ``batch_sizes``, ``x`` and the output are a packed sequence's data (``PackedSequence``: each
        sequence runs over its own length only). ``initial``: the initial states ``(h0(, c0))``, each
        ``(batch, units)`` (one direction), else zeros; ``with_states``: ``(sequence, final states)``."""
        raise NotImplementedError

    def _fused_segments(self, params, x, steps_mask, segments, initial):
        """The output and final states over a mask whose rows are each valid for one run of steps
        (``segments``, :func:`mask_segments`): the runs moved to the front, one fused call, moved back; a
        masked step's output is the carried ``h`` (the initial one before the run, the final one after
        it), as the reference's. The call runs over every step: a row's outputs up to its run's length
        are the run's (the padding after it never reaches them), and the final ``h`` is the one at its
        last valid step. Only an LSTM returning its states needs ``c`` there, which no output holds: a
        packed call (slower on the CPU: torch's packed LSTM there is no oneDNN kernel, measured 2.4x
        the full call's time on 32 x 200 x 128 -> 64, one thread)."""
        starts, lengths, shifted = segments
        if shifted:
            x = _roll_rows(x, starts)
        weights, has_biases = self.fused_weights(params)
        if self.rules.return_state and self.rules.n_states > 1:
            sequence, final = packed_fused_call(self, x, weights, has_biases, lengths, initial=initial)
        else:
            sequence = self.fused_call(x, weights, has_biases, initial=initial)
            final = (sequence[torch.arange(x.shape[0], device=x.device), lengths - 1],)
        if not self.rules.return_sequences:  # the last step is in the run or after it: the final h
            return final[0], final
        if shifted:
            sequence = _roll_rows(sequence, -starts)
        steps = torch.arange(x.shape[1], device=x.device)
        h0 = x.new_zeros(x.shape[0], self.units) if initial is None else initial[0]
        carried = torch.where((steps[None, :] < starts[:, None])[..., None], h0[:, None], final[0][:, None])
        return torch.where(steps_mask[..., None], sequence, carried), final

    def _fused_io(self, x, batch_sizes, bidirectional: bool, states: int = 1, initial=None):
        """The fused ops' leading and trailing arguments, batch-first or packed, with the initial states
        (zeros without ``initial``)."""
        batch = x.shape[0] if batch_sizes is None else int(batch_sizes[0])
        if initial is not None:
            hx = tuple(s[None].contiguous() for s in initial)
            hx = hx[0] if states == 1 else hx
        else:
            h0 = x.new_zeros(1 + bidirectional, batch, self.units)
            hx = h0 if states == 1 else (h0,) * states
        if batch_sizes is None:
            return (x, hx), (True,)
        return (x, batch_sizes, hx), ()

    @staticmethod
    def _fused_result(result, with_states: bool):
        """The fused op's ``(output, h_n(, c_n))`` as the output, or ``(output, (h, (c)))`` one direction."""
        if not with_states:
            return result[0]
        return result[0], tuple(s[0] for s in result[1:])

    def _loop(self, params, x, rec_mask, steps_mask=None, initial=None):
        """Run :meth:`_cell` over time; the input projection is one GEMM for
        all steps, as in the reference. Returns the outputs (a list, one per step) and the final states.

        The steps' projections are taken by one ``unbind``, whose backward stacks the steps' gradients
        once; indexing ``xw[:, t]`` per step would make autograd zero-fill a gradient of the whole ``xw``
        for every step (a 32 x 80 x 512 LSTM projection: 80 fills of 5 MB per backward pass, 20% of
        the imdb-lstm step on CPU, torch.profiler)."""
        xw = F.linear(x, params[0], self._input_bias(params))
        state = self._initial_state(x) if initial is None else initial
        outputs = []
        for t, xw_t in enumerate(xw.unbind(1)):
            h_in = state[0] if rec_mask is None else state[0] * rec_mask
            new = self._cell(params, xw_t, h_in, state)
            if steps_mask is None:
                state = new
            else:
                keep = steps_mask[:, t, None]
                state = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
            outputs.append(state[0])
        return outputs, state

    def _input_bias(self, params):
        return self.rules.split_bias(params[2] if self.rules.use_bias else None)[0]

    def _initial_state(self, x) -> tuple[torch.Tensor, ...]:
        return (x.new_zeros(x.shape[0], self.units),)

    def _cell(self, params, xw_t, h_in, state) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _flat_weights(self, params) -> tuple[list[torch.Tensor], bool]:
        if self.rules.use_bias:
            return [params[0], params[1], params[2], self.zero_bias], True
        return [params[0], params[1]], False


class SimpleRNN(_Recurrent):
    kind = "SimpleRNN"

    def _fusable(self) -> bool:
        return self.rules.activation in ("tanh", "relu")

    def fused_call(self, x, weights, has_biases, bidirectional=False, batch_sizes=None, initial=None,
                   with_states=False):
        op = torch.rnn_tanh if self.rules.activation == "tanh" else torch.rnn_relu
        head, tail = self._fused_io(x, batch_sizes, bidirectional, initial=initial)
        result = op(*head, weights, has_biases, 1, 0.0, torch.is_grad_enabled(), bidirectional, *tail)
        return self._fused_result(result, with_states)

    def _cell(self, params, xw_t, h_in, state):
        return (self.act(torch.addmm(xw_t, h_in, params[1].t())),)


class LSTM(_Recurrent):
    kind = "LSTM"

    def fused_call(self, x, weights, has_biases, bidirectional=False, batch_sizes=None, initial=None,
                   with_states=False):
        head, tail = self._fused_io(x, batch_sizes, bidirectional, states=2, initial=initial)
        result = torch.lstm(*head, weights, has_biases, 1, 0.0, torch.is_grad_enabled(), bidirectional, *tail)
        return self._fused_result(result, with_states)

    def _initial_state(self, x):
        zeros = x.new_zeros(x.shape[0], self.units)
        return zeros, zeros

    def _cell(self, params, xw_t, h_in, state):
        c_prev = state[1]
        i, f, g, o = torch.addmm(xw_t, h_in, params[1].t()).chunk(4, dim=1)
        c = self.rec_act(f) * c_prev + self.rec_act(i) * self.act(g)
        return self.rec_act(o) * self.act(c), c


class GRU(_Recurrent):
    """See the module docstring for the gate mapping. ``reset_after=False``
    (bias ``(3u,)`` on the input side only, ``(r * h) @ U_h``) has no fused
    torch op and always takes the loop."""

    kind = "GRU"

    def _gate_order(self):
        u = self.units
        return np.concatenate([np.arange(u, 2 * u), np.arange(u), np.arange(2 * u, 3 * u)])  # z,r,h -> r,z,n

    def _fusable(self) -> bool:
        return super()._fusable() and self.rules.reset_after

    def fused_weights(self, params):
        weights = [params[0], params[1]]
        if self.rules.use_bias:
            weights += list(self.rules.split_bias(params[2]))  # reset_after: (input, recurrent) rows
        return weights, self.rules.use_bias

    def fused_call(self, x, weights, has_biases, bidirectional=False, batch_sizes=None, initial=None,
                   with_states=False):
        head, tail = self._fused_io(x, batch_sizes, bidirectional, initial=initial)
        result = torch.gru(*head, weights, has_biases, 1, 0.0, torch.is_grad_enabled(), bidirectional, *tail)
        return self._fused_result(result, with_states)

    def _cell(self, params, xw_t, h_in, state):
        h_prev, u, U = state[0], self.units, params[1]
        x_r, x_z, x_n = xw_t.chunk(3, dim=1)
        if self.rules.reset_after:
            recurrent_bias = self.rules.split_bias(params[2] if self.rules.use_bias else None)[1]
            h_r, h_z, h_n = F.linear(h_in, U, recurrent_bias).chunk(3, dim=1)
            r, z = self.rec_act(x_r + h_r), self.rec_act(x_z + h_z)
            n = self.act(x_n + r * h_n)
        else:
            h_r, h_z = F.linear(h_in, U[: 2 * u]).chunk(2, dim=1)
            r, z = self.rec_act(x_r + h_r), self.rec_act(x_z + h_z)
            n = self.act(x_n + F.linear(r * h_in, U[2 * u:]))
        return (z * h_prev + (1.0 - z) * n,)


def mask_segments(mask: torch.Tensor):
    """``(starts, lengths, shifted)`` where every row of the boolean ``mask`` ``(batch, T)`` is valid
    for one run of at least one step -- the run's first step and length (on ``mask``'s device), and
    whether any run starts later than step 0 (a Python bool; right padding: none does) -- else
    ``None`` (a hole, an all-masked row). Reads the mask on the host: one transfer per call."""
    lengths = mask.sum(dim=1)
    starts = mask.to(torch.int32).argmax(dim=1)  # the first valid step (argmax: the first maximum)
    steps = torch.arange(mask.shape[1], device=mask.device)
    run = (steps[None, :] >= starts[:, None]) & (steps[None, :] < (starts + lengths)[:, None])
    ok = (lengths > 0).all() & torch.eq(mask, run).all()
    ok, shifted = torch.stack([ok, (starts > 0).any()]).tolist()
    return (starts, lengths, shifted) if ok else None


def packed_fused_call(layer: _Recurrent, x, weights, has_biases, lengths, bidirectional: bool = False,
                      initial=None):
    """``layer``'s fused op over the packed sequence of ``x``'s rows' first ``lengths`` steps (each row
    from its own initial state, ``initial`` or zeros): the output sequence ``(batch, T, units)`` (zeros
    past each row's length; ``bidirectional``: both directions, ``weights`` holding both, as
    :meth:`_Recurrent.fused_call`) and the forward direction's final states, each ``(batch, units)``
    -- the ones at each row's last valid step."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    if initial is not None:  # the packed rows are sorted by length
        initial = tuple(s.index_select(0, packed.sorted_indices) for s in initial)
    data, final = layer.fused_call(packed.data, weights, has_biases, bidirectional=bidirectional,
                                   batch_sizes=packed.batch_sizes, initial=initial, with_states=True)
    out = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    sequence = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
    return sequence, tuple(s.index_select(0, packed.unsorted_indices) for s in final)


def _roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``x`` ``(batch, T, ...)`` with each row rolled left by its shift: ``out[b, t] = x[b, (t + shifts[b]) % T]``."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (steps[None, :] + shifts[:, None]) % x.shape[1]
    return torch.take_along_dim(x, index.view(*index.shape, *(1,) * (x.dim() - 2)), dim=1)
