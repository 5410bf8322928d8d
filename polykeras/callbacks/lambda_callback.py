"""``LambdaCallback``: a callback made of plain functions."""

from __future__ import annotations

from polykeras.callbacks.callback import Callback


class LambdaCallback(Callback):
    """Callback for creating simple, custom callbacks on the fly
    (``keras.callbacks.LambdaCallback``).

    The functions are called with the hooks' arguments: ``on_epoch_begin``
    and ``on_epoch_end`` with ``(epoch, logs)``; ``on_train_begin`` and
    ``on_train_end`` with ``(logs)``; ``on_train_batch_begin`` and
    ``on_train_batch_end`` with ``(batch, logs=...)``. Any other hook can be
    given by name in ``kwargs`` (``on_test_end=fn``).

    A function given for a batch-end hook makes training fetch the batch
    logs every batch (a device-to-host sync per step).
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        self.__dict__.update(kwargs)
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        for name, fn in hooks.items():
            if fn is not None:
                setattr(self, name, fn)
