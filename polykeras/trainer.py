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

from polykeras import random as _random
from polykeras.callbacks import CallbackList
from polykeras.layers.base import format_shape


class Trainer:
    def __init__(self, model) -> None:
        self.model = model

    # -- data checks -----------------------------------------------------------------
    def prepare(self, x, y=None):
        """``x`` (and ``y``) checked against the model and converted to the
        arrays a program receives: what ``fit`` does once before training."""
        x = self._prepare_x(x)
        return x if y is None else (x, self._prepare_y(y, len(x)))

    def _prepare_x(self, x) -> np.ndarray:
        model = self.model
        if x is None:
            raise ValueError("no input data: pass x (a NumPy array)")
        if isinstance(x, (list, tuple)) and len(x) == 1:
            x = x[0]
        x = np.asarray(x)
        if x.dtype == object:
            raise TypeError("x has dtype object (ragged lists?); pad sequences to one length first, e.g. with "
                            "polykeras.utils.pad_sequences")
        if x.ndim == 0:
            raise ValueError("x must have a batch dimension; got a scalar")
        if hasattr(model, "_ensure_built"):
            model._ensure_built(x.shape)
        spec = model._spec()
        expected = spec.inputs[0].shape
        if len(x.shape) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], x.shape[1:])):
            first = spec.layers[0]
            hint = ""
            if len(x.shape) > len(expected) and np.prod(x.shape[1:]) == np.prod([d for d in expected[1:] if d]):
                hint = f" Reshape it with x.reshape(len(x), {', '.join(str(d) for d in expected[1:])}) or add a Flatten layer."
            raise ValueError(
                f"input data does not match model {model.name!r}: its first layer {first.name!r} ({first.kind}) "
                f"expects shape {format_shape(expected)}, got an array of shape {x.shape}.{hint}"
            )
        dtype = spec.inputs[0].dtype
        if np.dtype(dtype).kind in "iu":
            if x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0):
                raise ValueError(f"model {model.name!r} takes integer indices (its first layer is an Embedding) "
                                 "but x holds non-integer values")
            return x.astype(np.int32, copy=False)
        return x.astype(self._dtype(), copy=False)

    def _dtype(self) -> str:
        cfg = self.model._compile_config or {}
        from polykeras import backend

        return cfg.get("dtype") or backend.floatx()

    def _prepare_y(self, y, n: int) -> np.ndarray:
        model = self.model
        if y is None:
            raise ValueError("no targets: pass y (a NumPy array) to fit/evaluate")
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"x and y have different numbers of samples: {n} and {len(y)}")
        out = model.output_shape
        loss = model.loss.kind
        if loss == "sparse_categorical_crossentropy":
            if y.ndim == len(out) and y.shape[-1] == 1:
                y = y.reshape(y.shape[:-1])
            if y.ndim != len(out) - 1:
                raise ValueError(f"sparse_categorical_crossentropy takes integer class labels of shape (n,), got y of "
                                 f"shape {y.shape}; for one-hot targets use loss='categorical_crossentropy'")
            if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
                raise ValueError("sparse_categorical_crossentropy takes integer class labels; y holds fractions")
            if y.size and (y.min() < 0 or y.max() >= out[-1]):
                raise ValueError(f"class labels must be in [0, {out[-1] - 1}] for an output of {out[-1]} classes; "
                                 f"y ranges over [{y.min()}, {y.max()}]")
            return y.astype(np.int32)
        if loss == "categorical_crossentropy" and (y.ndim == len(out) - 1 or (y.shape[-1] == 1 and out[-1] != 1)):
            raise ValueError(
                f"categorical_crossentropy expects one-hot targets of shape (n, {out[-1]}), got y of shape {y.shape} "
                "(integer labels?). Use loss='sparse_categorical_crossentropy', or convert the labels with "
                f"polykeras.utils.to_categorical(y, {out[-1]})"
            )
        if y.ndim == len(out) - 1 and out[-1] == 1:
            y = y[..., None]
        if y.shape[1:] != tuple(out[1:]):
            raise ValueError(f"targets of shape {y.shape} do not match the model output {format_shape(out)}")
        return y.astype(self._dtype(), copy=False)

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x, y, *, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
            initial_epoch, validation_batch_size, validation_freq):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before fit(): call "
                               "model.compile(optimizer=..., loss=...) first")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            split = int(len(x) * (1 - validation_split))  # Keras: the *last* samples, before shuffling
            x, y, validation_data = x[:split], y[:split], (x[split:], y[split:])
        elif validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            x_val = self._prepare_x(validation_data[0])
            validation_data = (x_val, self._prepare_y(validation_data[1], len(x_val)))
        n = len(x)
        if n == 0:
            raise ValueError("fit() got no training samples")
        batch_size = int(batch_size or 32)
        steps = math.ceil(n / batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        program = model._get_program(training=True, y_ndim=y.ndim)

        cbs = CallbackList(callbacks, model=model, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                           epochs=epochs, steps=steps)
        seed = _random.next_seed()
        per_exec = model._steps_per_execution
        global_step = initial_epoch * steps
        model.stop_training = False
        logs: dict[str, Any] = {}
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            program.reset_metrics()
            cbs.on_epoch_begin(epoch)
            if shuffle:
                order = _random.shuffle_order(seed, epoch, n)
                xs, ys = x[order], y[order]
            else:
                xs, ys = x, y
            step = 0
            while step < steps:
                k = min(per_exec, n // batch_size - step) if per_exec > 1 else 1
                if cbs.has_train_batch_hooks:
                    cbs.on_train_batch_begin(step)
                if k > 1:
                    lo, hi = step * batch_size, (step + k) * batch_size
                    program.train_steps(xs[lo:hi].reshape((k, batch_size) + xs.shape[1:]),
                                        ys[lo:hi].reshape((k, batch_size) + ys.shape[1:]),
                                        [_random.step_seed(seed, global_step + i) for i in range(k)])
                else:
                    k = 1
                    lo = step * batch_size
                    program.train_step(xs[lo:lo + batch_size], ys[lo:lo + batch_size],
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
        steps = math.ceil(len(x) / batch_size)
        if cbs is not None:
            cbs.on_test_begin()
        for step in range(steps):
            if cbs is not None and cbs.has_test_batch_hooks:
                cbs.on_test_batch_begin(step)
            lo = step * batch_size
            program.test_step(x[lo:lo + batch_size], y[lo:lo + batch_size])
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
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        batch_size = int(batch_size or 32)
        verbose = 1 if verbose == "auto" else int(verbose)
        program = model._get_program(training=True, y_ndim=y.ndim)
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=math.ceil(len(x) / batch_size))
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
        steps = math.ceil(len(x) / batch_size)
        cbs = CallbackList(callbacks, model=model, add_history=False, add_progbar=verbose != 0, verbose=verbose,
                           epochs=1, steps=steps)
        cbs.on_predict_begin()
        outputs = []
        for step in range(steps):
            if cbs.has_predict_batch_hooks:
                cbs.on_predict_batch_begin(step)
            outputs.append(program.predict_step(x[step * batch_size:(step + 1) * batch_size]))
            if cbs.has_predict_batch_hooks:
                cbs.on_predict_batch_end(step, {"outputs": outputs[-1]})
        cbs.on_predict_end()
        if not outputs:
            return np.zeros((0,) + tuple(model.output_shape[1:]), dtype=self._dtype())
        return np.concatenate(outputs)

    # -- single batches ----------------------------------------------------------------------
    def train_on_batch(self, x, y, return_dict: bool):
        model = self.model
        if model._compile_config is None:
            raise RuntimeError(f"model {model.name!r} must be compiled before train_on_batch(): call model.compile(...)")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        program = model._get_program(training=True, y_ndim=y.ndim)
        program.reset_metrics()
        program.train_step(x, y, _random.step_seed(_random.next_seed(), 0))
        model._weights_stale = True
        return self._format(program.results(), return_dict)

    def test_on_batch(self, x, y, return_dict: bool):
        if self.model._compile_config is None:
            raise RuntimeError(f"model {self.model.name!r} must be compiled before test_on_batch()")
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        program = self.model._get_program(training=True, y_ndim=y.ndim)
        program.reset_metrics()
        program.test_step(x, y)
        return self._format(program.results(), return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        x = self._prepare_x(x)
        return self.model._get_program(training=False).predict_step(x)
