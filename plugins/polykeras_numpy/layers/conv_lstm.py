"""ConvLSTM2D and ConvLSTM1D: the LSTM of :mod:`.recurrent` with convolutions for
its matrix products, backpropagation through time written out by hand.

The rules (gates i, f, c, o; the input convolution's strides, padding and
dilation; the recurrent convolution at stride 1, ``"same"``; the dropout masks;
the packed ``return_state`` output) are :mod:`polykeras.layer_rules.conv_lstm`.
The convolutions are :func:`.conv.conv2d` and :func:`.conv.conv2d_backward` on
NHWC images; ConvLSTM1D runs as ConvLSTM2D on height-1 images.

As for the LSTM, the input convolution does not depend on the state, so it is
done for all steps at once (batch and time folded together) before the time
loop, and its gradient after the backward loop; only the recurrent
convolution is stepped. With ``initial_state`` the kernel takes ``[x, h0, c0]``
and its backward returns their gradients too (what is left of the states'
gradients before the first processed step).
"""

from __future__ import annotations

import numpy as np

from .. import activations
from .base import Kernel
from .conv import conv2d, conv2d_backward


class ConvLSTM2D(Kernel):
    """Weights ``kernel (*k, in, 4f)``, ``recurrent_kernel (*k, f, 4f)``, ``bias (4f,)``."""

    kind = "ConvLSTM2D"

    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        rules = self.rules
        activations.check(rules.activation)
        activations.check(rules.recurrent_activation)
        pad = (1,) * (2 - rules.rank)  # a 1-D layer is a 2-D one on height-1 images
        self.kernel_size, self.strides, self.dilation = (pad + rules.kernel_size, pad + rules.strides,
                                                         pad + rules.dilation_rate)
        #: ``[x, h0, c0]`` with initial states (the program then hands a list, and takes one back)
        self.multiple_inputs = rules.initial_state

    # -- layout: everything in 2-D (NHWC images, HWIO kernels) --------------------------------------------
    def _image(self, a, axis):
        """``a`` with a height axis of 1 inserted at ``axis`` for ConvLSTM1D."""
        return np.expand_dims(a, axis) if self.rules.rank == 1 else a

    def _canonical(self, a, axis):
        return a.squeeze(axis) if self.rules.rank == 1 else a

    def _kernels(self, weights):
        return (weights[0].reshape(self.kernel_size + weights[0].shape[-2:]),
                weights[1].reshape(self.kernel_size + weights[1].shape[-2:]))

    def _pads(self, spatial):
        """Input-convolution ``[(top, bottom), (left, right)]``, output ``(oh, ow)``, recurrent-convolution
        pads, for the canonical spatial sizes ``spatial``."""
        amounts = self.rules.step_padding(spatial)
        out = tuple(a[2] for a in amounts)
        rec = self.rules.recurrent_padding(out)
        if self.rules.rank == 1:
            amounts, out, rec = [(0, 0, 1), *amounts], (1,) + out, [(0, 0), *rec]
        return [a[:2] for a in amounts], out, rec

    # -- forward ------------------------------------------------------------------------------------------------
    def forward(self, weights, x, ctx):
        rules, filters, initial = self.rules, self.rules.filters, None
        if self.multiple_inputs:
            x, initial = x[0], [self._image(np.asarray(s, dtype=self.dtype), 1) for s in x[1:]]
        kernel, U = self._kernels(weights)
        if rules.go_backwards:
            x = x[:, ::-1]
        batch, T = x.shape[:2]
        pads, out_hw, rec_pads = self._pads(x.shape[2:-1])
        input_mask = rec_mask = None
        if rules.input_mask_active(ctx.training):  # the step input's shape, the same for every step
            input_mask = self._image(ctx.dropout_mask((batch,) + x.shape[2:], rules.dropout, 0), 1)
        if rules.recurrent_mask_active(ctx.training):  # the state's shape
            state = (batch,) + out_hw[2 - rules.rank:] + (filters,)
            rec_mask = self._image(ctx.dropout_mask(state, rules.recurrent_dropout, 1), 1)
        x = self._image(x, 2)  # (batch, T, H, W, C)
        x_in = x if input_mask is None else x * input_mask[:, None]
        xp = np.pad(x_in.reshape((batch * T,) + x.shape[2:]), ((0, 0), *pads, (0, 0)))
        xw = conv2d(xp, kernel, self.strides, self.dilation, out_hw)  # all steps at once
        if rules.use_bias:
            xw = xw + weights[2]
        xw = xw.reshape((batch, T) + xw.shape[1:])
        if initial is None:
            h = c = np.zeros((batch,) + out_hw + (filters,), dtype=self.dtype)
        else:
            h, c = initial
        outputs, steps = [], []
        for t in range(T):
            h, c, step = self._cell(U, xw[:, t], h, c, rec_mask, rec_pads, out_hw)
            outputs.append(h)
            steps.append(step)
        y = np.stack(outputs, axis=1) if rules.return_sequences else outputs[-1]
        if rules.return_state:  # packed: the output steps, then h and c (one step each)
            y = np.concatenate([y if rules.return_sequences else y[:, None], np.stack([h, c], axis=1)], axis=1)
        y = self._canonical(y, y.ndim - 3)
        return y, (xp, input_mask, rec_mask, steps, pads, rec_pads, x.shape)

    def _cell(self, U, xw_t, h_prev, c_prev, rec_mask, rec_pads, out_hw):
        h_in = h_prev if rec_mask is None else h_prev * rec_mask
        hp = np.pad(h_in, ((0, 0), *rec_pads, (0, 0)))
        z = xw_t + conv2d(hp, U, (1, 1), (1, 1), out_hw)
        zs = np.split(z, 4, axis=-1)
        ra, act = self.rules.recurrent_activation, self.rules.activation
        i, f, o = (activations.forward(ra, zs[k]) for k in (0, 1, 3))
        g = activations.forward(act, zs[2])
        c = f * c_prev + i * g
        act_c = activations.forward(act, c)
        h = o * act_c
        return h, c, (hp, c_prev, zs, (i, f, g, o), c, act_c)

    # -- backward -----------------------------------------------------------------------------------------------
    def backward(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=True)

    def backward_weights(self, weights, cache, dy):
        return self._backward(weights, cache, dy, input_grad=False)[1]

    def _backward(self, weights, cache, dy, input_grad: bool):
        xp, input_mask, rec_mask, steps, pads, rec_pads, x_shape = cache
        rules = self.rules
        kernel, U = self._kernels(weights)
        batch, T = x_shape[:2]
        dy = self._image(dy, dy.ndim - 2)
        dU = np.zeros_like(U)
        if rules.return_state:  # the final states' gradients start the loop; the rest is the output's
            dh, dc = np.array(dy[:, -2]), np.array(dy[:, -1])
            dy = dy[:, :-2] if rules.return_sequences else dy[:, 0]
        else:
            dh = dc = np.zeros_like(steps[-1][1])
        dxw = np.empty((batch, T) + dh.shape[1:-1] + (U.shape[-1],), dtype=dy.dtype)
        for t in reversed(range(T)):
            if rules.return_sequences:
                dh = dh + dy[:, t]
            elif t == T - 1:
                dh = dh + dy
            dxw[:, t], dh, dc, dU_t = self._cell_backward(U, steps[t], dh, dc, rec_mask, rec_pads)
            dU += dU_t
        dxw2 = dxw.reshape((batch * T,) + dxw.shape[2:])
        dxp, dkernel = conv2d_backward(xp, kernel, dxw2, self.strides, self.dilation, input_grad)
        dweights = [dkernel.reshape(weights[0].shape), dU.reshape(weights[1].shape)]
        if rules.use_bias:
            dweights.append(dxw.sum(axis=(0, 1, 2, 3)))
        if not input_grad:
            return None, dweights
        states = [np.ascontiguousarray(self._canonical(d, 1)) for d in (dh, dc)]  # the initial states'
        (top, bottom), (left, right) = pads
        dx = dxp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right].reshape(x_shape)
        if input_mask is not None:
            dx = dx * input_mask[:, None]
        if rules.go_backwards:
            dx = dx[:, ::-1]
        dx = np.ascontiguousarray(self._canonical(dx, 2))
        return ([dx, *states] if self.multiple_inputs else dx), dweights

    def _cell_backward(self, U, step, dh, dc_carried, rec_mask, rec_pads):
        """``(dz, dh_prev, dc_prev, dU)`` of one step, given the gradients of its ``h`` and ``c``."""
        hp, c_prev, (z_i, z_f, z_c, z_o), (i, f, g, o), c, act_c = step
        ra, act = self.rules.recurrent_activation, self.rules.activation
        dc = dc_carried + activations.backward(act, c, act_c, dh * o)
        dz = np.concatenate([activations.backward(ra, z_i, i, dc * g), activations.backward(ra, z_f, f, dc * c_prev),
                             activations.backward(act, z_c, g, dc * i), activations.backward(ra, z_o, o, dh * act_c)],
                            axis=-1)
        dhp, dU = conv2d_backward(hp, U, dz, (1, 1), (1, 1))
        (top, bottom), (left, right) = rec_pads
        dh_prev = dhp[:, top:hp.shape[1] - bottom, left:hp.shape[2] - right]
        if rec_mask is not None:
            dh_prev = dh_prev * rec_mask
        return dz, dh_prev, dc * f, dU


class ConvLSTM1D(ConvLSTM2D):
    """Input ``(batch, time, steps, channels)``; weights ``kernel (k, in, 4f)``, ``recurrent_kernel (k, f, 4f)``."""

    kind = "ConvLSTM1D"
