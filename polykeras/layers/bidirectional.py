"""Keras's ``Bidirectional`` wrapper: a recurrent layer run over the sequence
forward and a copy of it run backward, the two outputs merged.

As in Keras 3, the wrapper does not use the layer it is given: it recreates it
from its config as ``forward_<name>`` and, unless ``backward_layer`` is given,
as ``backward_<name>`` with ``go_backwards=True``; both get fresh weights. The
weights are the forward layer's then the backward layer's, named as Keras
names them (``forward_lstm/lstm_cell/kernel``: the path below the wrapper's
name). The semantics -- merge modes, the flip of the backward output, masks,
dropout -- are :mod:`polykeras.layer_rules.bidirectional`.

``merge_mode=None`` returns the two outputs as a list: the spec's node outputs
their concatenation and two slices (``polykeras.ops``) split it.

``layer(x, initial_state=[...])`` splits the list in half as Keras does: the
first half starts the forward layer, the second the backward layer. As for the
plain recurrent layers the call is one node, its inbound the sequence then the
states.
"""

from __future__ import annotations

from polykeras.layer_rules.bidirectional import MERGE_MODES
from polykeras.layers.base import Layer, snake_case
from polykeras.layers.recurrent import _RNN
from polykeras.layers.symbolic import SymbolicTensor, attach_mask, format_shape
from polykeras.spec import WeightSpec


def _recurrent(value, what: str) -> _RNN:
    """``value`` (a layer, or its ``{"class_name", "config"}`` from a config) as a recurrent layer."""
    if isinstance(value, dict) and "class_name" in value:
        from polykeras.layers import deserialize

        value = deserialize(value)
    if not isinstance(value, _RNN):
        got = f"{type(value).__name__} layer {value.name!r}" if isinstance(value, Layer) else repr(value)
        raise ValueError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU) as {what}; got {got}")
    return value


def _strip_prefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(Layer):
    """``Bidirectional(layer, merge_mode="concat", backward_layer=None)``, as Keras's."""

    input_ndim = (3,)
    supports_masking = True
    reads_mask = True  # handed to both wrapped layers

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        layer = _recurrent(layer, "layer")
        backward_layer = None if backward_layer is None else _recurrent(backward_layer, "backward_layer")
        if layer.return_state and merge_mode is None:
            raise NotImplementedError("Bidirectional(merge_mode=None) of a layer with return_state=True is not "
                                      "supported yet; give a merge_mode, or return_state=False")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Bidirectional merge_mode must be one of {', '.join(map(repr, MERGE_MODES))}; got "
                             f"{merge_mode!r}")
        if weights is not None:
            raise NotImplementedError("Bidirectional(weights=...) is not supported; call set_weights() once the "
                                      "layer is built")
        if layer._declared_input_shape is not None and not {"input_shape", "batch_input_shape"} & set(kwargs):
            kwargs["input_shape"] = layer._declared_input_shape  # as Keras 2: the wrapped layer's input shape
        super().__init__(**kwargs)
        config = {k: v for k, v in layer.get_config().items() if k != "batch_input_shape"}
        self.forward_layer = type(layer).from_config(
            {**config, "name": f"forward_{_strip_prefix(layer.name, 'forward_')}"})
        if backward_layer is None:
            backward_layer = type(layer).from_config(
                {**config, "go_backwards": True, "name": f"backward_{_strip_prefix(layer.name, 'backward_')}"})
        self.backward_layer = backward_layer
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise ValueError("Bidirectional: the forward and backward layers must have different go_backwards; "
                             f"both have go_backwards={self.forward_layer.go_backwards}")
        if self.forward_layer.return_sequences != self.backward_layer.return_sequences:
            raise ValueError("Bidirectional: the forward and backward layers must have the same return_sequences; "
                             f"got {self.forward_layer.return_sequences} and {self.backward_layer.return_sequences}")
        if merge_mode in ("sum", "mul", "ave") and self.forward_layer.units != self.backward_layer.units:
            raise ValueError(f"Bidirectional merge_mode={merge_mode!r} needs layers of equal units; got "
                             f"{self.forward_layer.units} and {self.backward_layer.units}")
        if self.forward_layer.return_state != self.backward_layer.return_state:
            raise ValueError("Bidirectional: the forward and backward layers must have the same return_state; got "
                             f"{self.forward_layer.return_state} and {self.backward_layer.return_state}")
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state, self.stateful = self.forward_layer.return_state, False

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            sub.build_for(input_shape)
            start = len(self._weight_specs)
            cell = f"{snake_case(sub.kind)}_cell"
            for spec, value, created in zip(sub._weight_specs, sub._weight_values, sub._created_trainable):
                self._record_weight(WeightSpec(f"{sub.name}/{cell}/{spec.name}", spec.shape,
                                               spec.trainable and self.trainable, spec.regularizer), created)
                self._weight_values.append(value)
            self._share_weights(sub, start, len(self._weight_specs))

    def _sublayers(self) -> list:
        return [self.forward_layer, self.backward_layer]

    def _share_weights(self, sub: _RNN, start: int, stop: int) -> None:
        """``sub.get_weights()``/``set_weights()`` read and write this layer's weights ``[start, stop)``,
        which are the ones the model trains (Keras's wrapped layers own them)."""
        def get_weights():
            return self.get_weights()[start:stop]

        def set_weights(weights):
            weights = list(weights)
            if len(weights) != stop - start:
                raise ValueError(f"layer {sub.name!r} has {stop - start} weight(s), got a list of {len(weights)}")
            self.set_weights(self.get_weights()[:start] + weights + self.get_weights()[stop:])

        sub.get_weights, sub.set_weights = get_weights, set_weights

    def compute_output_shape(self, input_shape):
        width = self.forward_layer.units + (self.backward_layer.units if self.merge_mode in ("concat", None) else 0)
        if self.return_state:  # packed (polykeras.layer_rules.bidirectional)
            steps = input_shape[1] if self.return_sequences else 1
            n = self.forward_layer.n_states
            return (input_shape[0], None if steps is None else steps + 2 * n, width)
        return (input_shape[0], input_shape[1], width) if self.return_sequences else (input_shape[0], width)

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences and not self.return_state else None

    @property
    def n_states(self) -> int:
        """How many initial states a call takes: the forward layer's, then the backward layer's."""
        return self.forward_layer.n_states + self.backward_layer.n_states

    def _state_units(self) -> list[int]:
        return ([self.forward_layer.units] * self.forward_layer.n_states
                + [self.backward_layer.units] * self.backward_layer.n_states)

    def __call__(self, inputs, *args, initial_state=None, **kwargs):
        if initial_state is None:
            return super().__call__(inputs, *args, **kwargs)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if self.forward_layer.n_states != self.backward_layer.n_states or len(states) != self.n_states:
            raise ValueError(f"Bidirectional layer {self.name!r} takes {self.n_states} initial states, split in half "
                             f"as Keras splits them: the forward {self.forward_layer.kind}'s "
                             f"{self.forward_layer.n_states}, then the backward {self.backward_layer.kind}'s "
                             f"{self.backward_layer.n_states}; got {len(states)}")
        if not all(isinstance(t, SymbolicTensor) for t in [inputs] + states):
            raise NotImplementedError(f"Bidirectional layer {self.name!r}: initial_state is supported in models "
                                      "(symbolic tensors from Input or layer calls), not in eager calls")
        kwargs.pop("training", None)
        if args or kwargs:
            raise TypeError(f"Bidirectional layer {self.name!r} got unexpected argument(s) "
                            f"{', '.join(sorted(kwargs)) or args}")
        return self._remember(inputs, self._call_symbolically([inputs] + states, several=False))

    def _call_symbolically(self, tensors, several):
        states = tensors[1:] if not several else []
        for t, units in zip(states, self._state_units()):
            if not isinstance(t, SymbolicTensor) or len(t.shape) != 2 or t.shape[1] != units:
                shape = format_shape(t.shape) if isinstance(t, SymbolicTensor) else type(t).__name__
                raise ValueError(f"Bidirectional layer {self.name!r}: the initial states must be tensors of shapes "
                                 f"{[(None, u) for u in self._state_units()]} (forward then backward); got {shape}")
        if not states:
            out = super()._call_symbolically(tensors, several)
        else:  # the sequence, then the states: one node (its mask is the sequence's)
            x = tensors[0]
            out = SymbolicTensor(self.build_for(x.shape), self.output_dtype(x.dtype), self, tuple(tensors))
            attach_mask(self, out, [x], False)
        if self.return_state:  # [output, *forward states, *backward states]: getitem parts of the packed node
            from polykeras import ops
            from polykeras.layer_rules.bidirectional import bidirectional_packed_keys
            from polykeras.ops.shapes import encode_key

            n = self.forward_layer.n_states
            units = [self.forward_layer.units] * n + [self.backward_layer.units] * n
            parts = []
            for i, key in enumerate(bidirectional_packed_keys(n, self.return_sequences, units)):
                part = ops.getitem(out, key=encode_key(key))
                part.part_of = (out, i)
                part.mask = tensors[0].mask if i == 0 and self.return_sequences else None
                parts.append(part)
            return parts
        if self.merge_mode is not None:
            return out
        from polykeras import ops
        from polykeras.ops.shapes import encode_key

        units = self.forward_layer.units
        halves = [ops.getitem(out, key=encode_key((Ellipsis, slice(None, units)))),
                  ops.getitem(out, key=encode_key((Ellipsis, slice(units, None))))]
        for i, half in enumerate(halves):  # Keras's two outputs of one call, as the return_state parts are
            half.mask, half.part_of = out.mask, (out, i)
        return halves

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": self.forward_layer.kind, "config": self.forward_layer.get_config()},
                "backward_layer": {"class_name": self.backward_layer.kind,
                                   "config": self.backward_layer.get_config()}}

    def to_spec(self, *args, **kwargs):
        """The wrapped layers' configs in the spec carry what the math needs, as a layer's own do."""
        spec = super().to_spec(*args, **kwargs)
        for key in ("layer", "backward_layer"):
            entry = spec.config[key]
            spec.config[key] = {"class_name": entry["class_name"], "config": {
                k: v for k, v in entry["config"].items() if k not in ("trainable", "dtype", "batch_input_shape")
                and not k.endswith(("_initializer", "_regularizer", "_constraint"))}}
        return spec
