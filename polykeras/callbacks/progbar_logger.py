"""``ProgbarLogger``: the progress bar of ``fit``/``evaluate``/``predict``."""

from __future__ import annotations

from polykeras.callbacks.callback import Callback
from polykeras.utils.progbar import Progbar, print_msg


class ProgbarLogger(Callback):
    """Prints metrics to stdout (``keras.callbacks.ProgbarLogger``).

    ``fit`` adds one when ``verbose != 0``. Output follows Keras 3: an
    ``Epoch i/n`` line when ``epochs > 1``, then for ``verbose=1`` a bar
    redrawn in place (on a terminal; elsewhere only the final line is
    printed) and for ``verbose=2`` one line per epoch. Validation inside
    ``fit`` is silent; its ``val_*`` results appear on the epoch's final line.

    Cost per step: at ``verbose=1`` a clock read, and the batch logs (a
    device-to-host sync) only on the batches where the bar redraws -- at most
    every ``interval`` seconds. At ``verbose=2`` the batch hooks are skipped.

    Args:
        dynamic_display: redraw in place (``True``) or print final lines only
            (``False``); ``None`` (default) detects a terminal or a notebook.
        interval: minimum seconds between redraws (Keras: 0.05).
    """

    def __init__(self, dynamic_display: bool | None = None, interval: float = 0.05):
        super().__init__()
        self.seen = 0
        self.progbar: Progbar | None = None
        self.target: int | None = None
        self.verbose = 1
        self.epochs = 1
        self.dynamic_display = dynamic_display
        self.interval = interval
        self._called_in_fit = False
        self._decision: tuple[int, bool] | None = None  # (batch, redraw?) from _wants_batch_logs

    def set_params(self, params) -> None:
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    # -- the lean per-step path -----------------------------------------------------------
    def _implements(self, hook: str) -> bool:
        if hook.endswith("batch_begin") or hook in ("on_batch_begin", "on_batch_end") or self.verbose != 1:
            return False
        if hook == "on_test_batch_end":
            return not self._called_in_fit
        return True

    def _wants_batch_logs(self, batch: int) -> bool:
        want = self.verbose == 1 and (self.progbar is None or self.progbar.redraw_due(batch + 1))
        self._decision = (batch, want)
        return want

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        self._called_in_fit = True  # validation inside fit is silent

    def on_train_end(self, logs=None) -> None:
        self._called_in_fit = False

    def on_test_begin(self, logs=None) -> None:
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None) -> None:
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None) -> None:
        self._update_progbar(batch, None)  # predictions are not shown

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None) -> None:
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None) -> None:
        self._finalize_progbar(logs)

    # -- the bar --------------------------------------------------------------------------------
    def _reset_progbar(self) -> None:
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self) -> None:
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, interval=self.interval,
                                   unit_name="step", dynamic_display=self.dynamic_display)

    def _update_progbar(self, batch: int, logs) -> None:
        self._maybe_init_progbar()
        self.seen = batch + 1  # 1-based
        decision, self._decision = self._decision, None
        if self.verbose != 1:
            return
        if decision is not None and decision[0] == batch and not decision[1]:
            self.progbar.advance(self.seen)  # logs were withheld: count the step, do not redraw
            return
        if logs:
            # batch logs are already running means: shown as they are (Keras
            # averages them once more until the epoch's final line)
            self.progbar.stateful_metrics.update(logs)
            self.progbar.update(self.seen, list(logs.items()), finalize=False)
        else:
            self.progbar.update(self.seen, None, finalize=False)

    def _finalize_progbar(self, logs) -> None:
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)
