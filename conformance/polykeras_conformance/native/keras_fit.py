"""The workload in Keras 3 itself: the model, exported with
:func:`polykeras.saving.export_keras` and opened by ``keras.saving.load_model``
(Keras's own layer classes, the same initial weights), compiled with the
workload's optimizer, loss and metrics, trained by ``fit`` -- in a process
whose ``KERAS_BACKEND`` the runner sets.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import keras
import numpy as np

from polykeras import saving
from polykeras_conformance import measure


def version() -> str:
    backend = keras.backend.backend()
    framework = __import__(backend)
    return f"keras {keras.__version__}, {backend} {framework.__version__}"


def _keras_device(device: str):
    """A scope placing Keras on ``device`` (Keras's own default, and no scope, for the CPU: Keras on torch
    fails to build Dropout's seed state inside a ``keras.device("cpu:0")`` scope)."""
    platform, _, index = device.partition(":")
    return contextlib.nullcontext() if platform == "cpu" else keras.device(f"gpu:{index or 0}")


class Loop:
    def __init__(self, model, workload, device: str):
        self.device = device
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            try:
                saving.export_keras(model, path)
            except (NotImplementedError, saving.KerasFileError) as exc:  # ops outside layers, and custom layers
                # whose class is not registered (on both sides), have no Keras 3 file form
                raise measure.Unsupported(f"Keras fit gets the workload's model through a .keras file: {exc}") from None
            with _keras_device(self.device):
                self.model = keras.saving.load_model(path, compile=False)
        spec = workload.optimizer().to_spec()
        optimizer = keras.optimizers.get({"class_name": spec["kind"], "config": spec["config"]})
        self.model.compile(optimizer=optimizer, loss=workload.loss, metrics=list(workload.metrics))

    def _x(self, x):
        """Each input in the dtype its Keras input takes (a list for several inputs)."""
        xs = x if isinstance(x, (list, tuple)) else [x]
        xs = [a.astype(t.dtype) for a, t in zip(xs, self.model.inputs)]
        return xs if len(xs) > 1 else xs[0]

    def predict(self, x) -> np.ndarray:
        with _keras_device(self.device):
            return keras.ops.convert_to_numpy(self.model(self._x(x), training=False))

    def fit_epochs(self, x, y, batch: int, epochs: int) -> list[float]:
        timer = measure.epoch_timer(keras.callbacks.Callback)
        x = self._x(x)
        with _keras_device(self.device):
            self.model.fit(x, y.astype(np.float32 if y.ndim > 1 else y.dtype), batch_size=batch, epochs=epochs,
                           verbose=0, callbacks=[timer])
        return timer.seconds
