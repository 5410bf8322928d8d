"""ConvLSTM2D and ConvLSTM1D in torch: a time loop of ``F.conv2d`` / ``F.conv1d``
differentiated by autograd (the rules are :mod:`polykeras.layer_rules.conv_lstm`,
the math the NumPy reference's).

* The input convolution does not depend on the state: it runs once over all
  steps (batch and time folded together), and the loop takes its steps by
  one ``unbind(1)`` -- indexing ``xw[:, t]`` per step makes autograd
  zero-fill a whole-``xw`` gradient for every step.
* The loop works channels-first (torch's NCHW / NCL); the outputs are
  permuted back to channels_last once at the end.
* Padding is TensorFlow's, applied explicitly with ``F.pad`` (``"same"``
  puts the smaller half before, which torch's ``padding=`` cannot say for
  even kernels); the recurrent convolution is stride 1, ``"same"``.
* ``initial_state``: the node's inbound after the sequence (``[x, h0, c0]``,
  channels_last) start the loop.
* Kernels are held as torch wants them: ``(4f, in, *k)`` from Keras's
  ``(*k, in, 4f)``; gates stay in Keras's order i, f, c, o.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import activations
from .base import TorchLayer


def _flat(pads) -> tuple[int, ...]:
    """``F.pad``'s argument for ``[(before, after), ...]`` over the spatial axes (last axis first)."""
    return tuple(v for before_after in reversed(pads) for v in before_after)


class ConvLSTM2D(TorchLayer):
    kind = "ConvLSTM2D"

    def __init__(self, spec, index, dtype, device):
        super().__init__(spec, index, dtype, device)
        rules = self.rules
        self.act = activations.get(rules.activation)
        self.rec_act = activations.get(rules.recurrent_activation)
        self.conv = F.conv2d if rules.rank == 2 else F.conv1d
        #: ``[x, h0, c0]`` with initial states
        self.multiple_inputs = rules.initial_state
        spatial = spec.input_shapes[0][2:-1]
        amounts = rules.step_padding(spatial)
        self.pad = _flat([a[:2] for a in amounts])
        self.out_spatial = tuple(a[2] for a in amounts)
        self.rec_pad = _flat(rules.recurrent_padding(self.out_spatial))
        n = rules.rank
        self.to_torch = (n + 1, n) + tuple(range(n))  # (*k, in, out) -> (out, in, *k)
        self.to_keras = tuple(range(2, n + 2)) + (1, 0)

    def to_native(self, weights):
        return [np.ascontiguousarray(w.transpose(self.to_torch)) for w in weights[:2]] + list(weights[2:])

    def to_canonical(self, arrays):
        return [np.ascontiguousarray(a.transpose(self.to_keras)) for a in arrays[:2]] + list(arrays[2:])

    def forward(self, params, x, ctx):
        rules, initial = self.rules, None
        if self.multiple_inputs:
            x, initial = x[0], [s.movedim(-1, 1) for s in x[1:]]
        kernel, U = params[0], params[1]
        bias = params[2] if rules.use_bias else None
        if rules.go_backwards:
            x = x.flip(1)
        batch, T = x.shape[:2]
        if rules.input_mask_active(ctx.training):  # the step input's shape, the same for every step
            x = x * ctx.dropout_mask(self.index, 0, (batch,) + tuple(x.shape[2:]), rules.dropout, x)[:, None]
        state_shape = (batch, rules.filters) + self.out_spatial
        rec_mask = None
        if rules.recurrent_mask_active(ctx.training):  # drawn channels_last, as the reference
            rec_mask = ctx.dropout_mask(self.index, 1, (batch,) + self.out_spatial + (rules.filters,),
                                        rules.recurrent_dropout, x)
            rec_mask = rec_mask.movedim(-1, 1)
        xs = x.reshape((batch * T,) + tuple(x.shape[2:])).movedim(-1, 1)  # channels first
        xw = self.conv(F.pad(xs, self.pad), kernel, bias, rules.strides, 0, rules.dilation_rate)
        xw = xw.reshape((batch, T) + tuple(xw.shape[1:]))
        h, c = (x.new_zeros(state_shape),) * 2 if initial is None else initial
        outputs = []
        for xw_t in xw.unbind(1):
            h_in = h if rec_mask is None else h * rec_mask
            z = xw_t + self.conv(F.pad(h_in, self.rec_pad), U)
            z_i, z_f, z_c, z_o = z.chunk(4, dim=1)
            c = self.rec_act(z_f) * c + self.rec_act(z_i) * self.act(z_c)
            h = self.rec_act(z_o) * self.act(c)
            outputs.append(h)
        y = torch.stack(outputs, dim=1) if rules.return_sequences else h[:, None]
        if rules.return_state:
            y = torch.cat([y, h[:, None], c[:, None]], dim=1)
        y = y.movedim(2, -1)  # (batch, S, *spatial, filters)
        return y if rules.return_sequences or rules.return_state else y[:, 0]


class ConvLSTM1D(ConvLSTM2D):
    kind = "ConvLSTM1D"
