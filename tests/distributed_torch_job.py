"""Run by test_distribution_torch.py as ``torchrun --nproc-per-node 2 distributed_torch_job.py OUT``.

Each process: joins the group (polykeras.distribution.initialize), trains a small MLP with
dropout (float64, Adam, accuracy) data-parallel -- once with the core's parity masks, once with
torch's own generator -- with the progress bar on, then tries to save its weights. Rank 0 also
trains the same model on one device (no distribution) and compares. Each rank writes its own
report ``OUT/rank<r>.json`` with plain Python I/O (not through polykeras)."""

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

import polykeras
import polykeras_torch.distributed
from polykeras import distribution as dist
from polykeras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

ROWS = []  # (rows of the global batch, rows this replica took), as Replicas.rows saw them
_rows = polykeras_torch.distributed.Replicas.rows


def _counting_rows(self, batch, stacked=False):
    part = _rows(self, batch, stacked)
    if batch is not None and not isinstance(batch, tuple):
        axis = 1 if stacked else 0
        ROWS.append((batch.shape[axis], part.shape[axis]))
    return part


polykeras_torch.distributed.Replicas.rows = _counting_rows

OUT = Path(sys.argv[1])
STEPS, BATCH = 50, 16


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 20))
    y = (x[:, :3].sum(axis=1) > 0).astype(int) + (x[:, 3] > 1).astype(int)
    return x, y


def train(distribution, parity, verbose=0, steps_per_execution=1):
    x, y = data()
    polykeras.utils.set_random_seed(3)
    model = polykeras.models.Sequential([polykeras.Input((20,)), Dense(32, activation="relu"), Dropout(0.2),
                                         Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend="torch",
                  device="cpu", dtype="float64", parity=parity, distribution=distribution,
                  steps_per_execution=steps_per_execution)
    initial = model.get_weights()
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        # a CSVLogger in every rank, each naming its own file: only rank 0's may appear
        name = f"csv-by-rank{dist.cluster().process_id}-parity{int(parity)}.csv"
        logger = polykeras.callbacks.CSVLogger(str(OUT / name))
        history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=verbose, validation_data=(x[:64], y[:64]),
                            callbacks=[logger] if distribution is not None else [])
    seconds = time.perf_counter() - start
    logs = model.evaluate(x[:96], y[:96], batch_size=32, verbose=0, return_dict=True)
    return model, {"history": history.history, "eval": logs, "seconds": seconds, "printed": printed.getvalue(),
                   "replicas": model._program.num_replicas, "iterations": model._program.iterations,
                   "moved": relative(model.get_weights(), initial)}


def cnn(distribution):
    """Conv2D-MaxPooling2D-Dropout-Dense (the CIFAR CNN's kinds, small), RMSprop, parity masks,
    steps_per_execution=4: 16 steps of 32 rows of 12x12x3, float64."""
    polykeras.utils.set_random_seed(2)
    model = polykeras.models.Sequential([
        polykeras.Input((12, 12, 3)), Conv2D(8, (3, 3), activation="relu"), MaxPooling2D(), Dropout(0.25),
        Flatten(), Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", backend="torch", device="cpu",
                  dtype="float64", parity=True, distribution=distribution, steps_per_execution=4)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(size=(256, 12, 12, 3)), rng.integers(0, 10, 256), batch_size=32, epochs=2, verbose=0)
    return model.get_weights()


def weighted(distribution):
    """Sample weights, a weighted metric (its statistics summed, then all-reduced) and AUC."""
    x, y = data()
    polykeras.utils.set_random_seed(4)
    model = polykeras.models.Sequential([polykeras.Input((20,)), Dense(16, activation="relu"),
                                         Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"],
                  backend="torch", device="cpu", dtype="float64", distribution=distribution)
    w = np.random.default_rng(1).uniform(size=len(x))
    history = model.fit(x, y, sample_weight=w, batch_size=BATCH, epochs=1, verbose=0)
    return model.get_weights(), history.history


def relative(a, b):
    return max(float(np.max(np.abs(u - v)) / max(np.max(np.abs(u)), 1e-300)) for u, v in zip(a, b))


cluster = dist.initialize(backend="torch")
rank = cluster.process_id
report = {"cluster": [cluster.process_id, cluster.num_processes, cluster.launcher],
          "devices": dist.list_devices(backend="torch")}
singles = {}
for parity in (True, False):
    model, run = train(dist.DataParallel(), parity, verbose=1)
    model.save_weights(OUT / f"saved-by-rank{rank}-parity{int(parity)}.weights.npz")  # only rank 0's lands
    np.savez(OUT / f"weights{rank}-parity{int(parity)}.npz", *model.get_weights())
    if rank == 0:
        single_model, single = train(None, parity)
        singles[parity] = single_model.get_weights()
        run["single"] = single
        run["weights_vs_single"] = relative(single_model.get_weights(), model.get_weights())
    report[f"parity{int(parity)}"] = run
stacked, _ = train(dist.DataParallel(), True, steps_per_execution=5)  # train_steps: 5 batches at a time
if rank == 0:
    report["steps_per_execution"] = relative(singles[True], stacked.get_weights())
report["rows"] = sorted(set(ROWS))
cnn_weights = cnn(dist.DataParallel())
weighted_weights, weighted_history = weighted(dist.DataParallel())
report["weighted_history"] = weighted_history
if rank == 0:
    single_weights, report["weighted_single_history"] = weighted(None)
    report["weighted"] = relative(single_weights, weighted_weights)
if rank == 0:
    report["cnn"] = relative(cnn(None), cnn_weights)
try:
    model.fit(*[a[:30] for a in data()], batch_size=15, verbose=0)
except ValueError as exc:
    report["uneven"] = str(exc)
try:
    model.evaluate(*[a[:30] for a in data()], batch_size=15, verbose=0)
except ValueError as exc:
    report["uneven_evaluate"] = str(exc)
(OUT / f"rank{rank}.json").write_text(json.dumps(report))
