"""Recurrent layers: SimpleRNN, LSTM (gates i, f, c, o) and GRU (gates z, r,
h; ``reset_after=True`` by default, as Keras 3), with Keras's weight layout:
kernel ``(in, n*units)``, recurrent_kernel ``(units, n*units)``, separate bias.

As in Keras 3, ``return_state=True`` makes a call return ``[output, h]``
(LSTM: ``[output, h, c]``) and ``layer(x, initial_state=[h0, c0])`` starts from
given states (graph tensors, e.g. an encoder's returned states: Keras's
sequence-to-sequence models). In the spec such a call is one node -- its
inbound the sequence then the states, its output the packed array of
:mod:`polykeras.layer_rules.recurrent` -- and the returned tensors are
``getitem`` nodes on it (:attr:`~polykeras.layers.symbolic.SymbolicTensor.part_of`),
which a model's config names as Keras does: ``[layer, call, tensor index]``.
"""

from __future__ import annotations

import numpy as np

from polykeras import activations, initializers, regularizers
from polykeras.layers.base import Layer, serialize_regularizer
from polykeras.layer_rules.recurrent import output_shape, packed_keys
from polykeras.layers.symbolic import SymbolicTensor, attach_mask, format_shape


class _RNN(Layer):
    gates = 1
    input_ndim = (3,)
    # masked steps are skipped (polykeras.layers.masking); the sequence output keeps the mask
    supports_masking = True
    reads_mask = True

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
                 unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        if stateful:
            raise NotImplementedError(f"{type(self).__name__}(stateful=True) is not supported yet")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= float(rate) < 1:
                raise ValueError(f"{type(self).__name__} {what} must be in [0, 1), got {rate!r}")
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful, self.unroll = False, bool(unroll)

    def _bias_shape(self):
        return (self.gates * self.units,)

    def build(self, input_shape):
        n = self.gates * self.units
        self._add_weight("kernel", (input_shape[-1], n), self.kernel_initializer, self.kernel_regularizer)
        self._add_weight("recurrent_kernel", (self.units, n), self.recurrent_initializer, self.recurrent_regularizer)
        if self.use_bias:
            index = self._add_weight("bias", self._bias_shape(), self.bias_initializer, self.bias_regularizer)
            self._adjust_bias(self._weight_values[index])

    def _adjust_bias(self, bias: np.ndarray) -> None:
        """Hook for LSTM's ``unit_forget_bias``."""

    @property
    def n_states(self) -> int:
        return 2 if self.gates == 4 else 1

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences and not self.return_state else None

    def compute_output_shape(self, input_shape):  # with return_state, the packed node output's
        return output_shape(input_shape, self.units, self.return_sequences, self.n_states if self.return_state else 0)

    # -- calling: initial_state and return_state ------------------------------------
    def __call__(self, inputs, *args, initial_state=None, mask=None, **kwargs):
        if mask is not None:
            raise NotImplementedError(f"{type(self).__name__} layer {self.name!r}: an explicit mask= is not "
                                      "supported; the mask comes with the input (Embedding(mask_zero=True), Masking)")
        if initial_state is None and isinstance(inputs, (list, tuple)) and len(inputs) > 1:
            inputs, initial_state = inputs[0], list(inputs[1:])  # Keras 2's layer([x, h0, c0])
        if initial_state is None:
            return super().__call__(inputs, *args, **kwargs)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != self.n_states:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} takes {self.n_states} initial state(s) "
                             f"({'[h, c]' if self.n_states == 2 else '[h]'}), got {len(states)}")
        if not all(isinstance(t, SymbolicTensor) for t in [inputs] + states):
            raise NotImplementedError(f"{type(self).__name__} layer {self.name!r}: initial_state is supported in "
                                      "models (symbolic tensors from Input or layer calls), not in eager calls")
        kwargs.pop("training", None)
        if len(args) > 1 or kwargs:
            raise TypeError(f"{type(self).__name__} layer {self.name!r} got unexpected argument(s) "
                            f"{', '.join(sorted(kwargs)) or args[1:]}")
        return self._remember(inputs, self._call_symbolically([inputs] + states, several=False))

    def _call_symbolically(self, tensors, several):
        states = tensors[1:]
        if several:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} takes one input tensor; give initial "
                             "states as initial_state=[...]")
        for t in states:
            if not isinstance(t, SymbolicTensor) or len(t.shape) != 2 or t.shape[1] != self.units:
                shape = format_shape(t.shape) if isinstance(t, SymbolicTensor) else type(t).__name__
                raise ValueError(f"{type(self).__name__} layer {self.name!r}: each initial state must be a tensor "
                                 f"of shape (batch, {self.units}); got {shape}")
        if not states:
            out = super()._call_symbolically(tensors, several)
        else:  # the sequence, then the states: one node (its mask is the sequence's)
            x = tensors[0]
            if not isinstance(x, SymbolicTensor):
                raise TypeError(f"layer {self.name!r} was called on {type(x).__name__}; its input must come from "
                                "Input(...) or a layer call")
            out = SymbolicTensor(self.build_for(x.shape), self.output_dtype(x.dtype), self, tuple(tensors))
            attach_mask(self, out, [x], False)
        if not self.return_state:
            return out
        return self._unpacked(out, tensors[0].mask if self.return_sequences else None)

    def _unpacked(self, packed, sequence_mask):
        """``[output, h(, c)]``: ``getitem`` nodes on the packed node output."""
        from polykeras import ops
        from polykeras.ops.shapes import encode_key

        parts = []
        for i, key in enumerate(packed_keys(self.n_states, self.return_sequences)):
            part = ops.getitem(packed, key=encode_key(key))
            part.part_of = (packed, i)
            part.mask = sequence_mask if i == 0 else None
            parts.append(part)
        return parts

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": serialize_regularizer(self.kernel_regularizer),
                "recurrent_regularizer": serialize_regularizer(self.recurrent_regularizer),
                "bias_regularizer": serialize_regularizer(self.bias_regularizer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll}


class SimpleRNN(_RNN):
    gates = 1


class LSTM(_RNN):
    gates = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias: bool = True,
                 **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _adjust_bias(self, bias):
        if self.unit_forget_bias:  # Keras: forget-gate bias starts at one
            bias[self.units:2 * self.units] += 1.0

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", reset_after: bool = True,
                 **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}
