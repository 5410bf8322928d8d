"""``Model``: the Keras model API over a backend program.

A model is a graph of layers (functional, from ``Input`` to outputs; or a
plain stack, :class:`~polykeras.models.sequential.Sequential`) plus, once it
is used, a compiled :class:`~polykeras.program.Program` from the selected
backend that holds the live weights. The layers keep host copies of their
weights, refreshed from the program only when someone reads them.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from polykeras import losses as _losses
from polykeras import metrics as _metrics
from polykeras import optimizers as _optimizers
from polykeras.layers.base import Layer, SymbolicTensor, unique_name
from polykeras.layers import trainable as _trainable
from polykeras.models import subclassed
from polykeras.models.graph import Graph, call_layer, check_call_inputs
from polykeras.models.training import TrainingAPI
from polykeras.spec import ModelSpec


class Model(TrainingAPI):
    """A functional model, ``Model(inputs, outputs)``, and the base of ``Sequential``.

    ``inputs`` and ``outputs`` are a tensor, a list or a dict of tensors (a
    dict's keys name them, as in Keras). A model is also a layer: called on
    symbolic tensors, its layers are called on them (so the model's nodes are
    copied into the calling graph, sharing its layers and weights).
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"Model() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        self.name = name or unique_name("functional" if inputs is not None else "model")
        self.stop_training = False
        self.history = None
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self._compile_config: dict[str, Any] | None = None
        self._program = None
        self._program_key: tuple | None = None
        self._weights_stale = False  # the program has newer weights than the layers
        self._spec_cache: ModelSpec | None = None
        self._steps_per_execution = 1
        self._outputs_config = None  # per-output losses/weights/metrics of a compiled model of several outputs
        self._pending_optimizer_state = None  # a loaded model's optimizer state, for its first training program
        self._graph: Graph | None = None
        self._output_names: list[str] | None = None
        if inputs is None and outputs is None:
            if type(self) is Model:
                raise TypeError("Model() needs inputs and outputs (Model(inputs, outputs)), or subclass Model and "
                                "define call()")
            return  # a subclassed model (built by tracing call() on its first data) or a Sequential
        if isinstance(outputs, dict):
            self._output_names = [str(k) for k in outputs]
        self._set_graph(Graph(_as_list(inputs, "inputs"), _as_list(outputs, "outputs"), self.name))

    def _set_graph(self, graph: Graph) -> None:
        self._graph = graph
        for layer in graph.layers:
            layer._model_ref = weakref.ref(self)
        self._spec_cache = None
        self._program = None
        self._program_key = None

    # -- structure ---------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The input layers, then every layer of the graph, each once (a subclassed model not
        built yet: the layers it holds as attributes)."""
        if self._graph is None:
            from polykeras.layers.custom import nested_layers

            return nested_layers(self)
        return [t.layer for t in self._graph.inputs] + self._graph.public_layers

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {', '.join(l.name for l in self.layers)}")

    @property
    def built(self) -> bool:
        return self._graph is not None

    # -- subclassed models (polykeras.models.subclassed) ---------------------------------
    def _build_from_data(self, x) -> None:
        """A subclassed model's first data: trace ``call()`` on inputs shaped like it."""
        if not self.built and callable(getattr(self, "call", None)):
            subclassed.trace(self, subclassed.inputs_for_data(x))

    def build(self, input_shape) -> None:
        """Build a subclassed model for ``input_shape`` (batch included; a list or dict for several inputs)."""
        if not self.built:
            if not callable(getattr(self, "call", None)):
                raise TypeError(f"model {self.name!r} has no call() to build from")
            subclassed.trace(self, subclassed.inputs_for_shapes(input_shape))

    def _weighted_layers(self) -> list[Layer]:
        """The graph's layers (inputs excluded), each once, in the order of
        their first node: the order of the weights."""
        return self._graph.layers

    def _spec(self) -> ModelSpec:
        """The model as plain data; what a backend compiles."""
        if self._graph is None:
            raise ValueError(f"model {self.name!r} is not built yet: call fit/predict/evaluate on data, call it on "
                             "polykeras.Input tensors, or call build(input_shape)")
        if self._spec_cache is None or getattr(self, "_spec_version", None) != _trainable.version:
            spec = self._graph.spec()  # a trainable flag changed: a new spec (so a new program) if ours did
            if spec != self._spec_cache:
                self._spec_cache = spec
            self._spec_version = _trainable.version
        return self._spec_cache

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return list(self._graph.inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return list(self._graph.outputs)

    @property
    def input(self):
        """Keras's ``model.input``: the input tensor, or the list of them for several."""
        return self.inputs[0] if len(self.inputs) == 1 else self.inputs

    @property
    def output(self):
        """Keras's ``model.output``: the output tensor, or the list of them for several."""
        return self.outputs[0] if len(self.outputs) == 1 else self.outputs

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._spec().inputs]

    @property
    def output_names(self) -> list[str]:
        """Keras's: each output's layer; a part of a call of several outputs (``return_state``,
        ``Bidirectional(merge_mode=None)``) is named by that call's layer, and where two outputs
        would share a name the parts take their index (``lstm_0``, ``lstm_2``): losses and logs are
        keyed by these names, which must stay the same when the model is rebuilt from its config."""
        if self._output_names:
            return self._output_names
        outputs = self._graph.outputs
        names = [(t.part_of[0] if t.part_of is not None else t).layer.name for t in outputs]
        return [f"{n}_{t.part_of[1]}" if t.part_of is not None and names.count(n) > 1 else n
                for n, t in zip(names, outputs)]

    @property
    def input_shape(self):
        shapes = [i.shape for i in self._spec().inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = self._spec().output_shapes
        return shapes[0] if len(shapes) == 1 else shapes

    def __call__(self, inputs, training: bool | None = None):
        """On symbolic tensors, add this model's layer calls to the caller's
        graph (a model used as a layer); on arrays, predict one batch."""
        given = list(inputs.values()) if isinstance(inputs, dict) else (
            list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
        if not any(isinstance(t, SymbolicTensor) for t in given):
            return self.predict_on_batch(inputs)
        if not self.built and callable(getattr(self, "call", None)):  # a subclassed model used as a layer
            subclassed.trace(self, subclassed.inputs_for_shapes(
                {k: t.shape for k, t in inputs.items()} if isinstance(inputs, dict)
                else [t.shape for t in given] if isinstance(inputs, (list, tuple)) else given[0].shape))
        if hasattr(self, "_ensure_built") and len(given) == 1:
            self._ensure_built(given[0].shape)
        if isinstance(inputs, dict):
            names = [t.layer.name for t in self._graph.inputs]
            unknown = sorted(set(inputs) - set(names))
            if unknown:
                raise ValueError(f"model {self.name!r} has no input(s) {unknown}; its inputs are {names}")
            given = [inputs[n] for n in names]
        check_call_inputs(self.name, self._graph.inputs, given)
        mapped = {id(e): g for e, g in zip(self._graph.inputs, given)}
        parts: dict[int, list] = {}  # a call of several outputs (return_state): its tensors
        for node in self._graph.nodes:
            if node.part_of is not None:
                mapped[id(node)] = parts[id(node.part_of[0])][node.part_of[1]]
                continue
            out = call_layer(node.layer, [mapped[id(p)] for p in node.inputs])
            if isinstance(out, list) and out and getattr(out[0], "part_of", None) is not None:
                parts[id(node)], out = out, out[0].part_of[0]
            mapped[id(node)] = out
        outs = [mapped[id(t)] for t in self._graph.outputs]
        return outs[0] if len(outs) == 1 else outs

    # -- weights -------------------------------------------------------------------
    def _pull_weights(self) -> None:
        """Refresh the layers' host copies from the program after training."""
        if self._program is not None and self._weights_stale:
            values = self._program.get_weights()
            i = 0
            for layer in self._weighted_layers():
                n = len(layer._weight_values)
                layer._weight_values[:] = [np.array(v) for v in values[i:i + n]]
                i += n
            self._weights_stale = False

    def _push_weights(self) -> None:
        if self._program is not None:
            self._program.set_weights(self._host_weights())

    def _claim_weights(self) -> None:
        """Make this model's program hold the newest weights of its layers.

        A layer may belong to several models (a Sequential used inside a
        functional model, a layer shared by two models). The model that last
        ran a program on a layer is its ``_model_ref``; before this model runs,
        every such other model hands its newest values to the layers, and this
        model's program receives them.
        """
        claimed = False
        for layer in self._weighted_layers():
            owner = layer._model_ref() if layer._model_ref is not None else None
            if owner is not self:
                if owner is not None:
                    owner._pull_weights()
                layer._model_ref = weakref.ref(self)
                claimed = True
        if claimed:
            self._push_weights()

    def _host_weights(self) -> list[np.ndarray]:
        return [w for layer in self._weighted_layers() for w in layer._weight_values]

    def get_weights(self) -> list[np.ndarray]:
        """All weights, canonical Keras layout, in layer order."""
        self._pull_weights()
        return [w.copy() for w in self._host_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        specs = self._spec().weight_specs
        if len(weights) != len(specs):
            raise ValueError(f"model {self.name!r} has {len(specs)} weight arrays, got a list of {len(weights)}")
        for (layer_spec, w_spec), value in zip(specs, weights):
            if np.shape(value) != w_spec.shape:
                raise ValueError(f"weight {layer_spec.name}/{w_spec.name} has shape {w_spec.shape}, "
                                 f"got an array of shape {np.shape(value)}")
        self._pull_weights()
        i = 0
        for layer in self._weighted_layers():
            for j, old in enumerate(layer._weight_values):
                layer._weight_values[j] = np.array(weights[i], dtype=old.dtype)
                i += 1
        self._push_weights()

    @property
    def weights(self):
        return [w for layer in self._weighted_layers() for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for w in self.weights if w.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        return [w for w in self.weights if not w.trainable] if self.trainable else self.weights

    @property
    def trainable(self) -> bool:
        """Settable, as Keras's: sets the flag of every layer (:mod:`polykeras.layers.trainable`)."""
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = value
        _trainable.changed()

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._weighted_layers())

    # -- config, saving, summary ------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Keras's functional config, simplified: each layer with its
        ``inbound_nodes`` (one list of ``[layer name, call index]`` per call)."""
        layers = [{"class_name": type(t.layer).__name__, "config": t.layer.get_config()} for t in self._graph.inputs]
        for layer in self._graph.config_layers:
            entry = {"class_name": type(layer).__name__, "config": layer.get_config(),
                     "inbound_nodes": self._graph.inbound_nodes(layer)}
            masks = self._graph.output_masks(layer)
            layers.append({**entry, "output_masks": masks} if masks else entry)
        return {"name": self.name, "layers": layers, "input_layers": [t.layer.name for t in self._graph.inputs],
                "output_layers": [self._graph.tensor_ref(t) for t in self._graph.outputs],
                **({"output_names": self._output_names} if self._output_names else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> "Model":
        """A new model from :meth:`get_config`'s config; ``custom_objects``: the user's classes in it."""
        from polykeras.models.functional_config import rebuild
        from polykeras.saving.registration import custom_object_scope

        with custom_object_scope(custom_objects):
            inputs, outputs, name = rebuild(config)
        return cls(inputs, outputs, name=name)

    def get_compile_config(self) -> dict[str, Any] | None:
        if self._compile_config is None:
            return None
        config = {"optimizer": _optimizers.serialize(self.optimizer), "steps_per_execution": self._steps_per_execution}
        if self._outputs_config is not None:
            return {**config, **self._outputs_config.config()}
        return {**config, "loss": _losses.serialize(self.loss),
                "metrics": [_metrics.serialize(m) for m in self._metric_ids],
                "weighted_metrics": [_metrics.serialize(m) for m in self._weighted_metric_ids]}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        loss = config["loss"]  # one serialised loss, or a dict of them by output name
        per_output = isinstance(loss, dict) and "class_name" not in loss
        loss = {k: _losses.get(v) for k, v in loss.items()} if per_output else _losses.get(loss)
        self.compile(optimizer=_optimizers.get(config["optimizer"]), loss=loss, metrics=config.get("metrics"),
                     weighted_metrics=config.get("weighted_metrics") or None, loss_weights=config.get("loss_weights"),
                     steps_per_execution=config.get("steps_per_execution", 1))

    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Save architecture, weights, compile settings and optimizer state to one file, in the
        format its suffix names: ``.keras`` (Keras 3's, which Keras opens) or ``.polykeras``
        (polykeras's own); both load on any backend with ``polykeras.models.load_model``."""
        from polykeras.saving import save_model

        save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        from polykeras.saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch: bool = False) -> None:
        from polykeras.saving import load_weights

        load_weights(self, filepath)

    def summary(self, line_length: int = 80, print_fn: Callable[[str], None] | None = None, **kwargs) -> None:
        from polykeras.models.summary import summary_lines

        self._spec()  # a model not built yet says so
        for line in summary_lines(self, line_length):
            (print_fn or print)(line)

    def to_json(self, **kwargs) -> str:
        import json

        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _as_list(value, what: str) -> list[SymbolicTensor]:
    if isinstance(value, dict):
        value = list(value.values())
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, SymbolicTensor):
            raise TypeError(f"Model {what} must come from polykeras.Input(...) and layer calls, got {item!r}")
    return items

