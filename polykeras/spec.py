"""The model spec: the plain data every backend compiles.

A :class:`ModelSpec` is what the Keras-style API objects reduce to before a
backend sees them: a directed acyclic graph of *nodes* (layer calls) over named
inputs, with one or more outputs, listed in topological order. Each node has
its ``kind`` (the Keras class name), its ``config`` (Keras ``get_config()``
keys), the nodes or inputs it reads from (``inbound``, in call order), its
input/output shapes and the weights it owns in the canonical Keras layout.

A layer called at several places (a *shared* layer) is one node per call: the
first owns the weights, each later one names it in ``weights_of`` and owns
none, so the weights exist once and their gradients are the sum over the
calls. A model used as a layer is flattened into the nodes of its layers.

It is JSON-serialisable, so it is also what ``model.save`` writes and what the
conformance suite hands to worker processes. Shapes use ``None`` for the batch
dimension, as Keras does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "polykeras.model/2"
#: Formats this code reads: /1 (chains and DAGs without shared layers) is a subset of /2.
READABLE_FORMATS = ("polykeras.model/1", FORMAT)

Shape = tuple  # tuple[int | None, ...]


@dataclass(frozen=True)
class WeightSpec:
    """One weight array of a layer, in canonical (Keras) layout and order.

    ``regularizer`` is ``{"l1": a, "l2": b}`` when the training loss carries the
    penalty ``a * sum(|w|) + b * sum(w**2)`` for this weight (Keras semantics:
    added once per step, unscaled by the batch size), else ``None``.
    """

    name: str
    shape: tuple[int, ...]
    trainable: bool = True
    regularizer: dict[str, float] | None = None


@dataclass(frozen=True)
class InputSpec:
    """A model input: its name, shape (batch dimension ``None``) and dtype."""

    name: str
    shape: Shape
    dtype: str = "float32"


@dataclass(frozen=True)
class LayerSpec:
    """One node of the graph: one call of a layer.

    ``inbound`` names the nodes (or inputs) whose outputs feed this node, in
    call order; ``input_shapes`` gives their shapes in the same order. A node
    with several inbound (a merge layer) receives a list of inputs.
    ``weights_of`` is ``None`` for a node that owns its weights (``weights``),
    else the name of the earlier node of the same layer whose weights it uses
    (its own ``weights`` is then empty). ``mask`` names the node whose boolean
    output ``(batch, T)`` masks the first input's time steps (Keras's masking,
    :mod:`polykeras.layers.masking`), for the kinds that read one; else ``None``.
    ``training`` is ``False`` for a node that runs in inference mode in training too (Keras 3's
    frozen ``BatchNormalization``: :mod:`polykeras.layers.trainable`), else ``None`` (the
    program's mode: training in a train step, inference otherwise).
    """

    name: str
    kind: str
    config: dict[str, Any]
    inbound: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    weights: tuple[WeightSpec, ...] = ()
    weights_of: str | None = None
    mask: str | None = None
    training: bool | None = None

    def node_training(self, training: bool) -> bool:
        """This node's mode in a forward pass whose mode is ``training``."""
        return bool(training) and self.training is not False

    @property
    def input_shape(self) -> Shape:
        """The shape of the single input (most layers have exactly one)."""
        if len(self.input_shapes) != 1:
            raise ValueError(f"layer {self.name!r} has {len(self.input_shapes)} inputs, not one")
        return self.input_shapes[0]

    @property
    def trainable_indices(self) -> list[int]:
        return [i for i, w in enumerate(self.weights) if w.trainable]


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: inputs, nodes (``layers``) in topological order, outputs."""

    name: str
    inputs: tuple[InputSpec, ...]
    layers: tuple[LayerSpec, ...]
    outputs: tuple[str, ...]
    format: str = field(default=FORMAT)

    # -- queries -----------------------------------------------------------
    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in model {self.name!r}")

    @property
    def weight_specs(self) -> list[tuple[LayerSpec, WeightSpec]]:
        """All weights of the model in canonical order (layer order, then the
        layer's own order) -- the order of ``get_weights()``."""
        return [(layer, w) for layer in self.layers for w in layer.weights]

    @property
    def weight_owners(self) -> list[int]:
        """For each node, the index of the node whose weights it uses (itself
        unless it is a later call of a shared layer)."""
        index = {layer.name: i for i, layer in enumerate(self.layers)}
        return [i if layer.weights_of is None else index[layer.weights_of] for i, layer in enumerate(self.layers)]

    def node_weights(self, i: int) -> tuple[WeightSpec, ...]:
        """The weights node ``i`` computes with (its owner's, for a shared call)."""
        return self.layers[self.weight_owners[i]].weights

    @property
    def features(self) -> frozenset[str]:
        """Graph features a backend must support to run this spec (see
        :attr:`polykeras.program.Backend.graph_features`)."""
        out = set()
        if len(self.inputs) > 1:
            out.add("multiple_inputs")
        if len(self.outputs) > 1:
            out.add("multiple_outputs")
        if any(layer.weights_of is not None for layer in self.layers):
            out.add("shared_layers")
        if any(layer.mask is not None for layer in self.layers):
            out.add("masking")
        if any(layer.training is False for layer in self.layers):
            out.add("inference_nodes")
        if any(layer.kind == "AddLoss" for layer in self.layers):
            out.add("added_losses")
        return frozenset(out)

    @property
    def kinds(self) -> list[str]:
        """The distinct layer kinds the model uses, in first-use order."""
        return list(dict.fromkeys(layer.kind for layer in self.layers))

    def output_shape(self) -> Shape:
        if len(self.outputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.outputs)} outputs")
        return self.output_shapes[0]

    @property
    def output_shapes(self) -> list[Shape]:
        shapes = {inp.name: inp.shape for inp in self.inputs}
        shapes.update((layer.name, layer.output_shape) for layer in self.layers)
        return [shapes[name] for name in self.outputs]

    def validate(self) -> "ModelSpec":
        """Check that the graph is well formed -- unique names, every inbound
        defined before it is read (so no cycles), ``weights_of`` naming an
        earlier node of the same kind, outputs defined -- and return ``self``.
        Raises ``ValueError`` naming the node at fault."""
        defined = {}
        for inp in self.inputs:
            if inp.name in defined:
                raise ValueError(f"model {self.name!r}: input name {inp.name!r} is used twice")
            defined[inp.name] = None
        for layer in self.layers:
            if layer.name in defined:
                raise ValueError(f"model {self.name!r}: node name {layer.name!r} is used twice")
            later = [n for n in layer.inbound if n not in defined]
            if later:
                raise ValueError(f"model {self.name!r}: node {layer.name!r} reads {', '.join(map(repr, later))}, which "
                                 "is not an input or an earlier node (a cycle, an unknown name, or nodes out of "
                                 "topological order)")
            if layer.training not in (None, False):
                raise ValueError(f"model {self.name!r}: node {layer.name!r} has training={layer.training!r}; a node "
                                 "is None (the program's mode) or False (inference mode always)")
            if len(layer.inbound) != len(layer.input_shapes):
                raise ValueError(f"model {self.name!r}: node {layer.name!r} has {len(layer.inbound)} inbound but "
                                 f"{len(layer.input_shapes)} input shapes")
            if layer.mask is not None and layer.mask not in defined:
                raise ValueError(f"model {self.name!r}: node {layer.name!r} reads the mask {layer.mask!r}, which is not "
                                 "an input or an earlier node")
            if layer.weights_of is not None:
                owner = defined.get(layer.weights_of)
                if owner is None or owner.kind != layer.kind or owner.weights_of is not None or layer.weights:
                    raise ValueError(f"model {self.name!r}: node {layer.name!r} uses the weights of "
                                     f"{layer.weights_of!r}, which is not an earlier {layer.kind} node owning weights")
            defined[layer.name] = layer
        missing = [name for name in self.outputs if name not in defined]
        if missing or not self.outputs:
            raise ValueError(f"model {self.name!r}: outputs {missing or '[]'} name no input or node")
        return self

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        fmt = data.get("format")
        if fmt not in READABLE_FORMATS:
            raise ValueError(f"unsupported model spec format {fmt!r}; this polykeras reads "
                             f"{', '.join(map(repr, READABLE_FORMATS))}")
        inputs = tuple(InputSpec(i["name"], _shape(i["shape"]), i.get("dtype", "float32")) for i in data["inputs"])
        layers = tuple(
            LayerSpec(
                name=l["name"],
                kind=l["kind"],
                config=dict(l["config"]),
                inbound=tuple(l["inbound"]),
                input_shapes=tuple(_shape(s) for s in l["input_shapes"]),
                output_shape=_shape(l["output_shape"]),
                weights=tuple(
                    WeightSpec(w["name"], tuple(w["shape"]), bool(w.get("trainable", True)), w.get("regularizer"))
                    for w in l["weights"]
                ),
                weights_of=l.get("weights_of"),
                mask=l.get("mask"),
                training=l.get("training"),
            )
            for l in data["layers"]
        )
        return cls(name=data["name"], inputs=inputs, layers=layers, outputs=tuple(data["outputs"])).validate()

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))


def _shape(value) -> Shape:
    return tuple(None if d is None else int(d) for d in value)


def _jsonable(value):
    """Tuples become lists so that a JSON round trip is an identity."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class MetricSpec:
    """One compiled metric, as :func:`polykeras.metrics.resolve` makes it.

    ``name`` keys the logs (``accuracy``, ``val_accuracy``; Keras's names, made unique as
    Keras's ``compile`` does); ``kind`` names the math every backend implements and
    ``config`` its options (Keras's argument names: ``{"k": 5}``, ``{"thresholds": [0.5]}``).
    ``weighted`` marks an entry of ``compile(weighted_metrics=...)``: it takes the batch's
    sample weights (``sum(w * v) / sum(w)`` for a mean metric). ``masked`` marks a metric that
    its output's Keras mask weights, as Keras's ``MeanMetricWrapper`` does (set by the core on the
    mean kinds of an output that carries a mask; its weights come with each step,
    :mod:`polykeras.loss_masks`). The kinds and how a backend computes each are in
    :mod:`polykeras.metrics.statistics`.
    """

    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    weighted: bool = False
    masked: bool = False

    def __iter__(self):
        """``name, kind = metric``: how backends written for the older ``(name, kind)`` pairs read it
        (they see plain mean metrics only: the core refuses summed ones on a backend without
        ``"metric_statistics"`` in its ``training_features``)."""
        return iter((self.name, self.kind))

    @classmethod
    def from_data(cls, data) -> "MetricSpec":
        """From :meth:`TrainingSpec.to_dict`'s form, or an older spec's ``[name, kind]`` pair."""
        if isinstance(data, MetricSpec):
            return data
        if isinstance(data, dict):
            return cls(data["name"], data["kind"], dict(data.get("config") or {}), bool(data.get("weighted", False)),
                       bool(data.get("masked", False)))
        name, kind = data
        return cls(name, kind)


@dataclass(frozen=True)
class OutputTraining:
    """The loss and metrics of one output of a model of several outputs.

    ``loss`` is ``{"kind", "config"}`` like :attr:`TrainingSpec.loss`;
    ``weight`` multiplies it in the total loss (Keras's ``loss_weights``);
    ``log_name`` is the name its *unweighted* batch mean is logged under
    (``"dense_1_loss"``, as Keras names it); ``metrics`` are
    :class:`MetricSpec` entries, the names already prefixed with the output's name.
    """

    output: str
    loss: dict[str, Any]
    weight: float = 1.0
    log_name: str = ""
    metrics: tuple[MetricSpec, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "metrics", tuple(MetricSpec.from_data(m) for m in self.metrics))


@dataclass(frozen=True)
class TrainingSpec:
    """What ``compile()`` adds to a model, in backend-facing form.

    ``optimizer`` and ``loss`` are ``{"kind": ..., "config": {...}}`` with
    Keras's names and hyper-parameters (see :mod:`polykeras.optimizers` and
    :mod:`polykeras.losses` for the exact semantics); ``metrics`` are
    :class:`MetricSpec` entries as resolved by :func:`polykeras.metrics.resolve`.

    For a model of several outputs, ``outputs`` has one :class:`OutputTraining`
    per ``spec.outputs`` entry, in that order (``loss`` is then the first
    output's, ``metrics`` empty). The loss is then Keras's: the sum of each
    output's loss times its weight (plus the regularization penalty); the logs
    are ``loss`` (that total), each output's ``log_name``, then each output's
    metrics, then each output's weighted metrics (Keras's order) -- the order of
    :attr:`log_names`.
    """

    optimizer: dict[str, Any]
    loss: dict[str, Any]
    metrics: tuple[MetricSpec, ...] = ()
    outputs: tuple[OutputTraining, ...] = ()

    def __post_init__(self):  # ``(name, kind)`` pairs, as older code wrote them, still read
        object.__setattr__(self, "metrics", tuple(MetricSpec.from_data(m) for m in self.metrics))

    @property
    def all_metrics(self) -> list[tuple[int, MetricSpec]]:
        """``(output index, metric)`` for every metric, in the order of :attr:`log_names`."""
        entries = [(i, m) for i, o in enumerate(self.outputs) for m in o.metrics] if self.outputs else \
            [(0, m) for m in self.metrics]
        return [e for e in entries if not e[1].weighted] + [e for e in entries if e[1].weighted]

    @property
    def log_names(self) -> list[str]:
        """The names :meth:`polykeras.program.Program.results` reports, in order."""
        losses = [o.log_name for o in self.outputs]
        return ["loss"] + losses + [m.name for _, m in self.all_metrics]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingSpec":
        def pairs(items):
            return tuple(MetricSpec.from_data(m) for m in items)

        outputs = tuple(OutputTraining(o["output"], o["loss"], float(o.get("weight", 1.0)), o.get("log_name", ""),
                                       pairs(o.get("metrics", ()))) for o in data.get("outputs", ()))
        return cls(data["optimizer"], data["loss"], pairs(data.get("metrics", ())), outputs)
