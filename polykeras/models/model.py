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

from polykeras import backend as _keras_backend
from polykeras import losses as _losses
from polykeras import metrics as _metrics
from polykeras import optimizers as _optimizers
from polykeras.layers.base import Layer, SymbolicTensor, unique_name
from polykeras.layers.input_layer import InputLayer
from polykeras.spec import InputSpec, ModelSpec, TrainingSpec


class Model:
    """A functional model, ``Model(inputs, outputs)``, and the base of ``Sequential``."""

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
        if inputs is None and outputs is None:
            if type(self) is Model:
                raise NotImplementedError(
                    "subclassed models (overriding call()) are not supported yet; build the model with "
                    "Model(inputs, outputs) or Sequential([...])"
                )
            return
        self._inputs = _as_list(inputs, "inputs")
        self._outputs = _as_list(outputs, "outputs")
        if len(self._inputs) != 1 or len(self._outputs) != 1:
            raise NotImplementedError("models with several inputs or outputs are not supported yet")
        self._graph_layers = _topological_layers(self._inputs, self._outputs)
        self._adopt_layers()

    # -- structure ---------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._graph_layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {', '.join(l.name for l in self.layers)}")

    @property
    def built(self) -> bool:
        return True

    def _adopt_layers(self) -> None:
        names = [l.name for l in self._weighted_layers()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"layer names must be unique within a model; repeated: {', '.join(dupes)}")
        for layer in self._weighted_layers():
            layer._model_ref = weakref.ref(self)
        self._spec_cache = None

    def _weighted_layers(self) -> list[Layer]:
        """Layers in spec order (input layers excluded)."""
        return [l for l in self._graph_layers if not isinstance(l, InputLayer)]

    def _spec(self) -> ModelSpec:
        """The model as plain data; what a backend compiles."""
        if self._spec_cache is None:
            self._spec_cache = self._build_spec()
        return self._spec_cache

    def _build_spec(self) -> ModelSpec:
        inp = self._inputs[0]
        inputs = (InputSpec(inp.layer.name, inp.shape, _input_dtype(inp.dtype, self._first_consumers(inp.layer))),)
        layers = []
        for layer in self._weighted_layers():
            t = layer._output_tensor
            inbound = tuple(s.layer.name for s in t.inputs)
            layers.append(layer.to_spec(inbound, tuple(s.shape for s in t.inputs)))
        return ModelSpec(self.name, inputs, tuple(layers), (self._outputs[0].layer.name,))

    def _first_consumers(self, input_layer: Layer) -> list[Layer]:
        return [l for l in self._weighted_layers() if any(t.layer is input_layer for t in l._output_tensor.inputs)]

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return list(self._outputs)

    @property
    def input_shape(self):
        return self._spec().inputs[0].shape

    @property
    def output_shape(self):
        return self._spec().output_shape()

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
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self):
        return [w for w in self.weights if not w.trainable]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._weighted_layers())

    # -- compile -------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly: bool = False, steps_per_execution: int = 1, jit_compile="auto", auto_scale_loss=True,
                *, backend: str | None = None, device: str | None = None, dtype: str | None = None,
                parity: bool = False) -> None:
        """Keras's ``compile``, plus polykeras's choice of ``backend``, ``device``
        and ``dtype`` (defaults: ``POLYKERAS_BACKEND``, the backend's best device,
        ``floatx()``) and ``parity`` (dropout masks drawn by the core, so runs
        compare step by step across backends)."""
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        if loss_weights is not None or weighted_metrics is not None:
            raise NotImplementedError("loss_weights and weighted_metrics are not supported yet")
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution!r}")
        self._pull_weights()
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        metrics = list(metrics or [])
        for m in metrics:  # fail now on a typo, with the list of valid names
            _metrics.resolve(m, self.loss.kind, 2, (None, 2))
        self._metric_ids = metrics
        self._steps_per_execution = int(steps_per_execution)
        self._compile_config = {"backend": backend, "device": device, "dtype": dtype, "parity": bool(parity)}
        self._program = None
        self._program_key = None

    @property
    def compiled(self) -> bool:
        return self._compile_config is not None

    def _training_spec(self, y_ndim: int) -> TrainingSpec:
        out_shape = self.output_shape
        metrics = tuple(_metrics.resolve(m, self.loss.kind, y_ndim, out_shape) for m in self._metric_ids)
        return TrainingSpec(self.optimizer.to_spec(), self.loss.to_spec(), metrics)

    def _get_program(self, training: bool, y_ndim: int | None = None):
        """The compiled program, (re)built when first needed or when what it
        was built for changed. Weights carry over from the previous program."""
        if training and self._compile_config is None:
            raise RuntimeError(f"model {self.name!r} must be compiled before training or evaluation: call "
                               "model.compile(optimizer=..., loss=...) first")
        cfg = self._compile_config or {}
        training_spec = None
        if training:
            y_ndim = y_ndim if y_ndim is not None else len(self.output_shape)
            training_spec = self._training_spec(y_ndim)
        key = (training_spec, id(self._spec()))
        if self._program is not None and (self._program_key == key or (not training and self._program_key)):
            return self._program
        from polykeras.backends import get_backend

        self._pull_weights()
        backend = get_backend(cfg.get("backend"), cfg.get("device"), cfg.get("dtype"))
        self._check_supported(backend)
        weights = [w.astype(backend.dtype, copy=False) for w in self._host_weights()]
        self._program = backend.compile(self._spec(), weights, training_spec, parity=cfg.get("parity", False))
        self._program_key = key
        self._weights_stale = False
        if training:
            self.optimizer._bind(self._program)
        return self._program

    def _check_supported(self, backend) -> None:
        missing = [k for k in self._spec().kinds if backend.layer_kinds and k not in backend.layer_kinds]
        if missing:
            from polykeras.backends import backend_infos

            having = {k: [n for n, i in backend_infos().items() if k in i.layer_kinds and i.installed] for k in missing}
            detail = "; ".join(f"{k} is implemented by: {', '.join(v) or 'no installed backend'}" for k, v in having.items())
            raise NotImplementedError(f"backend {backend.name!r} does not implement layer kind(s) "
                                      f"{', '.join(missing)} used by model {self.name!r}. {detail}")

    @property
    def backend(self):
        """The backend running this model (``None`` before first use)."""
        return None if self._program is None else getattr(self._program, "backend", None)

    # -- training API ------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq: int = 1):
        """Train for ``epochs`` (Keras semantics); returns a ``History``."""
        if class_weight is not None or sample_weight is not None:
            raise NotImplementedError("class_weight and sample_weight are not supported yet")
        if steps_per_epoch is not None:
            raise NotImplementedError("steps_per_epoch is not supported yet; fit() on arrays runs whole epochs")
        from polykeras.trainer import Trainer

        return Trainer(self).fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                                 validation_split=validation_split, validation_data=validation_data,
                                 shuffle=shuffle, initial_epoch=initial_epoch,
                                 validation_batch_size=validation_batch_size, validation_freq=validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict: bool = False):
        """Loss and metrics in inference mode: a scalar loss, ``[loss, *metrics]``
        or, with ``return_dict``, a dict."""
        if sample_weight is not None or steps is not None:
            raise NotImplementedError("sample_weight and steps are not supported yet in evaluate()")
        from polykeras.trainer import Trainer

        return Trainer(self).evaluate(x, y, batch_size=batch_size, verbose=verbose, callbacks=callbacks,
                                      return_dict=return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
        if steps is not None:
            raise NotImplementedError("predict(steps=...) is not supported yet; pass the arrays to predict")
        from polykeras.trainer import Trainer

        return Trainer(self).predict(x, batch_size=batch_size, verbose=verbose, callbacks=callbacks)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict: bool = False):
        from polykeras.trainer import Trainer

        return Trainer(self).train_on_batch(x, y, return_dict=return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        from polykeras.trainer import Trainer

        return Trainer(self).test_on_batch(x, y, return_dict=return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        from polykeras.trainer import Trainer

        return Trainer(self).predict_on_batch(x)

    def __call__(self, x, training: bool = False):
        if isinstance(x, SymbolicTensor):
            raise NotImplementedError("calling a model on symbolic inputs (nesting models) is not supported yet")
        return self.predict_on_batch(x)

    @property
    def metrics_names(self) -> list[str]:
        if self._compile_config is None:
            return []
        return ["loss"] + [_metrics.resolve(m, self.loss.kind, len(self.output_shape), self.output_shape)[0]
                           for m in self._metric_ids]

    # -- config, saving, summary ------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        layers = []
        for layer in self._graph_layers:
            entry = {"class_name": type(layer).__name__, "config": layer.get_config()}
            if not isinstance(layer, InputLayer):
                entry["inbound"] = [t.layer.name for t in layer._output_tensor.inputs]
            layers.append(entry)
        return {"name": self.name, "layers": layers, "input_layers": [t.layer.name for t in self._inputs],
                "output_layers": [t.layer.name for t in self._outputs]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Model":
        from polykeras.layers import deserialize

        tensors: dict[str, SymbolicTensor] = {}
        for entry in config["layers"]:
            layer = deserialize(entry)
            if isinstance(layer, InputLayer):
                tensors[layer.name] = layer.output
            else:
                (inbound,) = entry["inbound"]
                tensors[layer.name] = layer(tensors[inbound])
        return cls([tensors[n] for n in config["input_layers"]], [tensors[n] for n in config["output_layers"]],
                   name=config.get("name"))

    def get_compile_config(self) -> dict[str, Any] | None:
        if self._compile_config is None:
            return None
        return {"optimizer": _optimizers.serialize(self.optimizer), "loss": _losses.serialize(self.loss),
                "metrics": [m if isinstance(m, str) else getattr(m, "name", str(m)) for m in self._metric_ids],
                "steps_per_execution": self._steps_per_execution}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(optimizer=_optimizers.get(config["optimizer"]), loss=_losses.get(config["loss"]),
                     metrics=config.get("metrics"), steps_per_execution=config.get("steps_per_execution", 1))

    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Save architecture, weights and compile settings to one portable file
        (loadable on any backend with ``polykeras.models.load_model``)."""
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

        for line in summary_lines(self, line_length):
            (print_fn or print)(line)

    def to_json(self, **kwargs) -> str:
        import json

        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def _as_list(value, what: str) -> list[SymbolicTensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, SymbolicTensor):
            raise TypeError(f"Model {what} must come from polykeras.Input(...) and layer calls, got {item!r}")
    return items


def _topological_layers(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]) -> list[Layer]:
    """Layers from inputs to outputs, each after the layers it reads."""
    order: list[Layer] = []
    seen: set[int] = set()

    def visit(t: SymbolicTensor) -> None:
        if id(t.layer) in seen:
            return
        for parent in t.inputs:
            visit(parent)
        if isinstance(t.layer, InputLayer) and all(t is not i for i in inputs):
            raise ValueError(f"output depends on input {t.layer.name!r}, which is not among the model's inputs")
        seen.add(id(t.layer))
        t.layer._output_tensor = t
        order.append(t.layer)

    for out in outputs:
        visit(out)
    return order


def _input_dtype(dtype: str, consumers: list[Layer]) -> str:
    if any(layer.kind == "Embedding" for layer in consumers):
        return dtype if np.dtype(dtype).kind in "iu" else "int32"
    return _keras_backend.floatx() if np.dtype(dtype).kind not in "iu" else dtype
