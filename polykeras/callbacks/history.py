"""``History``: records the epoch logs of ``fit``; ``fit`` returns it."""

from __future__ import annotations

from polykeras.callbacks.callback import Callback


class History(Callback):
    """Records events into a ``History`` object (``keras.callbacks.History``).

    ``fit`` adds one automatically and returns it (it is also
    ``model.history``). Attributes:

    * ``history``: ``{"loss": [...], "accuracy": [...], "val_loss": [...]}``,
      one value per epoch;
    * ``epoch``: the 0-based indices of the recorded epochs;
    * ``params``, ``model``.

    As in Keras 3, each ``fit`` call creates a new one; a ``History`` passed
    explicitly to several ``fit`` calls keeps appending to ``history`` and
    restarts ``epoch``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self
