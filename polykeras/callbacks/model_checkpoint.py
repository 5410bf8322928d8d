"""``ModelCheckpoint``: save the model or its weights during training."""

from __future__ import annotations

import os
import warnings

from polykeras.callbacks.callback import Callback
from polykeras.callbacks.monitor import checked_mode, infer_direction
from polykeras.utils.progbar import print_msg


class ModelCheckpoint(Callback):
    """Save the model or its weights at some frequency
    (``keras.callbacks.ModelCheckpoint``, Keras 3 semantics).

    Args:
        filepath: where to save. May hold format fields filled from the epoch
            logs and the 1-based ``epoch`` (and ``batch`` with an integer
            ``save_freq``): ``"ckpt/{epoch:02d}-{val_loss:.2f}.keras"``.
            Parent directories are created. A whole model is saved in the
            format the suffix names (``model.save``): ``.keras`` (Keras 3's,
            with the optimizer's state, so ``load_model`` + ``fit(initial_epoch=...)``
            resumes exactly) or ``.polykeras``; another suffix is refused here,
            before training, as Keras refuses it.
        monitor: the quantity that decides "best" with ``save_best_only``.
        verbose: 1 prints a line at each save decision.
        save_best_only: save only when ``monitor`` improves on the best so far
            (with a fixed ``filepath`` the best model is overwritten).
        save_weights_only: ``model.save_weights(filepath)`` instead of
            ``model.save(filepath)``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the metric's name).
        save_freq: ``"epoch"``, or an integer N to save every N batches
            (checked at batch ends, so every ``steps_per_execution`` batches).
        initial_value_threshold: the "best" value to beat at the start.
    """

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: float | None = None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        if not save_weights_only and not self.filepath.lower().endswith((".keras", ".polykeras")):
            raise ValueError("The filepath provided must end in `.keras` (Keras 3's model format) or `.polykeras` "
                             f"(polykeras's own); received filepath={self.filepath!r}")
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = checked_mode(mode, "ModelCheckpoint")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"Unrecognized save_freq: {save_freq!r}. Expected 'epoch' or a positive integer "
                             "(save every that many batches)")
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self.direction: str | None = None
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1

    # -- batch-level saving (save_freq=N) ---------------------------------------------------
    def _implements(self, hook: str) -> bool:
        if hook == "on_train_batch_end":
            return self.save_freq != "epoch"
        return super()._implements(hook)

    def _batches_added(self, batch: int) -> int:
        return batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen  # new epoch: reset

    def _wants_batch_logs(self, batch: int) -> bool:
        # logs are needed only on the batches where a save happens
        return self.save_freq != "epoch" and \
            self._batches_seen_since_last_saving + self._batches_added(batch) >= self.save_freq

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_seen_since_last_saving += self._batches_added(batch)
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            self._save_model(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs or {})

    # -- saving ------------------------------------------------------------------------------
    def _save_model(self, epoch: int, batch: int | None, logs: dict) -> None:
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if os.path.isdir(filepath):
            raise IsADirectoryError(f"ModelCheckpoint filepath is an existing directory: {filepath}; "
                                    "give a file name such as 'ckpt/model.keras'")
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)

    def _should_save(self, epoch: int, logs: dict, filepath: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available. Available metrics are: "
                          f"{','.join(logs)}", stacklevel=4)
            return True
        if self.direction is None:
            self.direction = infer_direction(self.monitor, self.mode, self.model, "ModelCheckpoint")
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        improved = self.best is None or (current < self.best if self.direction == "min" else current > self.best)
        if improved:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {current:.5f}, "
                          f"saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _get_file_path(self, epoch: int, batch: int | None, logs: dict) -> str:
        fields = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {e.args[0]} is not in '
                           f"the logs. Available keys: {', '.join(fields)}") from None
        except (IndexError, ValueError) as e:
            raise ValueError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}. Use named '
                             "fields such as {epoch:02d} or {val_loss:.2f}") from None
