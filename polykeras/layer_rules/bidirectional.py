"""Bidirectional: one recurrent layer run forward and a second run backward
over the same sequence, their outputs merged (Keras 3 semantics).

* The config holds the two wrapped layers as Keras serialises them --
  ``layer`` (the forward one, named ``forward_<name>``) and ``backward_layer``
  (``backward_<name>``, ``go_backwards=True``; derived from ``layer`` so if
  absent) -- each a
  ``{"class_name", "config"}`` of SimpleRNN, LSTM or GRU (their rules are
  :mod:`.recurrent`), and ``merge_mode``: ``"concat"`` (the default; forward
  first), ``"sum"``, ``"mul"``, ``"ave"`` or ``None`` (the two outputs kept
  apart; in the spec the node's output is their concatenation, which the
  layer splits into two tensors).
* Weights: the forward layer's (``kernel``, ``recurrent_kernel``, ``bias``
  without ``use_bias=False``) then the backward layer's, each in its own
  canonical layout -- Keras's variable order.
* With ``return_sequences`` the backward layer's output sequence (in its
  processing order) is flipped back to the input's time order before the
  merge, and a masked step outputs zeros in both directions (Keras forces
  ``zero_output_for_mask`` to ``return_sequences`` in both wrapped layers).
  Without it each direction's output is its last processed step's ``h``.
* A mask reaches both layers; the one that goes backwards reverses it with
  the sequence (:mod:`polykeras.layers.masking`). Dropout: the forward layer
  draws its masks from streams 0 and 1, the backward layer from 2 and 3
  (:meth:`BidirectionalRules.backward_stream`).
* ``return_state`` (the wrapped layers'; not with ``merge_mode=None``): the layer returns Keras's
  ``[output, *forward states, *backward states]``. The node's one output is packed, ``(batch, S +
  2 * n_states, width)`` -- the merged output's ``S`` steps (``T`` with ``return_sequences``, else
  one) then each final state as one step, zero-padded from its ``units`` to the output's ``width``
  (:meth:`BidirectionalRules.packed_parts`); each wrapped layer computes its own packed output
  (:mod:`.recurrent`).
* ``initial_state`` (Keras's ``layer(x, initial_state=[...])``): the node's inbound after the
  sequence are the initial states, split in half as Keras splits the list -- the first half
  (``h0``, LSTM's ``c0``) starts the forward layer, the second half the backward layer, each as
  a wrapped layer's own ``initial_state`` (:mod:`.recurrent`; the backward layer's is the state
  its first *processed* step, the last time step, reads). Gradients flow into all of them.
"""

from __future__ import annotations

from polykeras.spec import LayerSpec, Shape

from .base import LayerRules
from .recurrent import RecurrentRules

def bidirectional_packed_keys(n_states: int, return_sequences: bool, state_units: list[int]) -> list[tuple]:
    """The keys of :meth:`BidirectionalRules.packed_parts` (also the core layer's)."""
    k = 2 * n_states
    output = (slice(None), slice(None, -k)) if return_sequences else (slice(None), 0)
    return [output] + [(slice(None), i - k, slice(None, u)) for i, u in enumerate(state_units)]


#: Keras's merge modes (``None``: the two outputs apart).
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class BidirectionalRules(LayerRules):
    """``merge_mode``; :attr:`forward` and :attr:`backward`, the wrapped layers'
    :class:`~.recurrent.RecurrentRules`, each read from :attr:`forward_spec` /
    :attr:`backward_spec` (a spec of its own, carrying its share of the weights);
    :attr:`n_forward`, how many of the node's weights are the forward layer's."""

    kind = "Bidirectional"
    #: added to a stream number of the backward layer's dropout masks
    backward_stream = 2

    def __init__(self, spec, backend="polykeras"):
        super().__init__(spec, backend)
        from . import RULES

        cfg = self.config
        self.merge_mode = cfg.get("merge_mode", "concat")
        if self.merge_mode not in MERGE_MODES:
            raise ValueError(f"Bidirectional layer {self.name!r}: merge_mode must be one of "
                             f"{', '.join(map(repr, MERGE_MODES))}; got {self.merge_mode!r}")
        sub = {}
        for key in ("layer", "backward_layer"):
            entry = cfg.get(key)
            if key == "backward_layer" and entry is None and isinstance(cfg.get("layer"), dict):
                entry = {**cfg["layer"], "config": {**cfg["layer"].get("config", {}), "go_backwards": True}}
            kind = entry.get("class_name") if isinstance(entry, dict) else None
            if kind not in RULES or not issubclass(RULES[kind], RecurrentRules):
                raise ValueError(f"Bidirectional layer {self.name!r}: {key} must be a SimpleRNN, LSTM or GRU "
                                 f"config {{'class_name', 'config'}}; got {entry!r}")
            sub[key] = (kind, entry["config"])
        self.n_forward = 3 if sub["layer"][1].get("use_bias", True) else 2
        #: whether the node's inbound after the sequence are initial states (first half forward, second backward)
        self.initial_state = len(spec.input_shapes) > 1
        n_given = len(spec.input_shapes) - 1
        expected = 2 * RULES[sub["layer"][0]].n_states
        if self.initial_state and n_given != expected:
            raise ValueError(f"Bidirectional layer {self.name!r} takes {expected} initial states (the forward "
                             f"layer's {expected // 2}, then the backward layer's), got {n_given}")
        half = 1 + n_given // 2
        self.forward_spec = self._sub_spec(*sub["layer"], spec.weights[:self.n_forward], slice(0, half))
        self.backward_spec = self._sub_spec(*sub["backward_layer"], spec.weights[self.n_forward:],
                                            [0, *range(half, len(spec.input_shapes))])
        self.forward: RecurrentRules = RULES[self.forward_spec.kind](self.forward_spec, backend)
        self.backward: RecurrentRules = RULES[self.backward_spec.kind](self.backward_spec, backend)
        if self.forward.go_backwards == self.backward.go_backwards:
            raise ValueError(f"Bidirectional layer {self.name!r}: the forward and backward layers must have "
                             f"different go_backwards; both have {self.forward.go_backwards}")
        if self.forward.return_sequences != self.backward.return_sequences:
            raise ValueError(f"Bidirectional layer {self.name!r}: the forward and backward layers must agree on "
                             f"return_sequences; got {self.forward.return_sequences} and "
                             f"{self.backward.return_sequences}")
        if self.merge_mode in ("sum", "mul", "ave") and self.forward.units != self.backward.units:
            raise ValueError(f"Bidirectional layer {self.name!r}: merge_mode={self.merge_mode!r} needs layers of "
                             f"equal units; got {self.forward.units} and {self.backward.units}")
        if self.forward.return_state != self.backward.return_state:
            raise ValueError(f"Bidirectional layer {self.name!r}: the forward and backward layers must agree on "
                             f"return_state; got {self.forward.return_state} and {self.backward.return_state}")
        self.return_state = self.forward.return_state
        if self.return_state and self.merge_mode is None:
            raise self.unsupported("return_state=True with merge_mode=None")
        #: the final states of each direction (h, and LSTM's c)
        self.n_states = self.forward.n_states
        self.return_sequences = self.forward.return_sequences

    def split_inputs(self, x):
        """Each wrapped layer's input from the node's: ``(x, x)``, or with ``initial_state`` (the node's inputs
        ``[x, *forward states, *backward states]``) ``([x, *forward states], [x, *backward states])`` -- the
        split every backend makes."""
        if not self.initial_state:
            return x, x
        half = 1 + (len(x) - 1) // 2
        return list(x[:half]), [x[0], *x[half:]]

    def _sub_spec(self, kind: str, config: dict, weights, inputs) -> LayerSpec:
        """A wrapped layer's spec: its config and weights, and of the node's inbound the sequence and its own
        initial states (``inputs``: a slice or the positions of those)."""
        spec = self.spec
        name = f"{spec.name}/{config.get('name', kind.lower())}"
        shape = tuple(spec.input_shapes[0]) if spec.input_shapes else (None, None, None)
        units = int(config["units"])
        output_shape = shape[:2] + (units,) if config.get("return_sequences") else (shape[0], units)
        inbound, input_shapes = list(spec.inbound), list(spec.input_shapes)
        if spec.input_shapes:
            picked = range(len(input_shapes))[inputs] if isinstance(inputs, slice) else inputs
            inbound = [inbound[i] for i in picked] if len(inbound) == len(input_shapes) else inbound
            input_shapes = [input_shapes[i] for i in picked]
        return LayerSpec(name=name, kind=kind, config=config, inbound=tuple(inbound), input_shapes=tuple(input_shapes),
                         output_shape=output_shape, weights=tuple(weights), mask=spec.mask)

    def output_shape(self, input_shape: Shape) -> Shape:
        units = self.width
        if self.return_state:
            steps = input_shape[1] if self.return_sequences else 1
            return (input_shape[0], None if steps is None else steps + 2 * self.n_states, units)
        return (input_shape[0], input_shape[1], units) if self.return_sequences else (input_shape[0], units)

    @property
    def width(self) -> int:
        """The merged output's features: both layers' units with ``concat`` (and ``None``), else one's."""
        return self.forward.units + (self.backward.units if self.merge_mode in ("concat", None) else 0)

    def packed_parts(self) -> list[tuple]:
        """The basic-indexing keys that split the packed output of ``return_state`` into ``[output,
        *forward states, *backward states]`` (each state cut back to its layer's units)."""
        return bidirectional_packed_keys(self.n_states, self.return_sequences,
                                         [self.forward.units] * self.n_states + [self.backward.units] * self.n_states)
