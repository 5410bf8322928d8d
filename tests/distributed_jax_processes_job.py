"""Run by test_distribution_jax.py as two processes with JAX's coordinator environment
(JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), one CPU device each: a small MLP
with dropout (parity masks, float64, Adam) trained data-parallel over both processes' devices,
evaluated and used to predict; process 0 also trains it on its own device alone. Each process
writes ``OUT/process<i>.json``."""

import json
import sys
from pathlib import Path

import numpy as np

import polykeras
from polykeras import distribution as dist
from polykeras.layers import Dense, Dropout

OUT = Path(sys.argv[1])
cluster = dist.initialize(backend="jax")  # before anything starts JAX


def train(distribution):
    polykeras.utils.set_random_seed(5)
    model = polykeras.models.Sequential([polykeras.Input((8,)), Dense(16, activation="relu"), Dropout(0.2),
                                         Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend="jax",
                  device="cpu", dtype="float64", parity=True, distribution=distribution)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(320, 8)), rng.integers(0, 3, 320)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    logs = model.evaluate(x[:64], y[:64], batch_size=32, verbose=0, return_dict=True)
    return model, history.history, logs, model.predict(x[:64], batch_size=32, verbose=0)


def relative(a, b):
    return max(float(np.max(np.abs(u - v)) / max(np.max(np.abs(u)), 1e-300)) for u, v in zip(a, b))


import jax  # noqa: E402  (after initialize)

model, history, logs, out = train(dist.DataParallel())
report = {"process": cluster.process_id, "processes": jax.process_count(), "devices": dist.list_devices(backend="jax"),
          "replicas": model._program.num_replicas, "history": history, "eval": logs,
          "weights": [w.tolist() for w in model.get_weights()], "predict_shape": list(out.shape)}
if cluster.process_id == 0:
    single, single_history, single_logs, single_out = train(None)
    report.update(single_history=single_history, single_eval=single_logs,
                  weights_vs_single=relative(single.get_weights(), model.get_weights()),
                  predict_vs_single=float(np.max(np.abs(single_out - out))))
(OUT / f"process{cluster.process_id}.json").write_text(json.dumps(report))
