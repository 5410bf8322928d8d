"""The training loop, owned by the core so that every backend sees the same
data in the same order.

The trainer checks and converts the data once, shuffles with a permutation
that depends only on (seed, epoch), slices global batches, and hands each to
the backend program together with the step's seed. Everything else on the
per-step path is optional: callbacks' batch hooks run only when a callback
implements them, and logs are computed only when someone reads them.
"""

from __future__ import annotations

import math
import warnings
from contextlib import closing
from typing import Any

import numpy as np

from polykeras import distribution as _distribution
from polykeras import model_data as data
from polykeras import random as _random
from polykeras import steps_per_execution as _spe
from polykeras.callbacks import CallbackList
from polykeras.data_sources import ArraySource, StreamSource, is_stream


class Trainer:
    def __init__(self, model) -> None:
        self.model = model

    # -- data checks -----------------------------------------------------------------
    def prepare(self, x, y=None):
        """``x`` (and ``y``) checked against the model and converted to the
        arrays a program receives: what ``fit`` does once before training."""
        x = self._prepare_x(x)
        return x if y is None else (x, self._prepare_y(y, data.n_samples(x)))

    def _prepare_x(self, x):
        return data.prepare_x(self.model, x, self._dtype())

    def _prepare_y(self, y, n: int) -> np.ndarray:
        return data.prepare_y(self.model, y, n, self._dtype())

    def _dtype(self) -> str:
        cfg = self.model._compile_config or {}
        from polykeras import backend

        return cfg.get("dtype") or backend.floatx()

    # -- fit ------------------------------------------------------------------------------
    def _batch_preparer(self, class_weight=None):
        """``(x, y, w) -> (x, y, w)`` for one batch of a stream: checked, and weighted."""
        def prepare(x, y, w):
            x, y = self.prepare(x, y)
            return x, y, data.prepare_sample_weight(self.model, w, class_weight, y, data.n_samples(x), self._dtype())
        return prepare

    def _weights(self, sample_weight, class_weight, y, n):
        return data.prepare_sample_weight(self.model, sample_weight, class_weight, y, n, self._dtype())

    def fit(self, x, y, *, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
            initial_epoch, validation_batch_size, validation_freq, steps_per_epoch=None, validation_steps=None,
            sample_weight=None, class_weight=None):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before fit(): call "
                               "model.compile(optimizer=..., loss=...) first")
        batch_size = int(batch_size or 32)
        stream = is_stream(x)
        if stream:
            if y is not None:
                raise ValueError("fit() got y and a generator/dataset as x: the batches it yields are (x, y) pairs; "
                                 "pass y=None")
            if validation_split:
                raise ValueError("validation_split needs arrays; with a generator/dataset pass validation_data")
            if sample_weight is not None:
                raise ValueError("with a generator/dataset, sample weights come in its (x, y, sample_weight) batches")
            train = StreamSource(x, self._batch_preparer(class_weight), steps_per_epoch, what="x")
            first = train.first()
            y_ndim, w = data.ndims(first[1]), first[2]
        else:
            if steps_per_epoch is not None:
                raise NotImplementedError("steps_per_epoch with arrays is not supported yet; fit() on arrays runs "
                                          "whole epochs (pass a generator or dataset to set the steps)")
            x, y = self.prepare(x, y)
            w = self._weights(sample_weight, class_weight, y, data.n_samples(x))
            if validation_data is None and validation_split:
                if not 0 < validation_split < 1:
                    raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
                split = int(data.n_samples(x) * (1 - validation_split))  # Keras: the *last* samples, before shuffling
                validation_data = (data.rows(x, split, None), data.rows(y, split, None)) + (
                    () if w is None else (data.rows(w, split, None),))
                x, y, w = data.rows(x, 0, split), data.rows(y, 0, split), None if w is None else data.rows(w, 0, split)
            if data.n_samples(x) == 0:
                raise ValueError("fit() got no training samples")
            y_ndim = data.ndims(y)
        val = self._test_source(validation_data, int(validation_batch_size or batch_size), validation_steps,
                                "validation_data")
        verbose = _verbosity(verbose)
        probe = first if stream else _first_rows(batch_size, x, y, w)  # what backend="auto" times
        program = model._get_program(training=True, y_ndim=y_ndim, batch=probe)
        _require_weights(program, w)
        _require_weights(program, getattr(val, "w", None))
        seed = _distribution.agreed_seed(program, _random.next_seed())  # the same data order in every replica
        if not stream:
            _distribution.check_batches(program, data.n_samples(x), batch_size)
            if isinstance(val, ArraySource):
                _distribution.check_batches(program, val.n, val.batch_size)
            train = ArraySource(x, y, batch_size, shuffle=bool(shuffle), seed=seed, w=w)
        steps = train.steps
        cbs = CallbackList(callbacks, model=model, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                           epochs=epochs, steps=steps)
        schedule = model.optimizer.schedule
        # a schedule sets each step's rate, so with one the steps run one at a time
        per_exec = 1 if schedule is not None else model._steps_per_execution
        tuner = None
        if per_exec == _spe.AUTO:
            per_exec, tuner = _auto_steps(model, program, cbs, train, (epochs - initial_epoch) * (steps or 0))
        model.stop_training = False
        model._fit_seed = seed
        logs: dict[str, Any] = {}
        cbs.on_train_begin()
        # a BackupAndRestore backup: continue at its epoch and step, with its data order and step seeds
        resume = model.__dict__.pop("_resume_from", None) or {}
        if resume:
            seed = model._fit_seed = int(resume["seed"])
            initial_epoch = int(resume["epoch"])
            if not stream:
                train.seed = seed
            elif resume["step"]:
                raise NotImplementedError("resuming a generator/dataset in the middle of an epoch is not supported; "
                                          "use BackupAndRestore(save_freq='epoch') with streams")
        skip = int(resume.get("step", 0))
        global_step = initial_epoch * (steps or 0) + skip
        for epoch in range(initial_epoch, epochs):
            program.reset_metrics()
            cbs.on_epoch_begin(epoch)
            step = skip if epoch == initial_epoch else 0
            if tuner is not None:
                tuner.epoch_begin()
            with closing(train.epoch(epoch, per_exec, start=step)) as batches:
                for k, xb, yb, wb in batches:
                    if cbs.has_train_batch_hooks:
                        cbs.on_train_batch_begin(step)
                    weights = {}
                    if wb is not None:
                        if stream:  # each batch brings its own weights
                            _require_weights(program, wb)
                        weights = {"sample_weight" + ("s" if k > 1 else ""): wb}
                    if k > 1:
                        program.train_steps(xb, yb, [_random.step_seed(seed, global_step + i) for i in range(k)],
                                            **weights)
                    else:
                        if schedule is not None:
                            _follow(model.optimizer, schedule, program.iterations)
                        program.train_step(xb, yb, _random.step_seed(seed, global_step), **weights)
                    model._weights_stale = True
                    step += k
                    global_step += k
                    if cbs.has_train_batch_hooks:
                        cbs.on_train_batch_end(step - 1, _batch_logs(program))
                    if tuner is not None:
                        tuner.executed(k, program.results)
                    if model.stop_training:
                        break
            if step == 0:
                warnings.warn(f"fit(): the training data ran out in epoch {epoch + 1} (no batch left); training "
                              "stops. A generator is consumed across epochs: pass steps_per_epoch, or a dataset "
                              "that can be iterated again", RuntimeWarning, stacklevel=3)
                break
            logs = program.results()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_test(program, val, cbs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if "loss" in logs and not math.isfinite(logs["loss"]):
                warnings.warn(f"the loss is {logs['loss']} after epoch {epoch + 1}: training diverged. Lower the "
                              "learning rate, check the data for NaN/inf, or add callbacks.TerminateOnNaN()",
                              RuntimeWarning, stacklevel=3)
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        cbs.on_train_end(logs)
        if tuner is not None:  # what a later fit of this program and batch size starts from
            model._auto_steps_per_execution = {"program": program, "batch_size": train.batch_size,
                                               "chosen": tuner.chosen if tuner.measured else None,
                                               "compile_seconds": tuner.compile_seconds}
        model._pull_weights()
        return model.history

    # -- evaluate / predict --------------------------------------------------------------------
    def _test_source(self, value, batch_size: int, steps: int | None, what: str):
        """``(x, y[, sample_weight])`` arrays or a generator/dataset of such batches, as a source;
        ``None`` stays ``None``."""
        if value is None:
            return None
        if is_stream(value):
            return StreamSource(value, self._batch_preparer(), steps, what=what)
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise ValueError(f"{what} must be a tuple (x, y) or (x, y, sample_weight), or a generator/dataset of "
                             "such batches")
        if steps is not None:
            raise NotImplementedError(f"steps with arrays as {what} are not supported yet; they run whole")
        x, y = self.prepare(value[0], value[1])
        w = self._weights(value[2] if len(value) == 3 else None, None, y, data.n_samples(x))
        return ArraySource(x, y, batch_size, w=w)

    def _run_test(self, program, source, cbs: CallbackList | None) -> dict[str, float]:
        program.reset_metrics()
        if cbs is not None:
            cbs.on_test_begin()
        with closing(source.epoch(0)) as batches:
            for step, (_, x, y, w) in enumerate(batches):
                if cbs is not None and cbs.has_test_batch_hooks:
                    cbs.on_test_batch_begin(step)
                if w is None:
                    program.test_step(x, y)
                else:
                    _require_weights(program, w)
                    program.test_step(x, y, sample_weight=w)
                if cbs is not None and cbs.has_test_batch_hooks:
                    cbs.on_test_batch_end(step, _batch_logs(program))
        logs = program.results()
        if cbs is not None:
            cbs.on_test_end(logs)
        return logs

    def evaluate(self, x, y, *, batch_size, verbose, callbacks, return_dict, steps=None, sample_weight=None):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before evaluate(): call model.compile(...)")
        batch_size = int(batch_size or 32)
        if is_stream(x):
            if y is not None:
                raise ValueError("evaluate() got y and a generator/dataset as x: it yields (x, y) pairs; pass y=None")
            if sample_weight is not None:
                raise ValueError("with a generator/dataset, sample weights come in its (x, y, sample_weight) batches")
            source = StreamSource(x, self._batch_preparer(), steps, what="x")
            probe = source.first()
            y_ndim = data.ndims(probe[1])
        else:
            source = self._test_source((x, y) if sample_weight is None else (x, y, sample_weight), batch_size, steps,
                                       "x, y")
            y_ndim = data.ndims(source.y)
            probe = _first_rows(batch_size, source.x, source.y, source.w)
        verbose = _verbosity(verbose)
        program = model._get_program(training=True, y_ndim=y_ndim, batch=probe)
        if isinstance(source, ArraySource):
            _distribution.check_batches(program, source.n, source.batch_size)
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=source.steps)
        logs = self._run_test(program, source, cbs)
        return self._format(logs, return_dict)

    def _format(self, logs: dict[str, float], return_dict: bool):
        if return_dict:
            return logs
        values = [logs["loss"]] + [v for k, v in logs.items() if k != "loss"]
        return values[0] if len(values) == 1 else values

    def predict(self, x, *, batch_size, verbose, callbacks, steps=None) -> np.ndarray:
        model = self.model
        batch_size = int(batch_size or 32)
        if is_stream(x):
            source = StreamSource(x, lambda xb, _y, _w: self._prepare_x(xb), steps, targets=False, what="x",
                                  n_inputs=len(model._spec().inputs) if model.built else 1)
            probe = (source.first(), None, None)
        else:
            if steps is not None:
                raise NotImplementedError("predict(steps=...) with arrays is not supported yet; pass the arrays")
            x = self._prepare_x(x)
            source = ArraySource(x, None, batch_size)
            probe = _first_rows(batch_size, x, None, None)
        verbose = _verbosity(verbose)
        program = model._get_program(training=False, batch=probe)
        if isinstance(source, ArraySource):
            _distribution.check_batches(program, source.n, source.batch_size)
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=source.steps)
        cbs.on_predict_begin()
        outputs = []
        with closing(source.epoch(0)) as batches:
            for step, (_, xb, _, _) in enumerate(batches):
                if cbs.has_predict_batch_hooks:
                    cbs.on_predict_batch_begin(step)
                outputs.append(program.predict_step(xb))
                if cbs.has_predict_batch_hooks:
                    cbs.on_predict_batch_end(step, {"outputs": outputs[-1]})
        cbs.on_predict_end()
        return data.join_outputs(model, outputs, self._dtype())

    # -- single batches ----------------------------------------------------------------------
    def train_on_batch(self, x, y, return_dict: bool, sample_weight=None, class_weight=None):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before train_on_batch(): call model.compile(...)")
        x, y = self.prepare(x, y)
        w = self._weights(sample_weight, class_weight, y, data.n_samples(x))
        program = model._get_program(training=True, y_ndim=data.ndims(y), batch=(x, y, w))
        program.reset_metrics()
        if model.optimizer.schedule is not None:
            _follow(model.optimizer, model.optimizer.schedule, program.iterations)
        weights = {}
        if w is not None:
            _require_weights(program, w)
            weights = {"sample_weight": w}
        program.train_step(x, y, _random.step_seed(_random.next_seed(), 0), **weights)
        model._weights_stale = True
        return self._format(program.results(), return_dict)

    def test_on_batch(self, x, y, return_dict: bool, sample_weight=None):
        if self.model._compile_config is None:
            raise RuntimeError(f"model {self.model.name!r} must be compiled before test_on_batch()")
        x, y = self.prepare(x, y)
        w = self._weights(sample_weight, None, y, data.n_samples(x))
        program = self.model._get_program(training=True, y_ndim=data.ndims(y), batch=(x, y, w))
        program.reset_metrics()
        self._run_test(program, ArraySource(x, y, data.n_samples(x), w=w), None)
        return self._format(program.results(), return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        x = self._prepare_x(x)
        program = self.model._get_program(training=False, batch=(x, None, None))
        return data.join_outputs(self.model, [program.predict_step(x)], self._dtype())


def _auto_steps(model, program, cbs: CallbackList, train, steps_left: int):
    """``steps_per_execution="auto"``: ``(per_execution, tuner)``; ``(1, None)`` where chunks would
    change what callbacks see, with a generator or with several processes. A tuner starts from
    what an earlier fit of this program and batch size measured."""
    if not isinstance(train, ArraySource) or cbs.needs_every_train_batch or \
            _distribution.cluster().num_processes > 1:
        return 1, None
    batch_bytes = sum(a.nbytes for a in _leaves((train.x, train.y, train.w))) // max(1, train.n) * train.batch_size
    steps = train.n // train.batch_size
    tuner = _spe.AutoStepsPerExecution(_spe.largest_size(steps, batch_bytes), _spe.window_steps(steps), steps_left)
    earlier = getattr(model, "_auto_steps_per_execution", None)
    if earlier is not None and earlier["program"] is program and earlier["batch_size"] == train.batch_size:
        # an earlier fit's choice, or at least its estimate of a compilation (this fit's first step is compiled)
        tuner.compile_seconds = earlier["compile_seconds"]
        if earlier["chosen"] is not None:
            tuner.chosen, tuner.measured = earlier["chosen"], True
    return tuner.size, tuner


def _first_rows(batch_size: int, x, y, w) -> tuple:
    """The first batch of arrays, ``(x, y, w)`` (``None`` stays ``None``)."""
    return tuple(None if a is None else data.rows(a, 0, batch_size) for a in (x, y, w))


def _leaves(value):
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [] if value is None else [value]


def _verbosity(verbose) -> int:
    """Keras's ``verbose``; 0 outside rank 0 of a distributed run, so the progress bar shows once."""
    return (1 if verbose == "auto" else int(verbose)) if _distribution.is_chief() else 0


def _batch_logs(program):
    """The lazy logs of batch hooks: ``program.results``, or, where reading the logs would be a
    collective that only rank 0's progress bar asks for, the replica's own (``batch_results``)."""
    return getattr(program, "batch_results", program.results)


def _require(program, feature: str) -> None:
    """Refuse, naming the backend, a training feature its Backend does not declare."""
    backend = getattr(program, "backend", None)
    if feature not in getattr(backend, "training_features", frozenset()):
        name = getattr(backend, "name", type(program).__name__)
        raise NotImplementedError(f"backend {name!r} does not support {feature.replace('_', ' ')}s (it does not list "
                                  f"{feature!r} in Backend.training_features); train without them or on a backend "
                                  "that has them (numpy, torch, jax, keras-*)")


def _require_weights(program, w) -> None:
    """Refuse sample weights (``w`` not ``None``), or per-output ones (a tuple), that the backend lacks."""
    if w is not None:
        _require(program, "sample_weight")
        if isinstance(w, tuple):
            _require(program, "per_output_sample_weight")


def _follow(optimizer, schedule, iterations: int) -> None:
    """The schedule's rate for the coming update (step ``iterations``, 0 first, as Keras counts),
    handed to the programs only when it changes."""
    rate = float(schedule(iterations))
    if rate != optimizer.learning_rate:
        optimizer._set_rate(rate)
