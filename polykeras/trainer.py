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
from typing import Any

import numpy as np

from polykeras import model_data as data
from polykeras import random as _random
from polykeras.callbacks import CallbackList


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
    def fit(self, x, y, *, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
            initial_epoch, validation_batch_size, validation_freq):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before fit(): call "
                               "model.compile(optimizer=..., loss=...) first")
        x, y = self.prepare(x, y)
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            split = int(data.n_samples(x) * (1 - validation_split))  # Keras: the *last* samples, before shuffling
            validation_data = (data.rows(x, split, None), data.rows(y, split, None))
            x, y = data.rows(x, 0, split), data.rows(y, 0, split)
        elif validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            validation_data = self.prepare(*validation_data)
        n = data.n_samples(x)
        if n == 0:
            raise ValueError("fit() got no training samples")
        batch_size = int(batch_size or 32)
        steps = math.ceil(n / batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        program = model._get_program(training=True, y_ndim=data.ndims(y))

        cbs = CallbackList(callbacks, model=model, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                           epochs=epochs, steps=steps)
        seed = _random.next_seed()
        schedule = model.optimizer.schedule
        # a schedule sets each step's rate, so with one the steps run one at a time
        per_exec = 1 if schedule is not None else model._steps_per_execution
        global_step = initial_epoch * steps
        model.stop_training = False
        logs: dict[str, Any] = {}
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            program.reset_metrics()
            cbs.on_epoch_begin(epoch)
            if shuffle:
                order = _random.shuffle_order(seed, epoch, n)
                xs, ys = data.take(x, order), data.take(y, order)
            else:
                xs, ys = x, y
            step = 0
            while step < steps:
                k = min(per_exec, n // batch_size - step) if per_exec > 1 else 1
                if cbs.has_train_batch_hooks:
                    cbs.on_train_batch_begin(step)
                if k > 1:
                    lo, hi = step * batch_size, (step + k) * batch_size
                    program.train_steps(data.stacked(xs, lo, hi, k),
                                        data.stacked(ys, lo, hi, k),
                                        [_random.step_seed(seed, global_step + i) for i in range(k)])
                else:
                    k = 1
                    lo = step * batch_size
                    if schedule is not None:
                        _follow(model.optimizer, schedule, program.iterations)
                    program.train_step(data.rows(xs, lo, lo + batch_size), data.rows(ys, lo, lo + batch_size),
                                       _random.step_seed(seed, global_step))
                model._weights_stale = True
                step += k
                global_step += k
                if cbs.has_train_batch_hooks:
                    cbs.on_train_batch_end(step - 1, program.results)
                if model.stop_training:
                    break
            logs = program.results()
            if validation_data is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_test(program, validation_data[0], validation_data[1],
                                          int(validation_batch_size or batch_size), cbs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if "loss" in logs and not math.isfinite(logs["loss"]):
                warnings.warn(f"the loss is {logs['loss']} after epoch {epoch + 1}: training diverged. Lower the "
                              "learning rate, check the data for NaN/inf, or add callbacks.TerminateOnNaN()",
                              RuntimeWarning, stacklevel=3)
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        cbs.on_train_end(logs)
        model._pull_weights()
        return model.history

    # -- evaluate / predict --------------------------------------------------------------------
    def _run_test(self, program, x, y, batch_size: int, cbs: CallbackList | None) -> dict[str, float]:
        program.reset_metrics()
        steps = math.ceil(data.n_samples(x) / batch_size)
        if cbs is not None:
            cbs.on_test_begin()
        for step in range(steps):
            if cbs is not None and cbs.has_test_batch_hooks:
                cbs.on_test_batch_begin(step)
            lo = step * batch_size
            program.test_step(data.rows(x, lo, lo + batch_size), data.rows(y, lo, lo + batch_size))
            if cbs is not None and cbs.has_test_batch_hooks:
                cbs.on_test_batch_end(step, program.results)
        logs = program.results()
        if cbs is not None:
            cbs.on_test_end(logs)
        return logs

    def evaluate(self, x, y, *, batch_size, verbose, callbacks, return_dict):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before evaluate(): call model.compile(...)")
        x, y = self.prepare(x, y)
        batch_size = int(batch_size or 32)
        verbose = 1 if verbose == "auto" else int(verbose)
        program = model._get_program(training=True, y_ndim=data.ndims(y))
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=math.ceil(data.n_samples(y) / batch_size))
        logs = self._run_test(program, x, y, batch_size, cbs)
        return self._format(logs, return_dict)

    def _format(self, logs: dict[str, float], return_dict: bool):
        if return_dict:
            return logs
        values = [logs["loss"]] + [v for k, v in logs.items() if k != "loss"]
        return values[0] if len(values) == 1 else values

    def predict(self, x, *, batch_size, verbose, callbacks) -> np.ndarray:
        model = self.model
        x = self._prepare_x(x)
        batch_size = int(batch_size or 32)
        verbose = 1 if verbose == "auto" else int(verbose)
        program = model._get_program(training=False)
        steps = math.ceil(data.n_samples(x) / batch_size)
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=steps)
        cbs.on_predict_begin()
        outputs = []
        for step in range(steps):
            if cbs.has_predict_batch_hooks:
                cbs.on_predict_batch_begin(step)
            outputs.append(program.predict_step(data.rows(x, step * batch_size, (step + 1) * batch_size)))
            if cbs.has_predict_batch_hooks:
                cbs.on_predict_batch_end(step, {"outputs": outputs[-1]})
        cbs.on_predict_end()
        return data.join_outputs(model, outputs, self._dtype())

    # -- single batches ----------------------------------------------------------------------
    def train_on_batch(self, x, y, return_dict: bool):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before train_on_batch(): call model.compile(...)")
        x, y = self.prepare(x, y)
        program = model._get_program(training=True, y_ndim=data.ndims(y))
        program.reset_metrics()
        if model.optimizer.schedule is not None:
            _follow(model.optimizer, model.optimizer.schedule, program.iterations)
        program.train_step(x, y, _random.step_seed(_random.next_seed(), 0))
        model._weights_stale = True
        return self._format(program.results(), return_dict)

    def test_on_batch(self, x, y, return_dict: bool):
        if self.model._compile_config is None:
            raise RuntimeError(f"model {self.model.name!r} must be compiled before test_on_batch()")
        x, y = self.prepare(x, y)
        program = self.model._get_program(training=True, y_ndim=data.ndims(y))
        program.reset_metrics()
        program.test_step(x, y)
        return self._format(program.results(), return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        x = self._prepare_x(x)
        return data.join_outputs(self.model, [self.model._get_program(training=False).predict_step(x)], self._dtype())


def _follow(optimizer, schedule, iterations: int) -> None:
    """The schedule's rate for the coming update (step ``iterations``, 0 first, as Keras counts),
    handed to the programs only when it changes."""
    rate = float(schedule(iterations))
    if rate != optimizer.learning_rate:
        optimizer._set_rate(rate)
