"""``Callback``: the base class of everything passed to ``fit(callbacks=...)``.

The hooks, their arguments and their order are Keras 3's. One addition serves
the lean per-step path, where per-step overhead is a design concern:
batch ``logs`` cost a device-to-host sync, so :class:`CallbackList` only calls
the batch hooks a callback actually implements (:meth:`Callback._implements`)
and only computes batch logs when some callback wants them for this batch
(:meth:`Callback._wants_batch_logs`).
"""

from __future__ import annotations

from typing import Any

#: Hooks called once per batch, by mode; ``on_batch_*`` are Keras 2 aliases of the train hooks.
BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


class Callback:
    """Base class used to build new callbacks (``keras.callbacks.Callback``).

    Override the ``on_*`` methods for the stages of interest. ``self.model``
    is the model being trained and ``self.params`` a dict with ``verbose``,
    ``epochs`` and ``steps`` (steps per epoch).

    Batch hooks and performance: a callback that overrides a batch-end hook
    receives the running means of the epoch so far in ``logs``; fetching them
    costs a device-to-host sync per batch. A callback that needs them only on
    some batches can override :meth:`_wants_batch_logs`.
    """

    # class-level defaults too, for subclasses whose __init__ forgets super().__init__()
    params: dict[str, Any] | None = None
    _model = None

    def __init__(self) -> None:
        self.params = None
        self._model = None

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_model(self, model) -> None:
        self._model = model

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, model) -> None:  # Keras 2 callbacks assign self.model directly
        self._model = model

    # -- the lean per-step path -----------------------------------------------------------
    def _implements(self, hook: str) -> bool:
        """Whether calling ``hook`` (e.g. ``"on_train_batch_end"``) on this
        callback does anything. The default answer: the method is overridden
        (in a subclass, or as an instance attribute as ``LambdaCallback``
        does). Callbacks whose need depends on their settings narrow it
        (``ProgbarLogger`` at ``verbose=2`` needs no batch hooks)."""
        return _overrides(self, hook)

    def _wants_batch_logs(self, batch: int) -> bool:
        """Whether this callback reads ``logs`` in the coming batch-end hook
        for ``batch``. Asked just before the hook, only when logs are lazy.

        ``CallbackList`` computes the logs (a device-to-host sync) only if
        some callback answers ``True``; otherwise the hook receives ``{}``.
        Default: ``True``. ``ProgbarLogger`` answers ``True`` only when it is
        about to redraw."""
        return True

    # -- hooks (Keras 3) -----------------------------------------------------------------------
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """A backwards compatibility alias for ``on_train_batch_begin``."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """A backwards compatibility alias for ``on_train_batch_end``."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the start of an epoch (``epoch`` is 0-based), in ``fit`` only."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the end of an epoch. ``logs`` holds the epoch's metric
        results (``{"accuracy": 0.7, "loss": 0.2}``) and, when validation ran,
        the same keys prefixed with ``val_``."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called at the start of a training batch in ``fit``. With
        ``compile(steps_per_execution=N)`` called once every N batches; with
        ``"auto"``, for every batch (chunks run only while no callback but the
        progress bar has batch hooks)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called at the end of a training batch; ``logs`` holds the running
        means of the metrics over the epoch so far."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called at the start of a batch in ``evaluate`` and in validation."""

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called at the end of a batch in ``evaluate`` and in validation;
        ``logs`` holds the running means so far."""

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called at the start of a batch in ``predict``."""

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called at the end of a batch in ``predict``; ``logs["outputs"]`` is
        the batch's predictions."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called at the start of ``fit``."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called at the end of ``fit``; ``logs`` are the last epoch's logs."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Called at the start of ``evaluate`` or of validation."""

    def on_test_end(self, logs: dict | None = None) -> None:
        """Called at the end of ``evaluate`` or of validation, with its results."""

    def on_predict_begin(self, logs: dict | None = None) -> None:
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs: dict | None = None) -> None:
        """Called at the end of ``predict``."""


def _overrides(callback: Any, hook: str) -> bool:
    """Whether ``callback.<hook>`` differs from ``Callback``'s no-op.

    The train batch hooks count as implemented when their Keras 2 alias
    (``on_batch_*``) is, since the default forwards to it."""
    base = getattr(Callback, hook)
    method = getattr(callback, hook, None)
    if method is None:
        return False
    if getattr(method, "__func__", None) is not base:
        return True
    alias = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}.get(hook)
    return alias is not None and _overrides(callback, alias)
