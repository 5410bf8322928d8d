"""Callbacks that change the learning rate between epochs.

Both set ``model.optimizer.learning_rate`` (a float property; the new value
reaches the compiled program before its next step) and, like Keras 3, add
``learning_rate`` to the epoch logs so it shows in the progress bar, the
``History`` and the CSV log.
"""

from __future__ import annotations

import math

import numpy as np

from polykeras.callbacks.callback import Callback
from polykeras.callbacks.monitor import checked_mode, infer_direction, missing_monitor_warning
from polykeras.utils.progbar import print_msg


def _learning_rate(model) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError("this callback needs a compiled model whose optimizer has a learning_rate; "
                         "call model.compile(optimizer=...) first")
    return float(optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Reduce the learning rate when a metric has stopped improving
    (``keras.callbacks.ReduceLROnPlateau``, Keras 3 semantics).

    After ``patience`` epochs without an improvement of at least
    ``min_delta``, ``new_lr = max(lr * factor, min_lr)``; then ``cooldown``
    epochs pass before the counting resumes.

    Args:
        monitor: quantity to monitor.
        factor: multiplier of the learning rate, < 1.
        patience: epochs without improvement before a reduction.
        verbose: 1 prints each reduction.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the metric's name).
        min_delta: threshold for an improvement.
        cooldown: epochs to wait after a reduction.
        min_lr: lower bound on the learning rate.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:  # the Keras 1/2 name of min_delta
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.monitor = monitor
        self.factor = factor
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.mode = checked_mode(mode, "ReduceLROnPlateau")
        self.direction: str | None = None
        self.cooldown_counter = 0
        self.wait = 0
        self.best = math.inf

    def _reset(self) -> None:
        self.direction = infer_direction(self.monitor, self.mode, self.model, "ReduceLROnPlateau", default="min")
        self.best = math.inf if self.direction == "min" else -math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None) -> None:
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _improved(self, current: float) -> bool:
        if self.direction == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.direction is None:
            self._reset()
        if logs is None:
            logs = {}
        logs["learning_rate"] = _learning_rate(self.model)
        current = logs.get(self.monitor)
        if current is None:
            missing_monitor_warning("Learning rate reduction is", self.monitor, logs)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _learning_rate(self.model)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print_msg(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch from a schedule
    (``keras.callbacks.LearningRateScheduler``).

    Args:
        schedule: ``schedule(epoch, lr) -> new_lr`` (epoch 0-based), or the
            older one-argument ``schedule(epoch)``.
        verbose: 1 prints each change.
    """

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None) -> None:
        lr = _learning_rate(self.model)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:  # the one-argument form
            lr = self.schedule(epoch)
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (float, int, np.floating, np.integer)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model)
