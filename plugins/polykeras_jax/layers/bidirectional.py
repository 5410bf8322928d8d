"""Bidirectional in JAX (Keras 3 semantics, :mod:`polykeras.layer_rules.bidirectional`):
the two wrapped layers are this backend's own ``lax.scan`` recurrent layers
(:mod:`.recurrent`), the backward one through its ``go_backwards`` path; their outputs
zeroed at masked steps (with ``return_sequences``), the backward one flipped back, merged; with
``return_state`` the final states packed after the merged output. With ``initial_state`` (the
node's inputs ``[x, *forward states, *backward states]``) each layer gets ``[x, *its states]``,
its scan's initial carry.
"""

from __future__ import annotations

import jax.numpy as jnp

from .base import Layer, LayerContext


class _BackwardStreams:
    """``ctx`` as the backward layer sees it: its dropout masks from streams shifted past the forward's."""

    def __init__(self, ctx: LayerContext, shift: int):
        self._ctx, self._shift = ctx, shift

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def dropout_mask(self, stream, shape, rate):
        return self._ctx.dropout_mask(stream + self._shift, shape, rate)


class Bidirectional(Layer):
    kind = "Bidirectional"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        from . import LAYERS

        rules = self.rules
        self.forward_layer = LAYERS[rules.forward_spec.kind](rules.forward_spec, dtype)
        self.backward_layer = LAYERS[rules.backward_spec.kind](rules.backward_spec, dtype)
        #: ``[x, *forward states, *backward states]`` with initial states
        self.multiple_inputs = rules.initial_state

    def __call__(self, weights, x, ctx):
        rules, n = self.rules, self.rules.n_forward
        x_f, x_b = rules.split_inputs(x)  # with initial states: [x, *forward states], [x, *backward states]
        y_f = self.forward_layer(weights[:n], x_f, ctx)
        y_b = self.backward_layer(weights[n:], x_b, _BackwardStreams(ctx, rules.backward_stream))
        states = None
        if rules.return_state:  # each packed: its output, then its final states
            (y_f, states_f), (y_b, states_b) = self._unpack(y_f), self._unpack(y_b)
            states = states_f + states_b
        mask = ctx.mask
        if rules.return_sequences:
            if mask is not None:  # Keras's zero_output_for_mask, in each layer's processing order
                keep_f = mask[:, ::-1] if rules.forward.go_backwards else mask
                keep_b = mask[:, ::-1] if rules.backward.go_backwards else mask
                y_f = jnp.where(keep_f[:, :, None], y_f, 0)
                y_b = jnp.where(keep_b[:, :, None], y_b, 0)
            y_b = y_b[:, ::-1]
        mode = rules.merge_mode
        if mode in ("concat", None):
            y = jnp.concatenate([y_f, y_b], axis=-1)
        elif mode == "sum":
            y = y_f + y_b
        elif mode == "ave":
            y = (y_f + y_b) / 2
        else:
            y = y_f * y_b
        if states is None:
            return y
        width = y.shape[-1]
        padded = [jnp.pad(s, ((0, 0), (0, width - s.shape[-1])))[:, None] for s in states]
        return jnp.concatenate([y if rules.return_sequences else y[:, None]] + padded, axis=1)

    def _unpack(self, packed):
        """A wrapped layer's packed output as ``(output, [states])`` (:mod:`polykeras.layer_rules.bidirectional`)."""
        k = self.rules.n_states
        output = packed[:, :-k] if self.rules.return_sequences else packed[:, 0]
        return output, [packed[:, i - k] for i in range(k)]
