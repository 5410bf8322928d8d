"""Bidirectional (Keras 3 semantics, :mod:`polykeras.layer_rules.bidirectional`):
two recurrent kernels of :mod:`.recurrent` over the same input, merged.

Forward::

    y_f = zero_masked(forward(x))          # each in its own processing order
    y_b = zero_masked(backward(x))
    y_b = y_b[:, ::-1]                     # with return_sequences only
    y   = merge(y_f, y_b)                  # concat | sum | ave | mul

where ``zero_masked`` zeroes the output at masked steps (with
``return_sequences`` only; Keras's ``zero_output_for_mask``), the mask taken in
that layer's processing order. Backward splits ``dy`` by the merge --
``concat``: the two halves; ``sum``: ``dy`` to both; ``ave``: ``dy / 2`` to
both; ``mul``: ``dy * y_b`` and ``dy * y_f`` -- undoes the flip and the zeroing,
runs each kernel's own backward, and adds the two input gradients.

With ``return_state`` each kernel's output is packed (its output steps, then its final states);
the states are split off before the zeroing and merge, and packed after the merged output, each
zero-padded to its width (:mod:`polykeras.layer_rules.bidirectional`); backward, the states'
rows of ``dy`` go back to their kernels with the rest.

With ``initial_state`` the node's inputs are ``[x, *forward states, *backward states]``: each
kernel gets ``[x, *its states]`` and hands back ``[dx, *d_states]``; the two ``dx`` add up.
"""

from __future__ import annotations

import numpy as np

from .base import ForwardContext, Kernel


class Bidirectional(Kernel):
    kind = "Bidirectional"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        from . import KERNELS

        rules = self.rules
        self.forward_kernel = KERNELS[rules.forward_spec.kind](rules.forward_spec, dtype)
        self.backward_kernel = KERNELS[rules.backward_spec.kind](rules.backward_spec, dtype)
        #: ``[x, *forward states, *backward states]`` with initial states (a list in, a list of gradients out)
        self.multiple_inputs = rules.initial_state

    def _output_masks(self, mask):
        """Each direction's output-step mask ``(batch, T, 1)`` in its processing order, or ``None``."""
        if mask is None or not self.rules.return_sequences:
            return None, None
        return tuple((mask[:, ::-1] if sub.go_backwards else mask)[:, :, None]
                     for sub in (self.rules.forward, self.rules.backward))

    def forward(self, weights, x, ctx):
        rules, n = self.rules, self.rules.n_forward
        shift = rules.backward_stream
        backward_ctx = ForwardContext(ctx.training, lambda shape, rate, stream: ctx.dropout_mask(shape, rate,
                                                                                                 stream + shift),
                                      ctx.mask)
        x_f, x_b = rules.split_inputs(x)
        y_f, cache_f = self.forward_kernel.forward(weights[:n], x_f, ctx)
        y_b, cache_b = self.backward_kernel.forward(weights[n:], x_b, backward_ctx)
        states = None
        if rules.return_state:  # each packed: its output, then its final states
            (y_f, states_f), (y_b, states_b) = self._unpack(y_f), self._unpack(y_b)
            states = states_f + states_b
        keep_f, keep_b = self._output_masks(ctx.mask)
        if keep_f is not None:
            y_f, y_b = np.where(keep_f, y_f, 0), np.where(keep_b, y_b, 0)
        if rules.return_sequences:
            y_b = y_b[:, ::-1]
        mode = rules.merge_mode
        if mode in ("concat", None):
            y = np.concatenate([y_f, y_b], axis=-1)
        elif mode == "sum":
            y = y_f + y_b
        elif mode == "ave":
            y = (y_f + y_b) / 2
        else:  # mul
            y = y_f * y_b
        if states is not None:
            width = y.shape[-1]
            padded = [np.pad(s, ((0, 0), (0, width - s.shape[-1])))[:, None] for s in states]
            y = np.concatenate([y if rules.return_sequences else y[:, None]] + padded, axis=1)
        return y, (cache_f, cache_b, y_f, y_b, keep_f, keep_b)

    def _unpack(self, packed):
        """A wrapped kernel's packed output as ``(output, [states])``."""
        k = self.rules.n_states
        output = packed[:, :-k] if self.rules.return_sequences else packed[:, 0]
        return output, [packed[:, i - k] for i in range(k)]

    def _pack(self, d_output, d_states):
        """A wrapped kernel's packed ``dy`` from its output's and its states' gradients."""
        return np.concatenate([d_output if self.rules.return_sequences else d_output[:, None]]
                              + [d[:, None] for d in d_states], axis=1)

    def backward(self, weights, cache, dy):
        cache_f, cache_b, y_f, y_b, keep_f, keep_b = cache
        rules, n = self.rules, self.rules.n_forward
        mode = rules.merge_mode
        if rules.return_state:  # the states' rows (cut to each layer's units), then the merged output's
            k = rules.n_states
            d_states = [dy[:, i - 2 * k, :units] for i, units in
                        enumerate([rules.forward.units] * k + [rules.backward.units] * k)]
            dy = dy[:, :-2 * k] if rules.return_sequences else dy[:, 0]
        if mode in ("concat", None):
            dy_f, dy_b = dy[..., :rules.forward.units], dy[..., rules.forward.units:]
        elif mode == "sum":
            dy_f, dy_b = dy, dy
        elif mode == "ave":
            dy_f = dy_b = dy / 2
        else:  # mul
            dy_f, dy_b = dy * y_b, dy * y_f
        if rules.return_sequences:
            dy_b = dy_b[:, ::-1]
        if keep_f is not None:
            dy_f, dy_b = np.where(keep_f, dy_f, 0), np.where(keep_b, dy_b, 0)
        if rules.return_state:
            dy_f, dy_b = self._pack(dy_f, d_states[:k]), self._pack(dy_b, d_states[k:])
        dx_f, dw_f = self.forward_kernel.backward(weights[:n], cache_f, np.ascontiguousarray(dy_f))
        dx_b, dw_b = self.backward_kernel.backward(weights[n:], cache_b, np.ascontiguousarray(dy_b))
        if self.multiple_inputs:  # [dx, *forward states'] and [dx, *backward states']
            return [dx_f[0] + dx_b[0], *dx_f[1:], *dx_b[1:]], list(dw_f) + list(dw_b)
        return dx_f + dx_b, list(dw_f) + list(dw_b)
