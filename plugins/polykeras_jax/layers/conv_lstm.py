"""ConvLSTM2D and ConvLSTM1D in jax: ``lax.scan`` over the steps, each step two
``lax.conv_general_dilated`` (the rules are :mod:`polykeras.layer_rules.conv_lstm`,
the math the NumPy reference's).

* Both convolutions run inside the scan's step, one time step at a time, as
  the recurrent layers' input projection does (:mod:`.recurrent`: no
  whole-sequence temporaries for XLA to keep); channels_last throughout
  (``NHWC``/``HWIO``, ``NWC``/``WIO``), Keras's weights as they are.
* Padding is TensorFlow's, given to XLA as explicit ``(before, after)``
  pairs; the recurrent convolution is stride 1, ``"same"``, no dilation.
* ``initial_state``: the node's inbound after the sequence (``[x, h0, c0]``)
  are the scan's initial carry.
* XLA's reverse-mode differentiation of the scan is backpropagation through time.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .. import activations
from .base import Layer
from .conv import _DIMENSIONS


class ConvLSTM2D(Layer):
    kind = "ConvLSTM2D"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        rules = self.rules
        self.activation = activations.get(rules.activation)
        self.recurrent_activation = activations.get(rules.recurrent_activation)
        #: ``[x, h0, c0]`` with initial states
        self.multiple_inputs = rules.initial_state
        amounts = rules.step_padding(spec.input_shapes[0][2:-1])
        self.pads = [a[:2] for a in amounts]
        self.out_spatial = tuple(a[2] for a in amounts)
        self.rec_pads = rules.recurrent_padding(self.out_spatial)

    def __call__(self, weights, x, ctx):
        rules, given = self.rules, None
        if self.multiple_inputs:
            x, given = x[0], x[1:]
        kernel, U = weights[0], weights[1]
        bias = weights[2] if rules.use_bias else None
        dims = _DIMENSIONS[rules.rank]
        if rules.go_backwards:
            x = x[:, ::-1]
        batch = x.shape[0]
        if rules.input_mask_active(ctx.training):  # the step input's shape, the same for every step
            x = x * ctx.dropout_mask(0, (batch,) + tuple(x.shape[2:]), rules.dropout)[:, None]
        state_shape = (batch,) + self.out_spatial + (rules.filters,)
        rec_mask = None
        if rules.recurrent_mask_active(ctx.training):
            rec_mask = ctx.dropout_mask(1, state_shape, rules.recurrent_dropout)
        ra, act = self.recurrent_activation, self.activation

        def step(state, x_t):
            h, c = state
            z = lax.conv_general_dilated(x_t, kernel, window_strides=rules.strides, padding=self.pads,
                                         rhs_dilation=rules.dilation_rate, dimension_numbers=dims)
            if bias is not None:
                z = z + bias
            h_in = h if rec_mask is None else h * rec_mask
            z = z + lax.conv_general_dilated(h_in, U, window_strides=(1,) * rules.rank, padding=self.rec_pads,
                                             dimension_numbers=dims)
            z_i, z_f, z_c, z_o = jnp.split(z, 4, axis=-1)
            c = ra(z_f) * c + ra(z_i) * act(z_c)
            h = ra(z_o) * act(c)
            return (h, c), h

        dtype = jnp.result_type(x, kernel)
        initial = ((jnp.zeros(state_shape, dtype),) * 2 if given is None
                   else tuple(s.astype(dtype) for s in given))
        (h, c), outputs = lax.scan(step, initial, jnp.swapaxes(x, 0, 1))
        output = jnp.swapaxes(outputs, 0, 1) if rules.return_sequences else outputs[-1]
        if not rules.return_state:
            return output
        return jnp.concatenate([output if rules.return_sequences else output[:, None], jnp.stack([h, c], axis=1)],
                               axis=1)


class ConvLSTM1D(ConvLSTM2D):
    kind = "ConvLSTM1D"
