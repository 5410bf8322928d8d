"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras 3 semantics; the rules --
config, dropout, gate layout -- are :mod:`polykeras.layer_rules.recurrent`),
stepped with ``lax.scan``.

* Input ``(batch, timesteps, features)``, zero initial state; ``go_backwards``
  reverses the time axis, and with ``return_sequences`` the outputs stay in
  processing order (Keras does not flip them back).
* The input projection ``x_t @ kernel + bias`` is computed inside the scan, one
  time step at a time (as Keras does), not for all steps in one product
  before it: the precomputed ``(T, batch, G*units)`` projection and its
  gradient are two more whole-sequence temporaries, which pushed the IMDB
  LSTM step's XLA temp buffer from 30 MB to 43 MB. Above glibc's 32 MB mmap
  ceiling every call mmaps and unmaps its temp buffer afresh -- ~10,500 page
  faults, ~10 ms a step on XLA:CPU. XLA's reverse-mode differentiation of the
  scan is backpropagation through time.
* The scan always emits ``h_t`` as its per-step output and the last output is
  ``outputs[-1]``, not the final carry, even without ``return_sequences`` (as
  Keras's ``rnn`` does): the IMDB LSTM's compiled train step then takes 13.8
  instead of 15.6-16.2 ms (XLA:CPU, jax 0.10.2; the entry computations are the
  same, the backward loop differs), for a temp buffer of 31.1 instead of 29.8 MB.
* A Keras mask (:mod:`polykeras.layers.masking`) is scanned with the inputs: a
  masked step keeps the state (``where``), as the reference.
* ``dropout``: one ``(batch, features)`` mask (stream 0) multiplies every
  ``x_t``. ``recurrent_dropout``: one ``(batch, units)`` mask (stream 1)
  multiplies ``h_{t-1}`` only where it enters the recurrent product; the
  carried state is not masked.
* ``initial_state``: the node's inbound after the sequence (``[x, h0(, c0)]``)
  are the scan's initial carry; ``return_state``: the output packed with the
  final carry (:mod:`polykeras.layer_rules.recurrent`).
* Canonical weights and gate order: LSTM ``i, f, c, o``; GRU ``z, r, h`` with
  ``reset_after`` (bias ``(2, 3u)``: input and recurrent biases) or without
  (bias ``(3u,)``, reset gate applied before the recurrent product).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .. import activations
from .base import Layer


class _Recurrent(Layer):
    """The time loop shared by the three layers; subclasses define one cell step
    ``(U, recurrent_bias, xw_t, state, h_in) -> state`` where ``state[0]`` is ``h_t``."""

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.units = self.rules.units
        #: ``[x, h0(, c0)]`` with initial states
        self.multiple_inputs = self.rules.initial_state
        self.activation = activations.get(self.rules.activation)
        self.recurrent_activation = activations.get(self.rules.recurrent_activation)

    def _biases(self, weights):
        """``(input_bias, recurrent_bias)``, ``None`` where absent."""
        return self.rules.split_bias(weights[2] if self.rules.use_bias else None)

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        raise NotImplementedError

    def __call__(self, weights, x, ctx):
        given = None
        if self.multiple_inputs:
            x, given = x[0], tuple(x[1:])
        kernel, U = weights[0], weights[1]
        input_bias, recurrent_bias = self._biases(weights)
        rules = self.rules
        steps_mask = ctx.mask
        if rules.go_backwards:
            x = x[:, ::-1]
            steps_mask = None if steps_mask is None else steps_mask[:, ::-1]
        batch = x.shape[0]
        if rules.input_mask_active(ctx.training):
            x = x * ctx.dropout_mask(0, (batch, x.shape[2]), rules.dropout)[:, None, :]
        rec_mask = None
        if rules.recurrent_mask_active(ctx.training):
            rec_mask = ctx.dropout_mask(1, (batch, self.units), rules.recurrent_dropout)
        xs = jnp.swapaxes(x, 0, 1)  # time-major (T, batch, features)
        if steps_mask is not None:
            xs = (xs, jnp.swapaxes(steps_mask, 0, 1)[:, :, None])

        def step(state, x_t):
            x_t, keep = x_t if steps_mask is not None else (x_t, None)
            xw_t = x_t @ kernel
            if input_bias is not None:
                xw_t = xw_t + input_bias
            h_in = state[0] if rec_mask is None else state[0] * rec_mask
            cell = jax.checkpoint(self._cell, policy=jax.checkpoint_policies.everything_saveable)
            new = cell(U, recurrent_bias, xw_t, state, h_in)
            state = new if keep is None else tuple(jnp.where(keep, n, s) for n, s in zip(new, state))
            return state, state[0]  # see the module docstring: faster than the final carry

        dtype = jnp.result_type(x, kernel)
        initial = (tuple(jnp.zeros((batch, self.units), dtype) for _ in range(rules.n_states)) if given is None
                   else tuple(s.astype(dtype) for s in given))
        final, outputs = lax.scan(step, initial, xs)
        output = jnp.swapaxes(outputs, 0, 1) if rules.return_sequences else outputs[-1]
        if not rules.return_state:
            return output
        return jnp.concatenate([output if rules.return_sequences else output[:, None], jnp.stack(final, axis=1)],
                               axis=1)


class SimpleRNN(_Recurrent):
    """``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``."""

    kind = "SimpleRNN"

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        return (self.activation(xw_t + h_in @ U),)


class LSTM(_Recurrent):
    """``c_t = f * c_{t-1} + i * g``, ``h_t = o * activation(c_t)``, gates i, f, c, o."""

    kind = "LSTM"

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        c_prev = state[1]
        z_i, z_f, z_c, z_o = jnp.split(xw_t + h_in @ U, 4, axis=-1)
        ra = self.recurrent_activation
        c = ra(z_f) * c_prev + ra(z_i) * self.activation(z_c)
        return ra(z_o) * self.activation(c), c


class GRU(_Recurrent):
    """``h_t = z * h_{t-1} + (1 - z) * hh``, gates z, r, h; see the module docstring."""

    kind = "GRU"

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        h_prev, u, ra = state[0], self.units, self.recurrent_activation
        x_z, x_r, x_h = jnp.split(xw_t, 3, axis=-1)
        if self.rules.reset_after:
            hu = h_in @ U
            if recurrent_bias is not None:
                hu = hu + recurrent_bias
            h_z, h_r, h_h = jnp.split(hu, 3, axis=-1)
            z, r = ra(x_z + h_z), ra(x_r + h_r)
            hh = self.activation(x_h + r * h_h)
        else:
            h_z, h_r = jnp.split(h_in @ U[:, :2 * u], 2, axis=-1)
            z, r = ra(x_z + h_z), ra(x_r + h_r)
            hh = self.activation(x_h + (r * h_in) @ U[:, 2 * u:])
        return (z * h_prev + (1.0 - z) * hh,)
