"""Run twice by test_distribution_torch.py with torchrun's environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) set by hand, without torchrun's agent (which would kill the survivor
itself): rank 1 kills itself with SIGKILL in the middle of the first epoch; rank 0 writes
``OUT/lost.json`` with the error it got and how long after the death it came."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import polykeras
from polykeras import distribution as dist
from polykeras.layers import Dense

OUT = Path(sys.argv[1])
cluster = dist.initialize(backend="torch")


class Die(polykeras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if cluster.process_id == 1 and batch == 20:
            (OUT / "died").write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


model = polykeras.models.Sequential([polykeras.Input((20,)), Dense(32, activation="relu"),
                                     Dense(3, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="torch", device="cpu",
              distribution=dist.DataParallel())
x = np.random.default_rng(0).normal(size=(3200, 20))
try:
    model.fit(x, np.zeros(len(x), int), batch_size=16, epochs=3, verbose=0, callbacks=[Die()])
except Exception as exc:  # noqa: BLE001 -- the report says what it was
    now = time.time()
    died = float((OUT / "died").read_text()) if (OUT / "died").exists() else None
    (OUT / "lost.json").write_text(json.dumps({"type": type(exc).__name__, "message": str(exc),
                                               "after_s": None if died is None else now - died}))
    sys.exit(3)
