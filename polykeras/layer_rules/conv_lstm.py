"""Convolutional LSTM layers: ConvLSTM2D and ConvLSTM1D (Keras 3 semantics, channels_last).

* Input ``(batch, timesteps, *spatial, channels)``; the LSTM of
  :mod:`.recurrent` (gates i, f, c, o; zero initial state) with both matrix
  products replaced by convolutions: per step ::

      z = conv(x_t, kernel, strides, padding, dilation_rate) + bias
          + conv(h_{t-1}, recurrent_kernel, stride 1, "same")
      i, f, o = recurrent_activation(z_i, z_f, z_o);  g = activation(z_c)
      c_t = f * c_{t-1} + i * g;  h_t = o * activation(c_t)

  The input convolution follows :mod:`.conv` (cross-correlation, TensorFlow
  padding); the recurrent one is always stride 1, ``"same"``, no dilation
  (Keras's ``ConvLSTMCell.recurrent_conv``), so the states keep the input
  convolution's output size ``(batch, *out_spatial, filters)``.
* Weights ``kernel (*kernel_size, in, 4*filters)``, ``recurrent_kernel
  (*kernel_size, filters, 4*filters)``, ``bias (4*filters,)``; the gate
  blocks are contiguous along the last axis in the order i, f, c, o.
  ``unit_forget_bias`` only sets the forget block of the initial bias to one.
* ``go_backwards``, ``return_sequences``, ``return_state`` (the packed output
  ``(batch, S + 2, *out_spatial, filters)``: the output steps, then ``h``
  and ``c``) as :mod:`.recurrent`.
* ``dropout`` (training, ``0 < rate < 1``): one element-wise mask of the step
  input's shape ``(batch, *spatial, channels)`` (stream 0), the same for every
  step and gate; ``recurrent_dropout``: one mask ``(batch, *out_spatial,
  filters)`` (stream 1) on ``h_{t-1}`` where it enters the recurrent
  convolution only. (Keras draws its masks with ``ones_like(step input)``.)
* ``initial_state``: the node's inbound after the sequence are ``h0`` and
  ``c0``, each of the state's shape; the first processed step starts from
  them (also with ``go_backwards``), and gradients flow into them.
* Not supported (refused by name): ``stateful``, an input mask,
  ``data_format="channels_first"``.
"""

from __future__ import annotations

from polykeras.spec import Shape

from .conv import ConvRules, padding_amounts
from .recurrent import packed_keys


class ConvLSTMRules(ConvRules):
    """:class:`~.conv.ConvRules` (``filters``, ``kernel_size``, ``strides``, ``padding``, ``dilation_rate``,
    ``use_bias``) plus the LSTM's ``activation``, ``recurrent_activation``, ``return_sequences``,
    ``return_state``, ``go_backwards``, ``dropout``, ``recurrent_dropout``."""

    gate_order = ("i", "f", "c", "o")
    n_states = 2
    gates = 4

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg = self.config
        if self.groups != 1:
            raise self.unsupported(f"groups={self.groups}")
        self.activation = cfg.get("activation", "tanh")
        self.recurrent_activation = cfg.get("recurrent_activation", "sigmoid")
        self.return_sequences = bool(cfg.get("return_sequences", False))
        self.return_state = bool(cfg.get("return_state", False))
        self.go_backwards = bool(cfg.get("go_backwards", False))
        self.dropout = float(cfg.get("dropout", 0.0) or 0.0)
        self.recurrent_dropout = float(cfg.get("recurrent_dropout", 0.0) or 0.0)
        if cfg.get("stateful", False):
            raise self.unsupported("stateful=True")
        #: whether the node's inbound after the sequence are the initial states ``h0``, ``c0``
        self.initial_state = len(spec.input_shapes) > 1
        if self.initial_state:
            want, states = tuple(self.state_shape(spec.input_shapes[0])[1:]), spec.input_shapes[1:]
            if len(states) != 2 or any(tuple(s)[1:] != want for s in states):
                raise ValueError(f"{spec.kind} layer {self.name!r}: initial_state must be 2 tensors (h, c) of shape "
                                 f"(batch, {', '.join(map(str, want))}); got shapes {[tuple(s) for s in states]}")
        if getattr(spec, "mask", None) is not None:
            raise self.unsupported("an input mask (Masking / mask_zero)")

    def input_mask_active(self, training: bool) -> bool:
        """Whether the input dropout mask ``(batch, *spatial, channels)``, stream 0, applies."""
        return bool(training) and 0.0 < self.dropout < 1.0

    def recurrent_mask_active(self, training: bool) -> bool:
        """Whether the recurrent dropout mask ``(batch, *out_spatial, filters)``, stream 1, applies."""
        return bool(training) and 0.0 < self.recurrent_dropout < 1.0

    def step_padding(self, spatial) -> list[tuple[int, int, int]]:
        """``(before, after, out)`` of the input convolution on each spatial axis of sizes ``spatial``."""
        return self.padding_amounts(spatial)

    def recurrent_padding(self, out_spatial) -> list[tuple[int, int]]:
        """``(before, after)`` of the recurrent convolution (stride 1, ``"same"``) on the state's axes."""
        return [padding_amounts(int(n), k, 1, 1, "same", self.name)[:2] for n, k in zip(out_spatial, self.kernel_size)]

    def state_shape(self, input_shape: Shape) -> Shape:
        """``(batch, *out_spatial, filters)`` for a sequence of ``input_shape``."""
        return ConvRules.output_shape(self, (input_shape[0],) + tuple(input_shape[2:]))

    def output_shape(self, input_shape: Shape) -> Shape:
        state = self.state_shape(input_shape)
        steps = input_shape[1]
        if self.return_state:
            steps = (None if steps is None else steps + 2) if self.return_sequences else 3
            return (state[0], steps) + tuple(state[1:])
        return (state[0], steps) + tuple(state[1:]) if self.return_sequences else state

    def packed_parts(self) -> list[tuple]:
        """The basic-indexing keys that split the packed output of ``return_state`` into ``[output, h, c]``."""
        return packed_keys(self.n_states, self.return_sequences)


class ConvLSTM2DRules(ConvLSTMRules):
    kind = "ConvLSTM2D"


class ConvLSTM1DRules(ConvLSTMRules):
    kind = "ConvLSTM1D"
    rank = 1
