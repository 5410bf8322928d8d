""":class:`KerasRunner`: a spec compiled to a ``keras.Model``, trained by
Keras -- the :class:`~polykeras.program.Program` as it lives in the process
that imported Keras (the worker, or the user's process when its Keras already
runs the wanted backend; see :mod:`.program`).

Training settings map one to one onto Keras's own classes (the core's
semantics *are* Keras's): the optimizer kind and config onto
``keras.optimizers``, the loss onto ``keras.losses``, each metric kind onto
``keras.metrics``. Loss and metrics accumulate in Keras's metric variables;
:meth:`results` reads them (``Model.get_metrics_result``).

A model of several outputs (``TrainingSpec.outputs``) compiles as in Keras:
a list of losses in output order, ``loss_weights`` and a list of metrics per
output. Keras 3 then tracks ``loss`` (the weighted sum plus regularization),
each output's unweighted loss as ``<output>_loss`` and its metrics as
``<output>_<metric>``, where ``<output>`` is the name of the Keras layer that
made the output (a shared layer's every call has the same one), and its
``get_metrics_result`` lists the metrics *before* the per-output losses.
polykeras names outputs as the user did (dict keys included) and logs
``loss``, the losses, then the metrics (``TrainingSpec.log_names``, the order
of Keras's ``evaluate`` list), so :meth:`KerasRunner.results` reads Keras's
trackers by object, not by name, and returns them under polykeras's names in
polykeras's order.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import keras
import numpy as np

from polykeras.program import Gradients, Program, batch_of
from polykeras.spec import MetricSpec, ModelSpec, TrainingSpec

from .engines import ENGINES
from .model import KerasGraphs
from .operation import graph_function

LOSSES = {"categorical_crossentropy": "CategoricalCrossentropy",
          "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
          "binary_crossentropy": "BinaryCrossentropy", "mean_squared_error": "MeanSquaredError",
          "mean_absolute_error": "MeanAbsoluteError"}
METRICS = {"binary_accuracy": "BinaryAccuracy", "categorical_accuracy": "CategoricalAccuracy",
           "sparse_categorical_accuracy": "SparseCategoricalAccuracy", **LOSSES,
           "top_k_categorical_accuracy": "TopKCategoricalAccuracy",
           "sparse_top_k_categorical_accuracy": "SparseTopKCategoricalAccuracy",
           "precision": "Precision", "recall": "Recall", "auc": "AUC", "mean_iou": "MeanIoU",
           "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
           "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError", "hinge": "Hinge",
           "squared_hinge": "SquaredHinge", "categorical_hinge": "CategoricalHinge", "kl_divergence": "KLDivergence",
           "poisson": "Poisson", "log_cosh": "LogCoshError", "cosine_similarity": "CosineSimilarity",
           "root_mean_squared_error": "RootMeanSquaredError"}
# losses added after METRICS took its copy: the metric kinds stay those polykeras.metrics resolves
LOSSES.update({"mean_absolute_percentage_error": "MeanAbsolutePercentageError",
               "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError", "huber": "Huber",
               "log_cosh": "LogCosh", "hinge": "Hinge", "squared_hinge": "SquaredHinge",
               "kl_divergence": "KLDivergence", "poisson": "Poisson", "cosine_similarity": "CosineSimilarity"})
OPTIMIZERS = {name: name for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "Adamax", "Adadelta",
                                      "Lion", "Ftrl")}


class FunctionLoss(keras.losses.Loss):
    """Keras's wrapper of a loss function (its ``LossFunctionWrapper``, which is not public API)."""

    def __init__(self, fn, name: str, dtype: str):
        super().__init__(name=name, dtype=dtype)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def keras_loss(loss: dict, dtype: str):
    if loss["kind"] == "function":  # a traced function of the user's (polykeras.functions)
        config = loss["config"]
        return FunctionLoss(graph_function(config["graph"], dtype), name=config["name"], dtype=dtype)
    name = LOSSES.get(loss["kind"])
    if name is None:
        raise NotImplementedError(f"the keras backends have no loss {loss['kind']!r}; they have {', '.join(LOSSES)}")
    return getattr(keras.losses, name)(dtype=dtype, **loss.get("config", {}))


def keras_metric(metric: MetricSpec, dtype: str, name: str | None = None):
    """The ``keras.metrics`` object of ``metric``, its config passed as it is (Keras's argument names)."""
    if metric.kind == "function":
        return keras.metrics.MeanMetricWrapper(graph_function(metric.config["graph"], dtype), name=name or metric.name,
                                               dtype=dtype)
    class_name = METRICS.get(metric.kind)
    if class_name is None:
        raise NotImplementedError(f"the keras backends have no metric {metric.kind!r}; they have {', '.join(METRICS)}")
    return getattr(keras.metrics, class_name)(name=name or metric.name, dtype=dtype, **metric.config)


class TotalLoss:
    """Keras's loss of a model of several outputs, as ``CompileLoss`` computes
    it: each output's loss times its weight, summed in output order."""

    def __init__(self, losses: list, weights: list[float]):
        self.losses, self.weights = losses, weights

    def __call__(self, y, out):
        total = None
        for loss_fn, weight, yi, oi in zip(self.losses, self.weights, y, out):
            value = loss_fn(yi, oi)
            if weight != 1.0:
                value = keras.ops.multiply(value, weight)
            total = value if total is None else total + value
        return total


def keras_optimizer(optimizer: dict):
    name = OPTIMIZERS.get(optimizer["kind"])
    if name is None:
        raise NotImplementedError(f"the keras backends have no optimizer {optimizer['kind']!r}; they have "
                                  f"{', '.join(OPTIMIZERS)}")
    return getattr(keras.optimizers, name)(**optimizer["config"])


class KerasRunner(Program):
    def __init__(self, backend_name: str, spec: ModelSpec, weights: Sequence[np.ndarray],
                 training: TrainingSpec | None, dtype: str, parity: bool = False):
        self._args = (backend_name, spec, training, dtype, parity)  # what :meth:`distribute` builds again
        self.spec, self.dtype, self.parity = spec, dtype, parity
        self.np_dtype = np.dtype(dtype)
        self.graphs = KerasGraphs(spec, dtype)
        #: per model input: whether it is float (cast to the program's dtype), and differentiable
        self.input_is_float = [np.dtype(t.dtype).kind == "f" for t in self.graphs.inputs]
        self.input_differentiable = [
            is_float and all(layer.kind != "Embedding" for layer in spec.layers if inp.name in layer.inbound)
            for inp, is_float in zip(spec.inputs, self.input_is_float)]
        self.set_weights(weights)
        self.training = training
        self.iterations = 0
        self._ones: dict[int, list[np.ndarray]] = {}
        engine_class = ENGINES[keras.backend.backend()]
        self.loss_fn = None
        #: several outputs: ``(polykeras's log name, Keras's metric object)``, in ``training.log_names`` order
        self._logs: list[tuple[str, object]] | None = None
        if training is not None:
            # The model that trains: the parity graph feeds the core's masks.
            self.model = self.graphs.parity if parity else self.graphs.native
            optimizer = keras_optimizer(training.optimizer)
            if training.outputs:
                self._compile_outputs(training, optimizer)
            else:
                self.loss_fn = keras_loss(training.loss, dtype)
                # compile(metrics=..., weighted_metrics=...); the names come unique from the core (Keras's rule)
                plain = [keras_metric(m, dtype) for m in training.metrics if not m.weighted]
                weighted = [keras_metric(m, dtype) for m in training.metrics if m.weighted]
                self.model.compile(optimizer=optimizer, loss=self.loss_fn, metrics=plain,
                                   weighted_metrics=weighted or None)
            self.engine = engine_class(self.model)
        else:
            self.model = self.graphs.native
            self.engine = engine_class(self.model)

    # -- data parallelism (keras-jax: :mod:`.distributed`) ---------------------------------------
    _distribution = None
    num_replicas = 1

    def scope(self):
        """Keras's distribution scope of a data-parallel program (every call of one runs in it:
        Keras's JAX trainer reads the distribution when it compiles a step and places a batch)."""
        return nullcontext() if self._distribution is None else self._distribution.scope()

    def distribute(self, replicas: int) -> None:
        """Train data-parallel with Keras's own ``keras.distribution.DataParallel`` over this
        process's first ``replicas`` devices (Keras supports it on JAX only): the model, its
        optimizer and metrics are made again under it (their variables replicated), and each
        batch is split along its first axis as ``Model.fit`` splits it."""
        if keras.backend.backend() != "jax":
            raise NotImplementedError(f"keras.distribution runs on JAX only; Keras on {keras.backend.backend()!r} "
                                      "cannot train data-parallel")
        if self.iterations:
            raise RuntimeError("distribute() a program before it trains")
        devices = keras.distribution.list_devices()
        if replicas > len(devices):
            raise ValueError(f"{replicas} replicas, but Keras sees {len(devices)} device(s): {devices}")
        weights = self.get_weights()
        self._distribution = keras.distribution.DataParallel(devices=devices[:replicas])
        with self.scope():
            backend_name, spec, training, dtype, parity = self._args
            self.__init__(backend_name, spec, weights, training, dtype, parity)
        self.num_replicas = replicas

    def replica_devices(self) -> int:
        """On how many devices the weights live (a data-parallel program: all its replicas')."""
        self.engine.sync()
        return len(self.graphs.variables[0].value.sharding.device_set)

    def _compile_outputs(self, training: TrainingSpec, optimizer) -> None:
        """Compile a model of several outputs: a loss, a weight and metrics per
        output, in ``spec.outputs`` order (the Keras model's output order)."""
        outputs = training.outputs
        if len(outputs) != len(self.spec.outputs):
            raise ValueError(f"model {self.spec.name!r} has {len(self.spec.outputs)} outputs, the training spec "
                             f"{len(outputs)}")
        losses = [keras_loss(o.loss, self.dtype) for o in outputs]
        weights = [float(o.weight) for o in outputs]
        self.loss_fn = TotalLoss(losses, weights)
        plain, weighted = [[] for _ in outputs], [[] for _ in outputs]
        self._metric_objects = []  # in training.log_names order
        for i, m in training.all_metrics:
            # Keras prefixes a metric's name with its output's name; polykeras's names come prefixed already
            log_name = outputs[i].log_name
            prefix = log_name[:-len("loss")] if log_name.endswith("_loss") else ""  # "<output>_"
            obj = keras_metric(m, self.dtype, m.name[len(prefix):] if prefix and m.name.startswith(prefix) else None)
            (weighted if m.weighted else plain)[i].append(obj)
            self._metric_objects.append((m.name, obj))
        self.model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                           metrics=[ms or None for ms in plain] if any(plain) else None,
                           weighted_metrics=[ms or None for ms in weighted] if any(weighted) else None)

    def _several_logs(self) -> list[tuple[str, object]]:
        """Keras's trackers of a model of several outputs under polykeras's names, in
        ``training.log_names`` order (Keras builds the per-output loss trackers with
        the compiled loss, on the first batch)."""
        if self._logs is None:
            trackers = list(self.model._compile_loss.metrics)
            outputs = self.training.outputs
            if len(trackers) != len(outputs):
                raise RuntimeError(f"Keras made {len(trackers)} per-output loss trackers "
                                   f"({[t.name for t in trackers]}) for {len(outputs)} outputs")
            self._logs = ([("loss", self.model._loss_tracker)]
                          + [(o.log_name, t) for o, t in zip(outputs, trackers)] + self._metric_objects)
        return self._logs

    # -- data ------------------------------------------------------------------------
    def _xs(self, x) -> list[np.ndarray]:
        """One array per model input (``x`` is a tuple for several), floats in the program's dtype."""
        xs = list(x) if isinstance(x, (tuple, list)) else [x]
        if len(xs) != len(self.input_is_float):
            raise ValueError(f"model {self.spec.name!r} takes {len(self.input_is_float)} input(s), got {len(xs)}")
        out = []
        for a, is_float in zip(xs, self.input_is_float):
            a = np.asarray(a)
            out.append(a.astype(self.np_dtype) if is_float and a.dtype != self.np_dtype else a)
        return out

    def _inputs(self, x, step_seed: int | None, parity: bool | None = None):
        """What the training model takes: ``x`` (a list for several inputs), or
        ``[*x, *masks]`` for the parity graph (masks of ones when not training:
        they are ignored)."""
        parity = self.parity if parity is None else parity
        xs = [self.engine.tensor(a) for a in self._xs(x)]
        if not parity or not self.graphs.masks:
            return xs[0] if len(xs) == 1 else xs
        batch = int(xs[0].shape[0])
        if step_seed is None:
            if batch not in self._ones:
                self._ones[batch] = [np.ones((batch,) + m.shape, self.np_dtype) for m in self.graphs.masks]
            masks = self._ones[batch]
        else:
            masks = self.graphs.draw_masks(int(step_seed), batch)
        return xs + [self.engine.tensor(m) for m in masks]

    def _y(self, y):
        """The targets as Keras takes them: one tensor, a list of one per output for several."""
        if isinstance(y, tuple):
            return [self._y(a) for a in y]
        y = np.asarray(y)
        if y.dtype.kind == "f" and y.dtype != self.np_dtype:
            y = y.astype(self.np_dtype)
        return self.engine.tensor(y)

    # -- the Program interface -----------------------------------------------------------
    def _w(self, sample_weight):
        """Per-sample loss weights as Keras's ``fit`` takes them (``None`` stays ``None``): one
        tensor, or a list of one per output (Keras's loss and weighted metrics of output ``i`` take
        entry ``i``), where an unweighted output's ``None`` becomes ones -- the same numbers, and
        one structure for Keras's compiled step."""
        if isinstance(sample_weight, tuple):
            n = next(len(w) for w in sample_weight if w is not None)
            return [self._w(np.ones(n) if w is None else w) for w in sample_weight]
        return None if sample_weight is None else self.engine.tensor(np.asarray(sample_weight, self.np_dtype))

    def train_step(self, x, y, step_seed: int, sample_weight=None) -> None:
        self.engine.train(self._inputs(x, step_seed), self._y(y), self._w(sample_weight))
        self.iterations += 1

    def train_steps(self, xs, ys, step_seeds, sample_weights=None) -> None:
        for i, seed in enumerate(step_seeds):
            self.train_step(tuple(a[i] for a in xs) if isinstance(xs, tuple) else xs[i],
                            tuple(a[i] for a in ys) if isinstance(ys, tuple) else ys[i], seed,
                            None if sample_weights is None else batch_of(sample_weights, i))

    def test_step(self, x, y, sample_weight=None) -> None:
        self.engine.test(self._inputs(x, None), self._y(y), self._w(sample_weight))

    def predict_step(self, x):
        """The output for one batch; a tuple of one array per output for several."""
        xs = [self.engine.tensor(a) for a in self._xs(x)]
        out = self.engine.predict(self.graphs.native, xs[0] if len(xs) == 1 else xs)
        if isinstance(out, (list, tuple)):
            return tuple(np.asarray(o, dtype=self.np_dtype) for o in out)
        return np.asarray(out, dtype=self.np_dtype)

    def results(self) -> dict[str, float]:
        self.engine.sync()
        if self.training is not None and self.training.outputs:
            if not self.engine.built:  # nothing ran yet (the reference's logs are empty too)
                return {}
            return {name: float(m.result()) for name, m in self._several_logs()}
        logs = {k: float(v) for k, v in self.model.get_metrics_result().items()}
        names = self.training.log_names if self.training is not None else []  # polykeras's order
        return {**{n: logs[n] for n in names if n in logs}, **{k: v for k, v in logs.items() if k not in names}}

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
        """Loss and gradients through the parity graph (the fed masks in
        training); the input gradient is a tuple, one entry per input, for a
        model of several inputs."""
        model = self.graphs.parity
        if self.loss_fn is None:
            raise RuntimeError("value_and_grad needs a compiled loss: compile the program with a TrainingSpec")
        inputs = self._inputs(x, step_seed if training else None, parity=True)
        inputs = inputs if isinstance(inputs, list) else [inputs]
        wanted = [i for i, ok in enumerate(self.input_differentiable) if ok]
        loss, grads, d_inputs = self.engine.value_and_grad(model, self.loss_fn, inputs, self._y(y), training, wanted)
        by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads)}
        weights = [np.asarray(by_variable[id(v)], dtype=self.np_dtype) if w.trainable else None
                   for (_, w), v in zip(self.spec.weight_specs, self.graphs.variables)]
        by_input = {i: np.asarray(g, dtype=self.np_dtype) for i, g in zip(wanted, d_inputs)}
        d_input = tuple(by_input.get(i) for i in range(len(self.input_differentiable)))
        return Gradients(loss, weights, d_input if len(d_input) > 1 else d_input[0])
