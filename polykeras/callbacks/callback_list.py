"""``CallbackList``: calls every callback of a ``fit``/``evaluate``/``predict``.

Keras 3's container, plus the lean per-step contract with the trainer:

* **Skip what nobody implements.** ``has_train_batch_hooks``,
  ``has_test_batch_hooks`` and ``has_predict_batch_hooks`` say whether any
  callback does something in that mode's batch hooks; when ``False`` the
  trainer does not call them at all. Within a hook, only the callbacks that
  implement it are called.
* **Lazy batch logs.** The trainer may pass batch ``logs`` as a zero-argument
  callable returning the dict (fetching metrics is a device-to-host sync).
  The list evaluates it at most once per batch, and only if some callback
  answers ``True`` to ``_wants_batch_logs(batch)``; otherwise the hooks get
  ``{}``. A progress bar wants them only when it is about to redraw.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from polykeras.callbacks.callback import Callback
from polykeras.callbacks.history import History
from polykeras.callbacks.progbar_logger import ProgbarLogger

Logs = dict[str, Any] | Callable[[], dict[str, Any]] | None

_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
                "on_predict_batch_begin", "on_predict_batch_end")


class CallbackList(Callback):
    """Container abstracting a list of callbacks (``keras.callbacks.CallbackList``).

    Args:
        callbacks: a list of ``Callback`` instances (or one, or ``None``).
        add_history: add a ``History`` if ``callbacks`` has none; it becomes
            ``model.history``.
        add_progbar: add a ``ProgbarLogger`` if ``callbacks`` has none.
        model: the model the callbacks act on.
        **params: passed to every callback's ``set_params`` (``verbose``,
            ``epochs``, ``steps``).
    """

    def __init__(self, callbacks: Callback | Iterable[Callback] | None = None, add_history: bool = False,
                 add_progbar: bool = False, model=None, **params: Any):
        super().__init__()
        self.callbacks: list[Callback] = _checked(callbacks)
        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        self._hooks: dict[str, list[Callback]] = {}
        self.set_model(model)
        self.set_params(params)
        self._refresh()

    def append(self, callback: Callback) -> None:
        (callback,) = _checked([callback])
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)
        self._refresh()

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)
        self._refresh()

    def set_model(self, model) -> None:
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    # -- which callbacks implement which batch hook -------------------------------------
    def _refresh(self) -> None:
        """Recompute who implements each batch hook. Called when the set of
        callbacks or their settings may have changed, and at the start of
        each phase (a progress bar ignores validation batches inside fit)."""
        if not hasattr(self, "_hooks"):
            return
        self._hooks = {hook: [cb for cb in self.callbacks if cb._implements(hook)] for hook in _BATCH_HOOKS}

    @property
    def has_train_batch_hooks(self) -> bool:
        """Whether ``on_train_batch_begin``/``_end`` would call any callback."""
        return bool(self._hooks["on_train_batch_begin"] or self._hooks["on_train_batch_end"])

    @property
    def needs_every_train_batch(self) -> bool:
        """Whether a callback other than the progress bar has train batch hooks: one that must see
        every batch, so ``steps_per_execution="auto"`` runs one step at a time. (A progress bar
        drawn once per chunk shows the same thing.)"""
        return any(not isinstance(cb, ProgbarLogger)
                   for cb in self._hooks["on_train_batch_begin"] + self._hooks["on_train_batch_end"])

    @property
    def has_test_batch_hooks(self) -> bool:
        """Whether ``on_test_batch_begin``/``_end`` would call any callback."""
        return bool(self._hooks["on_test_batch_begin"] or self._hooks["on_test_batch_end"])

    @property
    def has_predict_batch_hooks(self) -> bool:
        """Whether ``on_predict_batch_begin``/``_end`` would call any callback."""
        return bool(self._hooks["on_predict_batch_begin"] or self._hooks["on_predict_batch_end"])

    def _implements(self, hook: str) -> bool:  # a CallbackList nested in another
        if hook in self._hooks:
            return bool(self._hooks[hook])
        return any(cb._implements(hook) for cb in self.callbacks)

    def _wants_batch_logs(self, batch: int) -> bool:
        return any([cb._wants_batch_logs(batch) for cb in self.callbacks])

    @staticmethod
    def _resolve(callbacks: list[Callback], batch: int, logs: Logs) -> dict[str, Any]:
        """The batch logs to pass: a lazy ``logs`` is evaluated (once) only
        if one of ``callbacks`` wants it. Every callback is asked, so each
        can record its own decision."""
        if callable(logs):
            if not any([cb._wants_batch_logs(batch) for cb in callbacks]):
                return {}
            logs = logs()
        return _pythonify(logs) if logs else {}

    # -- batch hooks ---------------------------------------------------------------------
    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        callbacks = self._hooks["on_train_batch_begin"]
        if callbacks:
            logs = self._resolve(callbacks, batch, logs)
            for callback in callbacks:
                callback.on_train_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        callbacks = self._hooks["on_train_batch_end"]
        if callbacks:
            logs = self._resolve(callbacks, batch, logs)
            for callback in callbacks:
                callback.on_train_batch_end(batch, logs=logs)

    # Keras 2 names for the train batch hooks
    on_batch_begin = on_train_batch_begin
    on_batch_end = on_train_batch_end

    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None:
        callbacks = self._hooks["on_test_batch_begin"]
        if callbacks:
            logs = self._resolve(callbacks, batch, logs)
            for callback in callbacks:
                callback.on_test_batch_begin(batch, logs=logs)

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        callbacks = self._hooks["on_test_batch_end"]
        if callbacks:
            logs = self._resolve(callbacks, batch, logs)
            for callback in callbacks:
                callback.on_test_batch_end(batch, logs=logs)

    def on_predict_batch_begin(self, batch: int, logs: Logs = None) -> None:
        callbacks = self._hooks["on_predict_batch_begin"]
        if callbacks:
            logs = logs() if callable(logs) else logs
            for callback in callbacks:
                callback.on_predict_batch_begin(batch, logs=logs or {})

    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None:
        # predictions are arrays: passed as they are, not converted to floats
        callbacks = self._hooks["on_predict_batch_end"]
        if callbacks:
            logs = logs() if callable(logs) else logs
            for callback in callbacks:
                callback.on_predict_batch_end(batch, logs=logs or {})

    # -- epoch and phase hooks -------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = _keras_order(logs) if logs is not None else {}
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_begin(self, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_train_begin(logs)
        self._refresh()

    def on_train_end(self, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_train_end(logs)
        self._refresh()

    def on_test_begin(self, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_test_begin(logs)
        self._refresh()

    def on_test_end(self, logs: dict | None = None) -> None:
        # a sorted copy: the caller's dict keeps its order (evaluate() returns values in compile order)
        logs = _keras_order(dict(logs)) if logs is not None else {}
        for callback in self.callbacks:
            callback.on_test_end(logs)

    def on_predict_begin(self, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_predict_begin(logs)
        self._refresh()

    def on_predict_end(self, logs: dict | None = None) -> None:
        logs = logs or {}
        for callback in self.callbacks:
            callback.on_predict_end(logs)


def _checked(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or isinstance(callbacks, type):
        callbacks = [callbacks]
    out: list[Callback] = []
    for cb in callbacks:
        if isinstance(cb, (list, tuple)):
            out.extend(_checked(cb))
        elif isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(f"callbacks must be instances, got the class {cb.__name__}; "
                            f"write {cb.__name__}(...) to create one")
        elif not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be polykeras.callbacks.Callback instances, got {cb!r} of type "
                            f"{type(cb).__module__}.{type(cb).__qualname__}; subclass polykeras.callbacks.Callback "
                            "(callbacks from the keras package itself do not work with polykeras models)")
        else:
            out.append(cb)
    return out


def _pythonify(logs: dict[str, Any]) -> dict[str, Any]:
    """Logs as Keras hands them to callbacks: keys sorted, nested dicts
    flattened, numbers as Python floats."""
    result: dict[str, Any] = {}
    for key, value in sorted(logs.items()):
        if isinstance(value, dict):
            result.update(_pythonify(value))
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            pass
        result[key] = value
    return result


def _keras_order(logs: dict[str, Any]) -> dict[str, Any]:
    """Reorder ``logs`` in place the way Keras 3 presents epoch logs: the
    training keys sorted, then the ``val_`` keys sorted (``accuracy, loss,
    val_accuracy, val_loss``). In place, so that keys a callback adds (such
    as ``learning_rate``) are seen by the callbacks after it and by the caller."""
    keys = list(logs)
    ordered = sorted(k for k in keys if not k.startswith("val_")) + sorted(k for k in keys if k.startswith("val_"))
    if ordered != keys:
        items = [(k, logs[k]) for k in ordered]
        logs.clear()
        logs.update(items)
    return logs
