""":class:`KerasRunner`: a spec compiled to a ``keras.Model``, trained by
Keras -- the :class:`~polykeras.program.Program` as it lives in the process
that imported Keras (the worker, or the user's process when its Keras already
runs the wanted backend; see :mod:`.program`).

Training settings map one to one onto Keras's own classes (the core's
semantics *are* Keras's): the optimizer kind and config onto
``keras.optimizers``, the loss onto ``keras.losses``, each metric kind onto
``keras.metrics``. Loss and metrics accumulate in Keras's metric variables;
:meth:`results` reads them (``Model.get_metrics_result``).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from polykeras.program import Gradients, Program
from polykeras.spec import ModelSpec, TrainingSpec

from .engines import ENGINES
from .model import KerasGraphs

LOSSES = {"categorical_crossentropy": "CategoricalCrossentropy",
          "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
          "binary_crossentropy": "BinaryCrossentropy", "mean_squared_error": "MeanSquaredError",
          "mean_absolute_error": "MeanAbsoluteError"}
METRICS = {"binary_accuracy": "BinaryAccuracy", "categorical_accuracy": "CategoricalAccuracy",
           "sparse_categorical_accuracy": "SparseCategoricalAccuracy", **LOSSES}
OPTIMIZERS = {"SGD": "SGD", "Adam": "Adam", "AdamW": "AdamW", "RMSprop": "RMSprop", "Adagrad": "Adagrad"}


def keras_loss(loss: dict, dtype: str):
    name = LOSSES.get(loss["kind"])
    if name is None:
        raise NotImplementedError(f"the keras backends have no loss {loss['kind']!r}; they have {', '.join(LOSSES)}")
    return getattr(keras.losses, name)(dtype=dtype, **loss.get("config", {}))


def keras_optimizer(optimizer: dict):
    name = OPTIMIZERS.get(optimizer["kind"])
    if name is None:
        raise NotImplementedError(f"the keras backends have no optimizer {optimizer['kind']!r}; they have "
                                  f"{', '.join(OPTIMIZERS)}")
    return getattr(keras.optimizers, name)(**optimizer["config"])


class KerasRunner(Program):
    def __init__(self, backend_name: str, spec: ModelSpec, weights: Sequence[np.ndarray],
                 training: TrainingSpec | None, dtype: str, parity: bool = False):
        self.spec, self.dtype, self.parity = spec, dtype, parity
        self.np_dtype = np.dtype(dtype)
        self.graphs = KerasGraphs(spec, dtype)
        self.input_is_float = np.dtype(self.graphs.input.dtype).kind == "f"
        self.input_differentiable = self.input_is_float and all(
            layer.kind != "Embedding" for layer in spec.layers if spec.inputs[0].name in layer.inbound)
        self.set_weights(weights)
        self.training = training
        self.iterations = 0
        self._ones: dict[int, list[np.ndarray]] = {}
        engine_class = ENGINES[keras.backend.backend()]
        self.loss_fn = None
        if training is not None:
            self.loss_fn = keras_loss(training.loss, dtype)
            # The model that trains: the parity graph feeds the core's masks.
            self.model = self.graphs.parity if parity else self.graphs.native
            self.model.compile(optimizer=keras_optimizer(training.optimizer), loss=self.loss_fn,
                               metrics=[getattr(keras.metrics, METRICS[kind])(name=name, dtype=dtype)
                                        for name, kind in training.metrics])
            self.engine = engine_class(self.model)
        else:
            self.model = self.graphs.native
            self.engine = engine_class(self.model)

    # -- data ------------------------------------------------------------------------
    def _x(self, x: np.ndarray):
        x = np.asarray(x)
        if self.input_is_float and x.dtype != self.np_dtype:
            x = x.astype(self.np_dtype)
        return x

    def _inputs(self, x: np.ndarray, step_seed: int | None, parity: bool | None = None):
        """What the training model takes: ``x``, or ``[x, *masks]`` for the
        parity graph (masks of ones when not training: they are ignored)."""
        parity = self.parity if parity is None else parity
        x = self.engine.tensor(self._x(x))
        if not parity or not self.graphs.masks:
            return x
        batch = int(x.shape[0])
        if step_seed is None:
            if batch not in self._ones:
                self._ones[batch] = [np.ones((batch,) + m.shape, self.np_dtype) for m in self.graphs.masks]
            masks = self._ones[batch]
        else:
            masks = self.graphs.draw_masks(int(step_seed), batch)
        return [x] + [self.engine.tensor(m) for m in masks]

    def _y(self, y: np.ndarray):
        y = np.asarray(y)
        if y.dtype.kind == "f" and y.dtype != self.np_dtype:
            y = y.astype(self.np_dtype)
        return self.engine.tensor(y)

    # -- the Program interface -----------------------------------------------------------
    def train_step(self, x, y, step_seed: int) -> None:
        self.engine.train(self._inputs(x, step_seed), self._y(y))
        self.iterations += 1

    def train_steps(self, xs, ys, step_seeds) -> None:
        for x, y, seed in zip(xs, ys, step_seeds):
            self.train_step(x, y, seed)

    def test_step(self, x, y) -> None:
        self.engine.test(self._inputs(x, None), self._y(y))

    def predict_step(self, x) -> np.ndarray:
        out = self.engine.predict(self.graphs.native, self.engine.tensor(self._x(x)))
        return np.asarray(out, dtype=self.np_dtype)

    def results(self) -> dict[str, float]:
        self.engine.sync()
        logs = self.model.get_metrics_result()
        return {k: float(v) for k, v in logs.items()}

    def reset_metrics(self) -> None:
        self.engine.sync()
        self.model.reset_metrics()

    def get_weights(self) -> list[np.ndarray]:
        self.engine.sync() if hasattr(self, "engine") else None
        return [np.array(keras.ops.convert_to_numpy(v.value), dtype=self.np_dtype) for v in self.graphs.variables]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        variables = self.graphs.variables
        if len(weights) != len(variables):
            raise ValueError(f"model {self.spec.name!r} has {len(variables)} weight arrays, got {len(weights)}")
        if hasattr(self, "engine"):
            self.engine.sync()
        for i, (v, w) in enumerate(zip(variables, weights)):
            if tuple(np.shape(w)) != tuple(v.shape):
                raise ValueError(f"weight {i} of model {self.spec.name!r} must have shape {tuple(v.shape)}, "
                                 f"got {np.shape(w)}")
            v.assign(np.asarray(w, dtype=self.np_dtype))

    def set_learning_rate(self, value: float) -> None:
        self.engine.sync()
        self.model.optimizer.learning_rate.assign(float(value))

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        model = self.graphs.parity
        if self.loss_fn is None:
            raise RuntimeError("value_and_grad needs a compiled loss: compile the program with a TrainingSpec")
        inputs = self._inputs(x, step_seed if training else None, parity=True)
        inputs = inputs if isinstance(inputs, list) else [inputs]
        loss, grads, d_input = self.engine.value_and_grad(model, self.loss_fn, inputs, self._y(y), training,
                                                          self.input_differentiable)
        by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads)}
        weights = [np.asarray(by_variable[id(v)], dtype=self.np_dtype) if w.trainable else None
                   for (_, w), v in zip(self.spec.weight_specs, self.graphs.variables)]
        return Gradients(loss, weights, None if d_input is None else np.asarray(d_input, dtype=self.np_dtype))
