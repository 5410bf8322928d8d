"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras 3 semantics).

* Input ``(batch, timesteps, features)``; the initial state is zeros.
  ``go_backwards`` processes the time axis reversed; with ``return_sequences``
  the output sequence is in *processing* order (Keras does not flip it back),
  without it the output is the last step's ``h``.
* ``dropout`` (training only, ``0 < rate < 1``): one mask of shape
  ``(batch, features)`` (stream 0) multiplies ``x_t`` at every step.
  ``recurrent_dropout``: one mask ``(batch, units)`` (stream 1) multiplies
  ``h_{t-1}`` only where it enters the recurrent matrix product; the state
  carried to the next step (GRU's ``z * h_{t-1}``, LSTM's ``c``) is not
  masked. All gates share each mask.
* Canonical weights and gate layout: ``kernel (in, G*units)``,
  ``recurrent_kernel (units, G*units)``, ``bias``, the gate blocks in the
  order of :attr:`RecurrentRules.gate_order` -- SimpleRNN one block, LSTM
  ``i, f, c, o``, GRU ``z, r, h``. GRU with ``reset_after=True`` (the
  default) has a ``(2, 3u)`` bias, row 0 on the input side and row 1 on the
  recurrent side; with ``reset_after=False`` a ``(3u,)`` bias on the input side
  only (:meth:`RecurrentRules.split_bias`).
* ``return_state``: the layer returns ``[output, h]`` (LSTM ``[output, h, c]``),
  the final states after the last processed step (a masked step carries them
  over). In the spec the node has one output, the *packed* array ``(batch,
  S + n_states, units)`` -- ``S`` output steps (``T`` with
  ``return_sequences``, else 1: the last ``h``) followed by the final states,
  one step each -- which the layer splits with ``getitem`` ops
  (:meth:`RecurrentRules.packed_parts`).
* ``initial_state``: the node's inbound after the sequence are the initial
  states, ``h0`` (and LSTM's ``c0``), each ``(batch, units)``; the first step
  starts from them instead of zeros (also with ``go_backwards``: the state the
  first *processed* step reads). Gradients flow into them.
* ``stateful`` is not supported.
"""

from __future__ import annotations

from typing import Any, ClassVar

from polykeras.spec import Shape

from .base import LayerRules


def output_shape(input_shape: Shape, units: int, return_sequences: bool, packed_states: int = 0) -> Shape:
    """A recurrent node's output shape; with ``packed_states`` (``return_state``: how many states the
    node packs after its output steps) the packed array's (the module docstring)."""
    if packed_states:
        steps = input_shape[1] if return_sequences else 1
        return (input_shape[0], None if steps is None else steps + packed_states, units)
    if return_sequences:
        return (input_shape[0], input_shape[1], units)
    return (input_shape[0], units)


def packed_keys(n_states: int, return_sequences: bool) -> list[tuple]:
    """The basic-indexing keys that split a ``return_state`` node's packed output (the module docstring)
    into ``[output, h(, c)]``."""
    output = (slice(None), slice(None, -n_states)) if return_sequences else (slice(None), 0)
    return [output] + [(slice(None), i - n_states) for i in range(n_states)]


class RecurrentRules(LayerRules):
    """``units``, ``activation``, ``recurrent_activation``, ``use_bias``,
    ``return_sequences``, ``go_backwards``, ``dropout``, ``recurrent_dropout``;
    the class attributes ``gate_order`` (``gates`` blocks) and ``n_states``
    (the carried state: ``h``, and ``c`` for LSTM)."""

    gate_order: ClassVar[tuple[str, ...]] = ("h",)
    n_states: ClassVar[int] = 1

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        cfg = self.config
        self.units = int(cfg["units"])
        self.activation = cfg.get("activation", "tanh")
        self.recurrent_activation = cfg.get("recurrent_activation", "sigmoid")
        self.use_bias = bool(cfg.get("use_bias", True))
        self.return_sequences = bool(cfg.get("return_sequences", False))
        self.go_backwards = bool(cfg.get("go_backwards", False))
        self.dropout = float(cfg.get("dropout", 0.0) or 0.0)
        self.recurrent_dropout = float(cfg.get("recurrent_dropout", 0.0) or 0.0)
        self.return_state = bool(cfg.get("return_state", False))
        if cfg.get("stateful", False):
            raise self.unsupported("stateful=True")
        #: whether the node's inbound after the sequence are the initial states
        self.initial_state = len(spec.input_shapes) > 1
        if self.initial_state:
            states = spec.input_shapes[1:]
            if len(states) != self.n_states or any(tuple(s)[1:] != (self.units,) for s in states):
                raise ValueError(f"{spec.kind} layer {self.name!r}: initial_state must be {self.n_states} tensor(s) "
                                 f"of shape (batch, {self.units}); got shapes {[tuple(s) for s in states]}")

    @property
    def gates(self) -> int:
        return len(self.gate_order)

    def input_mask_active(self, training: bool) -> bool:
        """Whether an input mask ``(batch, features)``, stream 0, applies."""
        return bool(training) and 0.0 < self.dropout < 1.0

    def recurrent_mask_active(self, training: bool) -> bool:
        """Whether a recurrent mask ``(batch, units)``, stream 1, applies."""
        return bool(training) and 0.0 < self.recurrent_dropout < 1.0

    def split_bias(self, bias: Any) -> tuple[Any, Any]:
        """``(input_bias, recurrent_bias)`` from the canonical ``bias`` weight
        (any array type); ``None`` where absent. Without ``use_bias`` pass ``None``."""
        return bias, None

    def output_shape(self, input_shape: Shape) -> Shape:
        return output_shape(input_shape, self.units, self.return_sequences, self.n_states if self.return_state else 0)

    def packed_parts(self) -> list[tuple]:
        """The basic-indexing keys that split the packed output of ``return_state`` into ``[output, h(, c)]``."""
        return packed_keys(self.n_states, self.return_sequences)


class SimpleRNNRules(RecurrentRules):
    kind = "SimpleRNN"


class LSTMRules(RecurrentRules):
    kind = "LSTM"
    gate_order = ("i", "f", "c", "o")
    n_states = 2


class GRURules(RecurrentRules):
    """Adds ``reset_after``."""

    kind = "GRU"
    gate_order = ("z", "r", "h")

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        self.reset_after = bool(self.config.get("reset_after", True))

    def split_bias(self, bias):
        if bias is None:
            return None, None
        return (bias[0], bias[1]) if self.reset_after else (bias, None)
