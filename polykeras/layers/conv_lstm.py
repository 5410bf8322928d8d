"""Convolutional LSTM layers: ConvLSTM2D and ConvLSTM1D (Keras 3's, channels_last).

The rules -- the gate math, the stride-1 ``"same"`` recurrent convolution, the
dropout masks, the packed ``return_state`` output -- are
:mod:`polykeras.layer_rules.conv_lstm`. Keras's weights: ``kernel (*kernel_size,
in, 4*filters)``, ``recurrent_kernel (*kernel_size, filters, 4*filters)``,
``bias (4*filters,)``, gates i, f, c, o. ``return_state=True`` returns
``[output, h, c]`` as the other recurrent layers (``getitem`` nodes on the packed
node output), and ``layer(x, initial_state=[h0, c0])`` starts from given states
(graph tensors of the state's shape ``(batch, *out_spatial, filters)``; one node,
its inbound the sequence then the states). Not supported, refused by name:
``stateful``, masked inputs, ``data_format="channels_first"``.
"""

from __future__ import annotations

from polykeras import activations, initializers
from polykeras.layers.base import serialize_regularizer
from polykeras.layers.conv import _data_format, _padding, _tuple, conv_output_length
from polykeras.layers.recurrent import _RNN
from polykeras.layers.symbolic import SymbolicTensor, format_shape


class _ConvLSTM(_RNN):
    rank = 0
    gates = 4
    supports_masking = False
    reads_mask = False

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias: bool = True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, **kwargs):
        for arg in ("activity_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint"):
            if kwargs.get(arg) is not None:
                raise NotImplementedError(f"{type(self).__name__}({arg}=...) is not supported yet")
            kwargs.pop(arg, None)
        kwargs.pop("seed", None)  # dropout masks are drawn from the step seed (parity mode)
        super().__init__(int(filters), activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                         recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful, **kwargs)
        self.filters = self.units
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.input_ndim = (self.rank + 3,)

    def build(self, input_shape):
        n = 4 * self.filters
        self._add_weight("kernel", self.kernel_size + (input_shape[-1], n), self.kernel_initializer,
                         self.kernel_regularizer)
        self._add_weight("recurrent_kernel", self.kernel_size + (self.filters, n), self.recurrent_initializer,
                         self.recurrent_regularizer)
        if self.use_bias:
            index = self._add_weight("bias", (n,), self.bias_initializer, self.bias_regularizer)
            if self.unit_forget_bias:  # Keras: the forget gate's bias starts at one
                self._weight_values[index][self.filters:2 * self.filters] += 1.0

    def _state_shape(self, input_shape):
        spatial = tuple(conv_output_length(n, k, s, self.padding, d) for n, k, s, d in
                        zip(input_shape[2:-1], self.kernel_size, self.strides, self.dilation_rate))
        if any(n is None or n <= 0 for n in spatial):
            raise ValueError(f"{type(self).__name__} {self.name!r}: kernel {self.kernel_size} does not fit input "
                             f"{format_shape(input_shape)} with padding={self.padding!r} (the spatial sizes must be "
                             "known, as Keras requires)")
        return spatial + (self.filters,)

    def compute_output_shape(self, input_shape):  # with return_state, the packed node output's
        state, steps = self._state_shape(input_shape), input_shape[1]
        if self.return_state:
            steps = (None if steps is None else steps + 2) if self.return_sequences else 3
            return (input_shape[0], steps) + state
        return (input_shape[0], steps) + state if self.return_sequences else (input_shape[0],) + state

    def compute_mask(self, inputs, mask=None):
        return None

    def _call_symbolically(self, tensors, several):
        x, states = tensors[0], tensors[1:]
        if getattr(x, "mask", None) is not None:
            raise NotImplementedError(f"{type(self).__name__} layer {self.name!r}: masked inputs (Masking, "
                                      "mask_zero) are not supported yet")
        if several or not states:
            return super()._call_symbolically(tensors, several)
        if not isinstance(x, SymbolicTensor):
            raise TypeError(f"layer {self.name!r} was called on {type(x).__name__}; its input must come from "
                            "Input(...) or a layer call")
        self._check_input_shape(x.shape)
        want = self._state_shape(x.shape)
        for t in states:
            if not isinstance(t, SymbolicTensor) or tuple(t.shape[1:]) != want:
                shape = format_shape(t.shape) if isinstance(t, SymbolicTensor) else type(t).__name__
                raise ValueError(f"{type(self).__name__} layer {self.name!r}: each initial state must be a tensor "
                                 f"of shape {format_shape((None,) + want)} (the state's); got {shape}")
        out = SymbolicTensor(self.build_for(x.shape), self.output_dtype(x.dtype), self, tuple(tensors))
        return self._unpacked(out, None) if self.return_state else out

    def get_config(self):
        config = {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                  "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                  "dilation_rate": self.dilation_rate, "recurrent_activation": self.recurrent_activation,
                  "unit_forget_bias": self.unit_forget_bias,
                  "kernel_initializer": initializers.serialize(self.kernel_initializer),
                  "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                  "bias_initializer": initializers.serialize(self.bias_initializer),
                  "kernel_regularizer": serialize_regularizer(self.kernel_regularizer),
                  "recurrent_regularizer": serialize_regularizer(self.recurrent_regularizer),
                  "bias_regularizer": serialize_regularizer(self.bias_regularizer)}
        for key in ("units", "unroll"):
            config.pop(key, None)
        return config


class ConvLSTM2D(_ConvLSTM):
    """Input ``(batch, time, rows, cols, channels)``; kernel ``(kh, kw, in, 4*filters)``."""

    rank = 2


class ConvLSTM1D(_ConvLSTM):
    """Input ``(batch, time, steps, channels)``; kernel ``(k, in, 4*filters)``."""

    rank = 1

