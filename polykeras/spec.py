"""The model spec: the plain data every backend compiles.

A :class:`ModelSpec` is what the Keras-style API objects reduce to before a
backend sees them: a topologically ordered list of layers, each with its
``kind`` (the Keras class name), its ``config`` (Keras ``get_config()`` keys),
the layers it reads from, its input/output shapes and the weights it owns in
the canonical Keras layout. It is JSON-serialisable, so it is also what
``model.save`` writes and what the conformance suite hands to worker processes.

Shapes use ``None`` for the batch dimension, as Keras does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "polykeras.model/1"

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
    """One layer of the DAG.

    ``inbound`` names the layers (or inputs) whose outputs feed this layer, in
    call order; ``input_shapes`` gives their shapes in the same order.
    """

    name: str
    kind: str
    config: dict[str, Any]
    inbound: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    weights: tuple[WeightSpec, ...] = ()

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
    """A whole model: inputs, layers in topological order, outputs."""

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
    def kinds(self) -> list[str]:
        """The distinct layer kinds the model uses, in first-use order."""
        return list(dict.fromkeys(layer.kind for layer in self.layers))

    def output_shape(self) -> Shape:
        if len(self.outputs) != 1:
            raise ValueError(f"model {self.name!r} has {len(self.outputs)} outputs")
        name = self.outputs[0]
        for inp in self.inputs:
            if inp.name == name:
                return inp.shape
        return self.layer(name).output_shape

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        fmt = data.get("format")
        if fmt != FORMAT:
            raise ValueError(f"unsupported model spec format {fmt!r}; this polykeras reads {FORMAT!r}")
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
            )
            for l in data["layers"]
        )
        return cls(name=data["name"], inputs=inputs, layers=layers, outputs=tuple(data["outputs"]))

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
class TrainingSpec:
    """What ``compile()`` adds to a model, in backend-facing form.

    ``optimizer`` and ``loss`` are ``{"kind": ..., "config": {...}}`` with
    Keras's names and hyper-parameters (see :mod:`polykeras.optimizers` and
    :mod:`polykeras.losses` for the exact semantics); ``metrics`` are
    ``(display name, kind)`` pairs as resolved by :func:`polykeras.metrics.resolve`.
    """

    optimizer: dict[str, Any]
    loss: dict[str, Any]
    metrics: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingSpec":
        return cls(data["optimizer"], data["loss"], tuple(tuple(m) for m in data.get("metrics", ())))
