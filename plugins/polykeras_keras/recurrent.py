"""Recurrent layers' ``initial_state`` and ``return_state`` on the Keras backends
(:mod:`polykeras.layer_rules.recurrent`): a node whose inbound after the sequence are the
initial states calls Keras's layer with ``initial_state=[...]``, and with
``return_state`` Keras's ``[output, h(, c)]`` is packed into the spec's one node output by
:class:`PackStates`, which the model's ``getitem`` nodes then split as on every backend.
ConvLSTM1D/2D are called as the recurrent layers, with their own dropout masks (:func:`conv_lstm_masks`)."""

from __future__ import annotations

import re

import keras

from polykeras.layer_rules import rules_for

#: Keras's convolutional LSTMs: recurrent layers whose steps and states are images.
CONV_LSTM = ("ConvLSTM1D", "ConvLSTM2D")

class PackStates(keras.layers.Layer):
    """``[output, *states]`` -> ``(batch, S + n_states, width)``: the output steps (one, the last ``h``,
    without ``return_sequences``) then the final states, one step each, zero-padded to the output's
    width (a Bidirectional's concatenated output is wider than a state)."""

    def __init__(self, return_sequences: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.return_sequences = bool(return_sequences)

    def call(self, parts):
        output, *states = parts
        if not self.return_sequences:
            output = keras.ops.expand_dims(output, 1)
        width = output.shape[-1]
        states = [keras.ops.pad(s, [(0, 0), (0, width - s.shape[-1])]) if s.shape[-1] != width else s
                  for s in states]
        return keras.ops.concatenate([output, keras.ops.stack(states, axis=1)], axis=1)

    def compute_output_shape(self, shapes):
        output, *states = shapes
        steps = output[1] if self.return_sequences else 1
        state = output[2:] if self.return_sequences else output[1:]  # (a ConvLSTM's are images)
        return (output[0], None if steps is None else steps + len(states), *state)

    def get_config(self):
        return {**super().get_config(), "return_sequences": self.return_sequences}


def pack_bidirectional(layer, kl, out):
    """A ``Bidirectional`` node's output: Keras's ``[output, *states]`` packed with ``return_state``."""
    if not isinstance(out, (list, tuple)):
        return out
    name = re.sub(r"\W", "_", f"{layer.name}_packed_states")
    return PackStates(bool(layer.config["layer"]["config"].get("return_sequences")), name=name,
                      dtype=kl.dtype_policy)(list(out))


def call_recurrent(layer, kl, args: list, kwargs: dict):
    """Call Keras's recurrent layer ``kl`` for spec node ``layer`` on its inbound tensors ``args``
    (the sequence, then any initial states); its one output, packed with ``return_state``."""
    if len(args) > 1:
        kwargs = {**kwargs, "initial_state": list(args[1:])}
    out = kl(args[0], **kwargs)
    if not layer.config.get("return_state"):
        return out
    name = re.sub(r"\W", "_", f"{layer.name}_packed_states")
    return PackStates(bool(layer.config.get("return_sequences")), name=name, dtype=kl.dtype_policy)(list(out))


def conv_lstm_masks(layer) -> list[tuple]:
    """``(stream, rate, shape without the batch, argument)`` of each dropout mask the reference draws for a
    ConvLSTM node (:mod:`polykeras.layer_rules.conv_lstm`): element-wise, of the step input's shape (stream 0)
    and of the state's (stream 1); Keras's cell takes one for all four gates."""
    rules = rules_for(layer, "the keras backends")
    out = []
    if rules.input_mask_active(True):
        out.append((0, rules.dropout, tuple(layer.input_shapes[0][2:]), "keep"))
    if rules.recurrent_mask_active(True):
        out.append((1, rules.recurrent_dropout, tuple(rules.state_shape(layer.input_shapes[0])[1:]), "recurrent_keep"))
    return out
