"""Run by test_distribution_resume.py: a data-parallel run interrupted after its BackupAndRestore
backup is resumed on another replica count and ends as the uninterrupted run.

    python distributed_resume_job.py jax OUT          (XLA_FLAGS giving JAX two CPU devices)
    python distributed_resume_job.py torch OUT        (two processes joined by torchrun's variables)
    python distributed_resume_job.py torch-kill OUT FOLDER killed|resumed   (the slow SIGKILL variant)

The model: 8-16-3 with dropout (the step seeds matter), Adam, float64, shuffled (the data
order matters), 3 epochs of 5 steps of 16 rows, a backup every 3 steps. In one launch:

* ``single``: uninterrupted, one device (torch: rank 0 alone while rank 1 waits);
* ``two``: uninterrupted, 2 replicas;
* ``two-to-one``: 2 replicas stopped after step STOP (an exception in every replica: the fit
  ends without ``on_train_end``, so its backup stays, as after a crash), then resumed on one device;
* ``one-to-two``: one device stopped after step STOP, resumed on 2 replicas.

The resumed fits run under another global seed: only the backup's own seed gives the same data
order and step seeds. Each run records its global per-step losses (the metrics reset before each
step, so the epoch-mean loss after a step is that step's; on torch ``results()`` all-reduces).
Rank 0 writes ``OUT/report.json``: final weights and losses of each run, and what the backup
folders held."""

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import polykeras
from polykeras import distribution as dist
from polykeras.layers import Dense, Dropout

BACKEND, OUT = sys.argv[1], Path(sys.argv[2])
STEPS_PER_EPOCH, BATCH, EPOCHS, SAVE_FREQ = 5, 16, 3, 3
STOP = 7  # in epoch 2; the last backup is after step 3


class Stopped(Exception):
    """The interruption: raised in every replica after the same step."""


class StepLosses(polykeras.callbacks.Callback):
    """Each step's global loss, and (``stop``) an interruption after that many optimizer steps."""

    def __init__(self, stop=None, kill=False):
        super().__init__()
        self.stop, self.kill, self.losses = stop, kill, []

    def on_train_batch_begin(self, batch, logs=None):
        self.model._program.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        program = self.model._program
        self.losses.append([program.iterations, float(program.results()["loss"])])
        if self.stop is not None and program.iterations == self.stop:
            if self.kill:
                (OUT / f"losses-rank{dist.cluster().process_id}.json").write_text(json.dumps(self.losses))
                os.kill(os.getpid(), signal.SIGKILL)
            raise Stopped()


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 8))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)


def run(replicas, backup=None, seed=5, stop=None, kill=False):
    """One fit: ``replicas`` 1 (no distribution) or 2; with a ``backup`` folder, BackupAndRestore
    (resuming when it holds a backup). Returns (weights, losses); ``None`` when stopped."""
    polykeras.backend.clear_session()
    polykeras.utils.set_random_seed(0)  # the same initial weights in every run
    model = polykeras.models.Sequential([polykeras.Input((8,)), Dense(16, activation="relu"), Dropout(0.3),
                                         Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=BACKEND.split("-")[0],
                  device="cpu", dtype="float64",
                  distribution=dist.DataParallel(num_replicas=2) if replicas == 2 else None)
    losses = StepLosses(stop, kill)
    callbacks = [losses] if backup is None else [
        polykeras.callbacks.BackupAndRestore(backup, save_freq=SAVE_FREQ), losses]
    polykeras.utils.set_random_seed(seed)  # the data order and step seeds of this fit
    x, y = data()
    try:
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    except Stopped:
        return None
    return [w.tolist() for w in model.get_weights()], losses.losses


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else None


if BACKEND == "torch-kill":  # one phase per launch, in the folder OUT/FOLDER: killed, or resumed
    folder, phase = OUT / sys.argv[3], sys.argv[4]
    cluster = dist.initialize(backend="torch")
    replicas = cluster.num_processes
    if phase == "killed":
        run(replicas, folder, stop=STOP, kill=True)
    else:
        found = {"backup": listing(folder)}
        if replicas == 1:
            found["single"] = run(1)
        found["resumed"] = run(replicas, folder, seed=99)
        found["left"] = listing(folder)
        if cluster.process_id == 0:
            (folder.with_suffix(".json")).write_text(json.dumps(found))
    sys.exit(0)

cluster = dist.initialize(backend=BACKEND) if BACKEND == "torch" else dist.cluster()
chief = cluster.process_id == 0


def barrier():
    if BACKEND == "torch":
        import torch.distributed

        torch.distributed.barrier()


report = {"processes": cluster.num_processes}
if chief:
    report["single"] = run(1)
barrier()
report["two"] = run(2)
run(2, OUT / "two-to-one", stop=STOP)
report["two-to-one backup"] = listing(OUT / "two-to-one")
barrier()
if chief:
    report["two-to-one"] = run(1, OUT / "two-to-one", seed=99)
    run(1, OUT / "one-to-two", stop=STOP)
    report["one-to-two backup"] = listing(OUT / "one-to-two")
barrier()
report["one-to-two"] = run(2, OUT / "one-to-two", seed=99)
report["left"] = {name: listing(OUT / name) for name in ("two-to-one", "one-to-two")}
if chief:
    (OUT / "report.json").write_text(json.dumps(report))
