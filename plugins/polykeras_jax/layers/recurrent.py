"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras 3 semantics, exactly as
:mod:`polykeras_numpy.layers.recurrent` defines them), stepped with ``lax.scan``.

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
* ``dropout``: one ``(batch, features)`` mask (stream 0) multiplies every
  ``x_t``. ``recurrent_dropout``: one ``(batch, units)`` mask (stream 1)
  multiplies ``h_{t-1}`` only where it enters the recurrent product; the
  carried state is not masked.
* Canonical weights and gate order: LSTM ``i, f, c, o``; GRU ``z, r, h`` with
  ``reset_after`` (bias ``(2, 3u)``: input and recurrent biases) or without
  (bias ``(3u,)``, reset gate applied before the recurrent product).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from .. import activations
from .base import Layer


class _Recurrent(Layer):
    """The time loop shared by the three layers; subclasses define one cell step
    ``(U, recurrent_bias, xw_t, state, h_in) -> state`` where ``state[0]`` is ``h_t``."""

    n_states: ClassVar[int] = 1

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        cfg = self.config
        self.units = int(cfg["units"])
        self.activation = activations.get(cfg.get("activation", "tanh"))
        self.recurrent_activation = activations.get(cfg.get("recurrent_activation", "sigmoid"))
        self.use_bias = bool(cfg.get("use_bias", True))
        self.return_sequences = bool(cfg.get("return_sequences", False))
        self.go_backwards = bool(cfg.get("go_backwards", False))
        self.dropout = float(cfg.get("dropout", 0.0) or 0.0)
        self.recurrent_dropout = float(cfg.get("recurrent_dropout", 0.0) or 0.0)
        for option in ("return_state", "stateful"):
            if cfg.get(option, False):
                raise NotImplementedError(f"{self.kind} layer {spec.name!r}: {option}=True is not supported")

    def _biases(self, weights):
        """``(input_bias, recurrent_bias)``, ``None`` where absent."""
        return (weights[2] if self.use_bias else None), None

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        raise NotImplementedError

    def __call__(self, weights, x, ctx):
        kernel, U = weights[0], weights[1]
        input_bias, recurrent_bias = self._biases(weights)
        if self.go_backwards:
            x = x[:, ::-1]
        batch = x.shape[0]
        if ctx.training and 0.0 < self.dropout < 1.0:
            x = x * ctx.dropout_mask(0, (batch, x.shape[2]), self.dropout)[:, None, :]
        rec_mask = None
        if ctx.training and 0.0 < self.recurrent_dropout < 1.0:
            rec_mask = ctx.dropout_mask(1, (batch, self.units), self.recurrent_dropout)
        xs = jnp.swapaxes(x, 0, 1)  # time-major (T, batch, features)

        def step(state, x_t):
            xw_t = x_t @ kernel
            if input_bias is not None:
                xw_t = xw_t + input_bias
            h_in = state[0] if rec_mask is None else state[0] * rec_mask
            state = jax.checkpoint(self._cell, policy=jax.checkpoint_policies.everything_saveable)(U, recurrent_bias, xw_t, state, h_in)
            return state, state[0]  # see the module docstring: faster than the final carry

        initial = tuple(jnp.zeros((batch, self.units), jnp.result_type(x, kernel)) for _ in range(self.n_states))
        final, outputs = lax.scan(step, initial, xs)
        return jnp.swapaxes(outputs, 0, 1) if self.return_sequences else outputs[-1]


class SimpleRNN(_Recurrent):
    """``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``."""

    kind = "SimpleRNN"

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        return (self.activation(xw_t + h_in @ U),)


class LSTM(_Recurrent):
    """``c_t = f * c_{t-1} + i * g``, ``h_t = o * activation(c_t)``, gates i, f, c, o."""

    kind = "LSTM"
    n_states = 2

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        c_prev = state[1]
        z_i, z_f, z_c, z_o = jnp.split(xw_t + h_in @ U, 4, axis=-1)
        ra = self.recurrent_activation
        c = ra(z_f) * c_prev + ra(z_i) * self.activation(z_c)
        return ra(z_o) * self.activation(c), c


class GRU(_Recurrent):
    """``h_t = z * h_{t-1} + (1 - z) * hh``, gates z, r, h; see the module docstring."""

    kind = "GRU"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.reset_after = bool(self.config.get("reset_after", True))

    def _biases(self, weights):
        if not self.use_bias:
            return None, None
        bias = weights[2]
        return (bias[0], bias[1]) if self.reset_after else (bias, None)

    def _cell(self, U, recurrent_bias, xw_t, state, h_in):
        h_prev, u, ra = state[0], self.units, self.recurrent_activation
        x_z, x_r, x_h = jnp.split(xw_t, 3, axis=-1)
        if self.reset_after:
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
