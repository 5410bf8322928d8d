"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras 3 semantics), with
backpropagation through time written out by hand.

The config, the dropout rule and the gate layout are the core's rules,
:mod:`polykeras.layer_rules.recurrent`. Common behaviour (Keras ``RNN`` +
``DropoutRNNCell``):

* Input ``(batch, timesteps, features)``; the initial state is zeros, or with
  ``initial_state`` the node's further inbound (``h0``, LSTM's ``c0``): the
  kernel then takes ``[x, h0(, c0)]`` and its backward returns their gradients
  too -- ``dstate`` left after the first processed step.
* ``return_state``: the output is packed, ``(batch, S + n_states, units)`` --
  the output steps then the final states (:mod:`polykeras.layer_rules.recurrent`);
  backward, the final states' part of ``dy`` seeds ``dstate`` at the last step.
* ``go_backwards`` processes the time axis reversed; with
  ``return_sequences`` the output sequence is in *processing* order (Keras
  does not flip it back). Without it the output is the last step's ``h``.
* With a mask (:mod:`polykeras.layers.masking`, reversed with the sequence
  under ``go_backwards``), a masked step keeps the state: ``state_t =
  where(m_t, cell(state_{t-1}), state_{t-1})``, so the output there is the
  carried ``h``; backward, a masked step passes ``dstate`` straight through.
* ``dropout`` (training only, ``0 < rate < 1``): one mask of shape
  ``(batch, features)`` is drawn per call (``stream=0``) and multiplies
  ``x_t`` at every step. ``recurrent_dropout``: one mask ``(batch, units)``
  (``stream=1``) multiplies ``h_{t-1}`` only where it enters the recurrent
  matrix product -- the state carried to the next step (GRU's
  ``z * h_{t-1}``, LSTM's ``c``) is not masked. All gates share each mask.
  (This is exactly Keras 3's SimpleRNNCell and LSTMCell. The Keras 3 GRUCell
  sources we read apply no recurrent dropout at all on the default fused path,
  ``implementation=2``. The reference uses the same rule for all three layers
  on purpose.)
* Weights in canonical Keras layout and gate order: ``kernel (in, G*units)``,
  ``recurrent_kernel (units, G*units)``, ``bias`` -- with G = 1 (SimpleRNN),
  4 (LSTM: i, f, c, o) or 3 (GRU: z, r, h).

Because the input projection ``x_t @ kernel (+ bias)`` does not depend on the
state, it is done for all steps at once before the time loop (and its
gradient after the backward loop); only the recurrent part is stepped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import activations
from .base import Kernel


class _Recurrent(Kernel):
    """The time loop shared by all three layers; subclasses define one cell step.

    A cell step maps ``(xw_t, state) -> state`` where ``xw_t`` is the input
    projection of step ``t`` and ``state[0]`` is the output ``h_t``; its
    backward maps ``dstate -> (dxw_t, dstate_prev)`` and accumulates the
    recurrent-weight gradients into ``grads``.
    """

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        #: ``[x, h0(, c0)]`` with initial states (the program then hands a list, and takes one back)
        self.multiple_inputs = self.rules.initial_state
        self.units = self.rules.units
        self.activation, self.recurrent_activation = self.rules.activation, self.rules.recurrent_activation
        activations.check(self.activation)
        activations.check(self.recurrent_activation)

    # -- pieces subclasses may override --------------------------------------
    def _biases(self, weights) -> tuple[Any, Any]:
        """``(input_bias, recurrent_bias)``; ``None`` where absent."""
        return self.rules.split_bias(weights[2] if self.rules.use_bias else None)

    def _bias_gradient(self, input_part: np.ndarray, grads: dict) -> np.ndarray:
        return input_part

    def _cell(self, U, recurrent_bias, xw_t, state, rec_mask):
        raise NotImplementedError

    def _cell_backward(self, U, step, dstate, rec_mask, grads):
        raise NotImplementedError

    # -- the time loop --------------------------------------------------------
    def _masks(self, x, ctx):
        batch, _, features = x.shape
        rules, input_mask, recurrent_mask = self.rules, None, None
        if rules.input_mask_active(ctx.training):
            input_mask = ctx.dropout_mask((batch, features), rules.dropout, 0)
        if rules.recurrent_mask_active(ctx.training):
            recurrent_mask = ctx.dropout_mask((batch, self.units), rules.recurrent_dropout, 1)
        return input_mask, recurrent_mask

    def forward(self, weights, x, ctx):
        initial = None
        if self.multiple_inputs:
            x, initial = x[0], tuple(np.asarray(s, dtype=self.dtype) for s in x[1:])
        kernel, U = weights[0], weights[1]
        input_bias, recurrent_bias = self._biases(weights)
        steps_mask = ctx.mask
        if self.rules.go_backwards:
            x = x[:, ::-1]
            steps_mask = None if steps_mask is None else steps_mask[:, ::-1]
        input_mask, rec_mask = self._masks(x, ctx)
        x_in = x if input_mask is None else x * input_mask[:, None, :]
        xw = x_in @ kernel  # (batch, T, G * units): all steps at once
        if input_bias is not None:
            xw = xw + input_bias
        state = initial or tuple(np.zeros((x.shape[0], self.units), dtype=self.dtype)
                                 for _ in range(self.rules.n_states))
        outputs, steps = [], []
        for t in range(x.shape[1]):
            new, step = self._cell(U, recurrent_bias, xw[:, t], state, rec_mask)
            state = new if steps_mask is None else tuple(np.where(steps_mask[:, t, None], n, s)
                                                         for n, s in zip(new, state))
            outputs.append(state[0])
            steps.append(step)
        y = np.stack(outputs, axis=1) if self.rules.return_sequences else outputs[-1]
        if self.rules.return_state:  # packed: the output steps, then the final states (one step each)
            y = np.concatenate([y if self.rules.return_sequences else y[:, None], np.stack(state, axis=1)], axis=1)
        return y, (x_in, input_mask, rec_mask, steps, steps_mask)

    def backward(self, weights, cache, dy):
        x_in, input_mask, rec_mask, steps, steps_mask = cache
        kernel, U = weights[0], weights[1]
        batch, T, features = x_in.shape
        grads = {"recurrent_kernel": np.zeros_like(U)}
        if self._biases(weights)[1] is not None:
            grads["recurrent_bias"] = np.zeros(U.shape[1], dtype=U.dtype)
        dxw = np.empty((batch, T, U.shape[1]), dtype=dy.dtype)
        n = self.rules.n_states
        if self.rules.return_state:  # the final states' gradients start the loop; the rest is the output's
            dstate = tuple(np.array(dy[:, i - n]) for i in range(n))
            dy = dy[:, :-n] if self.rules.return_sequences else dy[:, 0]
        else:
            dstate = tuple(np.zeros((batch, self.units), dtype=dy.dtype) for _ in range(n))
        for t in reversed(range(T)):
            if self.rules.return_sequences:
                dh_out = dy[:, t]
            else:
                dh_out = dy if t == T - 1 else 0.0
            dstate = (dstate[0] + dh_out,) + dstate[1:]
            if steps_mask is None:
                dxw[:, t], dstate = self._cell_backward(U, steps[t], dstate, rec_mask, grads)
                continue
            keep = steps_mask[:, t, None]  # a masked step passes dstate through; the cell sees none of it
            dxw[:, t], d_prev = self._cell_backward(U, steps[t], tuple(np.where(keep, d, 0) for d in dstate),
                                                    rec_mask, grads)
            dstate = tuple(p + np.where(keep, 0, d) for p, d in zip(d_prev, dstate))
        dkernel = x_in.reshape(-1, features).T @ dxw.reshape(-1, U.shape[1])
        dx = dxw @ kernel.T
        if input_mask is not None:
            dx = dx * input_mask[:, None, :]
        if self.rules.go_backwards:
            dx = dx[:, ::-1]
        dweights = [dkernel, grads["recurrent_kernel"]]
        if self.rules.use_bias:
            dweights.append(self._bias_gradient(dxw.sum(axis=(0, 1)), grads))
        if self.multiple_inputs:  # what is left of dstate before the first step is the initial states'
            return [np.ascontiguousarray(dx), *dstate], dweights
        return np.ascontiguousarray(dx), dweights

    # -- small helpers for the cells ----------------------------------------
    @staticmethod
    def _masked(h, rec_mask):
        """``h`` as it enters the recurrent matrix product."""
        return h if rec_mask is None else h * rec_mask

    @staticmethod
    def _unmask(dh_masked, rec_mask):
        return dh_masked if rec_mask is None else dh_masked * rec_mask


class SimpleRNN(_Recurrent):
    """``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Weights ``kernel (in, units)``, ``recurrent_kernel (units, units)``,
    ``bias (units,)``.
    """

    kind = "SimpleRNN"

    def _cell(self, U, recurrent_bias, xw_t, state, rec_mask):
        h_in = self._masked(state[0], rec_mask)
        a = xw_t + h_in @ U
        h = activations.forward(self.activation, a)
        return (h,), (h_in, a, h)

    def _cell_backward(self, U, step, dstate, rec_mask, grads):
        h_in, a, h = step
        da = activations.backward(self.activation, a, h, dstate[0])
        grads["recurrent_kernel"] += h_in.T @ da
        return da, (self._unmask(da @ U.T, rec_mask),)


class LSTM(_Recurrent):
    """Long short-term memory, gate order i, f, c, o::

        z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
        i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
        c_t = f * c_{t-1} + i * g;  h_t = o * activation(c_t)

    Weights ``kernel (in, 4u)``, ``recurrent_kernel (u, 4u)``, ``bias (4u,)``.
    ``unit_forget_bias`` only affects initialisation, not the math.
    """

    kind = "LSTM"

    def _cell(self, U, recurrent_bias, xw_t, state, rec_mask):
        h_prev, c_prev = state
        h_in = self._masked(h_prev, rec_mask)
        z = xw_t + h_in @ U
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)
        i = activations.forward(self.recurrent_activation, z_i)
        f = activations.forward(self.recurrent_activation, z_f)
        g = activations.forward(self.activation, z_c)
        o = activations.forward(self.recurrent_activation, z_o)
        c = f * c_prev + i * g
        act_c = activations.forward(self.activation, c)
        h = o * act_c
        return (h, c), (h_in, c_prev, (z_i, z_f, z_c, z_o), (i, f, g, o), c, act_c)

    def _cell_backward(self, U, step, dstate, rec_mask, grads):
        h_in, c_prev, (z_i, z_f, z_c, z_o), (i, f, g, o), c, act_c = step
        dh, dc_carried = dstate
        dc = dc_carried + activations.backward(self.activation, c, act_c, dh * o)
        ra = self.recurrent_activation
        dz = np.concatenate(
            [
                activations.backward(ra, z_i, i, dc * g),
                activations.backward(ra, z_f, f, dc * c_prev),
                activations.backward(self.activation, z_c, g, dc * i),
                activations.backward(ra, z_o, o, dh * act_c),
            ],
            axis=-1,
        )
        grads["recurrent_kernel"] += h_in.T @ dz
        return dz, (self._unmask(dz @ U.T, rec_mask), dc * f)


class GRU(_Recurrent):
    """Gated recurrent unit, gate order z (update), r (reset), h (candidate).

    ``reset_after=True`` (Keras default, cuDNN-compatible), bias ``(2, 3u)``::

        x_z, x_r, x_h = x_t @ kernel + bias[0]
        h_z, h_r, h_h = h_{t-1} @ recurrent_kernel + bias[1]
        z = ra(x_z + h_z);  r = ra(x_r + h_r);  hh = act(x_h + r * h_h)

    ``reset_after=False``, bias ``(3u,)`` added to the input part only::

        h_z, h_r = h_{t-1} @ recurrent_kernel[:, :2u]
        hh = act(x_h + (r * h_{t-1}) @ recurrent_kernel[:, 2u:])

    and in both ``h_t = z * h_{t-1} + (1 - z) * hh``.
    """

    kind = "GRU"

    def _bias_gradient(self, input_part, grads):
        if self.rules.reset_after:
            return np.stack([input_part, grads["recurrent_bias"]])
        return input_part

    def _cell(self, U, recurrent_bias, xw_t, state, rec_mask):
        (h_prev,) = state
        u = self.units
        h_in = self._masked(h_prev, rec_mask)
        x_z, x_r, x_h = np.split(xw_t, 3, axis=-1)
        if self.rules.reset_after:
            hu = h_in @ U
            if recurrent_bias is not None:
                hu = hu + recurrent_bias
            h_z, h_r, h_h = np.split(hu, 3, axis=-1)
        else:
            h_z, h_r = np.split(h_in @ U[:, : 2 * u], 2, axis=-1)
        a_z, a_r = x_z + h_z, x_r + h_r
        z = activations.forward(self.recurrent_activation, a_z)
        r = activations.forward(self.recurrent_activation, a_r)
        if self.rules.reset_after:
            a_h = x_h + r * h_h
        else:
            a_h = x_h + (r * h_in) @ U[:, 2 * u:]
            h_h = None
        hh = activations.forward(self.activation, a_h)
        h = z * h_prev + (1.0 - z) * hh
        return (h,), (h_prev, h_in, a_z, a_r, a_h, z, r, hh, h_h)

    def _cell_backward(self, U, step, dstate, rec_mask, grads):
        h_prev, h_in, a_z, a_r, a_h, z, r, hh, h_h = step
        u, ra = self.units, self.recurrent_activation
        (dh,) = dstate
        dh_prev = dh * z  # through the carried (unmasked) state
        da_h = activations.backward(self.activation, a_h, hh, dh * (1.0 - z))
        if self.rules.reset_after:
            dr = da_h * h_h
            da_z = activations.backward(ra, a_z, z, dh * (h_prev - hh))
            da_r = activations.backward(ra, a_r, r, dr)
            dhu = np.concatenate([da_z, da_r, da_h * r], axis=-1)
            grads["recurrent_kernel"] += h_in.T @ dhu
            if "recurrent_bias" in grads:
                grads["recurrent_bias"] += dhu.sum(axis=0)
            dh_in = dhu @ U.T
        else:
            U_zr, U_h = U[:, : 2 * u], U[:, 2 * u:]
            d_reset_h = da_h @ U_h.T  # gradient w.r.t. (r * h_in)
            da_z = activations.backward(ra, a_z, z, dh * (h_prev - hh))
            da_r = activations.backward(ra, a_r, r, d_reset_h * h_in)
            da_zr = np.concatenate([da_z, da_r], axis=-1)
            grads["recurrent_kernel"][:, : 2 * u] += h_in.T @ da_zr
            grads["recurrent_kernel"][:, 2 * u:] += (r * h_in).T @ da_h
            dh_in = da_zr @ U_zr.T + d_reset_h * r
        dxw_t = np.concatenate([da_z, da_r, da_h], axis=-1)
        return dxw_t, (dh_prev + self._unmask(dh_in, rec_mask),)
