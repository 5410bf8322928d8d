"""Measurements: what one backend computes for each case, level by level.

These functions run inside a backend's worker process and return plain NumPy
arrays keyed by name; comparing them with the reference's happens elsewhere
(:mod:`.compare`). Every model is built after seeding, so all backends start
from the same initial weights, and every step uses a fixed step seed in parity
mode, so all backends drop the same units.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import polykeras as keras
from polykeras import losses
from polykeras import model_data as data
from polykeras import random as pk_random
from polykeras.trainer import Trainer
from polykeras_conformance import cases as _cases

STEP_SEED = 7


class Unsupported(Exception):
    """The backend does not implement something the case needs (coverage, not failure)."""


def _compile(model, loss, optimizer, backend: str, device: str | None, dtype: str, metrics=None):
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, backend=backend, device=device, dtype=dtype,
                  parity=True)
    return model


def _program(model, x, y):
    x, y = Trainer(model).prepare(x, y)
    try:
        return model._get_program(training=True, y_ndim=data.ndims(y)), x, y
    except NotImplementedError as exc:
        raise Unsupported(str(exc)) from None


def layer_case(case: dict, backend: str, device: str | None, dtype: str) -> dict[str, np.ndarray]:
    """L0: output, loss and every gradient of one small model; the case's ``metrics`` on its batch, and the
    state one training step leaves in non-trainable weights (BatchNormalization's moving statistics)."""
    keras.backend.clear_session()  # same layer names in every process and every run
    keras.utils.set_random_seed(0)
    model = _cases.build_model(case)
    _compile(model, losses.get(case["loss"]), "sgd", backend, device, dtype, case.get("metrics"))
    program, x, y = _program(model, *_cases.case_data(case, model.output_shape))
    output = program.predict_step(x)
    outputs = output if isinstance(output, tuple) else (output,)
    result = {("output" if len(outputs) == 1 else f"output {i}"): o for i, o in enumerate(outputs)}
    grads = program.value_and_grad(x, y, STEP_SEED, training=case["training"])
    result["loss"] = np.asarray(grads.loss)
    spec = model._spec()
    for (layer, weight), g in zip(spec.weight_specs, grads.weights):
        if g is not None:  # a one-layer case by kind, a graph by layer name (there may be two Dense)
            result[f"grad {layer.kind if len(spec.layers) == 1 else layer.name}.{weight.name}"] = np.asarray(g)
    inputs = grads.inputs if isinstance(grads.inputs, tuple) else (grads.inputs,)
    for inp, g in zip(spec.inputs, inputs):
        if g is not None:
            result["grad input" if len(inputs) == 1 else f"grad input {inp.name}"] = np.asarray(g)
    if case.get("metrics"):
        program.reset_metrics()
        program.test_step(x, y)
        result.update({f"metric {k}": np.asarray(v) for k, v in program.results().items() if k != "loss"})
    trainable = {weight.trainable for _, weight in spec.weight_specs}
    if trainable == {True, False}:  # (torch cannot train a model with no trainable weight: not judged here)
        program.train_step(x, y, STEP_SEED)
        for (layer, weight), w in zip(spec.weight_specs, program.get_weights()):
            if not weight.trainable:
                result[f"state after a step {layer.kind if len(spec.layers) == 1 else layer.name}.{weight.name}"] = w
    return result


OPTIMIZER_STEPS = 10


def optimizer_case(config: dict, backend: str, device: str | None, dtype: str,
                   observe=None) -> dict[str, np.ndarray]:
    """L1: weights after 1 and after ``OPTIMIZER_STEPS`` updates of a small MLP (with per-sample
    loss weights when the case asks for them). ``observe(step, program, x, y)``, when given, is called
    before each step (the configuration coverage reads the gradients' norms there)."""
    keras.backend.clear_session()  # same layer names in every process and every run
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input(shape=(6,)), keras.layers.Dense(5, activation="tanh"),
                              keras.layers.Dense(3)])
    _compile(model, "mse", keras.optimizers.get({k: config[k] for k in ("class_name", "config")}), backend, device,
             dtype)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 6)), rng.normal(size=(8, 3))
    program, x, y = _program(model, x, y)
    weights = {}
    if config.get("sample_weight"):
        if "sample_weight" not in getattr(program.backend, "training_features", ()):
            raise Unsupported(f"backend {backend!r} does not list 'sample_weight' in Backend.training_features")
        weights = {"sample_weight": rng.random(8).astype(dtype)}
    result = {}
    for step in range(1, OPTIMIZER_STEPS + 1):
        if step == OPTIMIZER_STEPS // 2 + 1 and config.get("learning_rate_factor"):  # as a callback would change it
            program.set_learning_rate(config["config"]["learning_rate"] * config["learning_rate_factor"])
        if observe is not None:
            observe(step, program, x, y)
        program.train_step(x, y, STEP_SEED + step, **weights)
        if step in (1, OPTIMIZER_STEPS):
            for (layer, weight), w in zip(model._spec().weight_specs, program.get_weights()):
                result[f"step {step} {layer.name}.{weight.name}"] = w
    return result


def training_run(workload_name: str, backend: str, device: str | None, dtype: str, steps: int | None,
                 test_samples: int | None = None, distribution=None) -> dict[str, np.ndarray]:
    """L2: per-step training losses, final weights and test accuracy.

    With ``steps`` the first ``steps`` batches are trained in order (quick
    mode); without, whole epochs with the core's seeded shuffling (full mode).
    ``distribution`` (L4): a :class:`polykeras.distribution.DataParallel` to train under.
    """
    from polykeras import workloads

    workload = workloads.get(workload_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras.datasets.DatasetSubsetWarning)
        (x, y), (x_test, y_test) = workload.load()
    if test_samples:
        x_test, y_test = data.rows(x_test, 0, test_samples), y_test[:test_samples]
    keras.backend.clear_session()  # same layer names in every process and every run
    keras.utils.set_random_seed(0)
    model = workload.build()
    workload.compile(model, backend=backend, device=device, dtype=dtype, parity=True, distribution=distribution)
    batch = workload.batch_size
    if steps:
        x, y = data.rows(x, 0, steps * batch), y[: steps * batch]
    program, x, y = _program(model, x, y)
    losses_per_step = []
    epochs = 1 if steps else workload.epochs
    n = data.n_samples(x)
    for epoch in range(epochs):
        order = np.arange(n) if steps else pk_random.shuffle_order(0, epoch, n)
        for step in range(int(np.ceil(n / batch))):
            index = order[step * batch:(step + 1) * batch]
            program.reset_metrics()
            program.train_step(data.take(x, index), y[index], pk_random.step_seed(0, epoch * 100_000 + step))
            losses_per_step.append(program.results()["loss"])
    model._weights_stale = True
    x_test, y_test = Trainer(model).prepare(x_test, y_test)
    program.reset_metrics()
    for lo in range(0, len(y_test), 256):
        program.test_step(data.rows(x_test, lo, lo + 256), y_test[lo:lo + 256])
    result = {"losses": np.array(losses_per_step), "test accuracy": np.asarray(program.results().get("accuracy", np.nan))}
    for (layer, weight), w in zip(model._spec().weight_specs, program.get_weights()):
        result[f"weights {layer.name}.{weight.name}"] = w
    return result


def speed(workload_name: str, backend: str, device: str | None, dtype: str, steps: int = 40,
          epochs: int = 3, distribution=None) -> dict[str, np.ndarray]:
    """L3: ms per training step through ``fit`` (the user's path), median over
    ``epochs`` epochs of ``steps`` steps after a warm-up epoch (L4: under ``distribution``)."""
    workload, model = speed_model(workload_name)
    workload.compile(model, backend=backend, device=device, dtype=dtype, distribution=distribution)
    x, y = speed_data(workload, model, steps)
    batch = workload.batch_size
    _program(model, data.rows(x, 0, batch), y[:batch])  # compiles; a missing kind or feature is unsupported
    timer = epoch_timer()
    model.fit(x, y, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return speed_summary(timer.seconds[1:], steps, batch)


def speed_model(workload_name: str):
    """The workload and its freshly built model, with the same initial weights in every process."""
    from polykeras import workloads

    workload = workloads.get(workload_name)
    keras.backend.clear_session()  # same layer names in every process and every run
    keras.utils.set_random_seed(0)
    return workload, workload.build()


def speed_data(workload, model, steps: int):
    """``steps`` batches of seeded synthetic data of the workload's shapes (speed does not need real data);
    ``x`` is a list of arrays for a model of several inputs."""
    batch = workload.batch_size
    rng = np.random.default_rng(0)
    n = steps * batch
    x = [rng.integers(1, 1000, (n, *inp.shape[1:])) if inp.dtype.startswith("int") else rng.random((n, *inp.shape[1:]))
         for inp in model._spec().inputs]
    x = x if len(x) > 1 else x[0]
    out = model.output_shape[-1]
    y = rng.integers(0, out, n) if workload.loss.startswith("sparse") else rng.integers(0, 2, (n, out))
    return x, y


def speed_summary(epoch_seconds: list[float], steps: int, batch: int) -> dict[str, np.ndarray]:
    """Median ms/step over the timed epochs, and the samples/s it means."""
    ms = float(np.median(epoch_seconds)) / steps * 1000
    return {"ms/step": np.asarray(ms), "samples/s": np.asarray(batch * 1000 / ms)}


def epoch_timer(callback_base=keras.callbacks.Callback):
    """A callback recording each epoch's seconds (``.seconds``) and mean loss (``.losses``), for polykeras's
    or Keras's ``fit``. It has no batch hooks, so ``fit`` keeps the per-step path users get with verbose=0."""

    class EpochTimes(callback_base):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.losses: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.losses.append(float((logs or {}).get("loss", float("nan"))))

    return EpochTimes()
