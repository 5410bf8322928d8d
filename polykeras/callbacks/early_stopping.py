"""``EarlyStopping``: stop training when a monitored metric stops improving."""

from __future__ import annotations

from polykeras.callbacks.callback import Callback
from polykeras.callbacks.monitor import checked_mode, infer_direction, missing_monitor_warning
from polykeras.utils.progbar import print_msg


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving
    (``keras.callbacks.EarlyStopping``, Keras 3 semantics).

    At each epoch end: an improvement is ``current + min_delta < best`` (mode
    min) or ``current - min_delta > best`` (mode max). ``wait`` counts epochs
    since the last improvement; training stops once ``wait >= patience``
    (never after the first epoch). With a ``baseline``, an improvement over
    the best so far resets ``wait`` only if it also beats the baseline.

    Args:
        monitor: quantity to monitor, e.g. ``"val_loss"``, ``"val_accuracy"``.
        min_delta: minimum change that counts as an improvement (its sign is
            ignored).
        patience: epochs without improvement before stopping.
        verbose: 1 prints when stopping and restoring.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the metric's name).
        baseline: value the monitored quantity has to beat.
        restore_best_weights: at the end of training (stopped early or not,
            as Keras 3), set the weights of the best epoch back on the model.
        start_from_epoch: epochs of warm-up before monitoring starts.

    Attributes: ``stopped_epoch`` (0-based epoch at which training stopped, 0
    if it did not), ``best``, ``best_epoch``, ``wait``, ``best_weights``.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.min_delta = abs(min_delta)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = checked_mode(mode, "EarlyStopping")
        self.direction: str | None = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None) -> None:
        # allow the instance to be reused
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.direction is None:
            self.direction = infer_direction(self.monitor, self.mode, self.model, "EarlyStopping")
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # nothing better seen yet: the current weights are the best
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            missing_monitor_warning("Early stopping", self.monitor, logs)
        return value

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        # an improvement must beat the reference by more than min_delta
        if self.direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference
