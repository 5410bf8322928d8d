"""``TerminateOnNaN``: stop training as soon as the loss is NaN or infinite."""

from __future__ import annotations

import math

from polykeras.callbacks.callback import Callback
from polykeras.utils.progbar import print_msg


class TerminateOnNaN(Callback):
    """Terminate training when a NaN or infinite loss is seen
    (``keras.callbacks.TerminateOnNaN``).

    Checks the running loss after every training batch, so it fetches the
    batch logs every batch (one device-to-host sync per step).

    Args:
        raise_error: raise ``RuntimeError`` at once instead of setting
            ``model.stop_training`` (which lets ``on_train_end`` run).
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isnan(loss) or math.isinf(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                                   "Terminating training immediately.")
            print_msg(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
