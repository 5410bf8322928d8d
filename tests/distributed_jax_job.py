"""Run by test_distribution_jax.py in a subprocess, with XLA_FLAGS giving JAX two CPU devices
(the flag must be set before JAX is imported, so never in the pytest process itself).

Trains the mnist-mlp workload (784-512-512-10, dropout in parity mode, Adam, float64) on the
first ``STEPS * BATCH`` MNIST images: once on one device, once data-parallel on two (one step
per call), once data-parallel with steps_per_execution=5; prints a JSON report on stdout."""

import json
import os
import sys
import time

STEPS, BATCH = int(sys.argv[1]), int(sys.argv[2])

import numpy as np  # noqa: E402  (JAX is imported below, after the caller's XLA_FLAGS)

import polykeras  # noqa: E402
from polykeras import distribution as dist  # noqa: E402
from polykeras.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D  # noqa: E402
from polykeras.workloads import get as get_workload  # noqa: E402


def train(distribution, steps_per_execution=1):
    workload = get_workload("mnist-mlp")
    (x, y), (xt, yt) = workload.load()
    x, y, xt, yt = x[:STEPS * BATCH], y[:STEPS * BATCH], xt[:4 * BATCH], yt[:4 * BATCH]
    polykeras.utils.set_random_seed(7)
    model = workload.build()
    workload.compile(model, backend="jax", device="cpu", dtype="float64", parity=True,
                     steps_per_execution=steps_per_execution, distribution=distribution)
    initial = model.get_weights()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
    seconds = time.perf_counter() - start
    logs = model.evaluate(xt, yt, batch_size=BATCH, verbose=0, return_dict=True)
    out = model.predict(xt, batch_size=BATCH, verbose=0)
    program = model._program
    report = {"seconds": seconds, "loss": history.history["loss"], "eval": logs, "replicas": program.num_replicas,
              "iterations": program.iterations, "moved": relative(model.get_weights(), initial),
              "weight_devices": len(program._state.trainable[0].sharding.device_set)}
    if distribution is not None:  # the compiled step really communicates
        with program.precision.scope():
            xb, yb = program._place(program._x(x[:BATCH])), program._place(y[:BATCH])
            noise = program._noise(0, program._x(x[:BATCH]))
            hlo = program._train.lower(program._state, program._lr, xb, yb, noise, None).compile().as_text()
        report["all_reduce"] = "all-reduce" in hlo
    return model.get_weights(), out, report


def small(distribution, parity, batch_norm):
    """A small MLP, with BatchNormalization or not, dropout from the core's masks (parity) or
    from JAX's keys: 8 steps of 16 rows, float64."""
    polykeras.utils.set_random_seed(1)
    model = polykeras.models.Sequential(
        [polykeras.Input((8,)), Dense(16, activation="relu")] + ([BatchNormalization()] if batch_norm else [])
        + [Dropout(0.3), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="jax", device="cpu",
                  dtype="float64", parity=parity, distribution=distribution)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 8)), rng.integers(0, 3, 64), batch_size=16, epochs=2, verbose=0)
    return model.get_weights()


def cnn(distribution):
    """Conv2D-MaxPooling2D-Dropout-Dense (the CIFAR CNN's kinds, small), RMSprop, parity masks:
    16 steps of 32 rows of 12x12x3, float64."""
    polykeras.utils.set_random_seed(2)
    model = polykeras.models.Sequential([
        polykeras.Input((12, 12, 3)), Conv2D(8, (3, 3), activation="relu"), MaxPooling2D(), Dropout(0.25),
        Flatten(), Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", backend="jax", device="cpu",
                  dtype="float64", parity=True, distribution=distribution)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(size=(256, 12, 12, 3)), rng.integers(0, 10, 256), batch_size=32, epochs=2, verbose=0)
    return model.get_weights()


def relative(a, b):
    return max(float(np.max(np.abs(u - v)) / max(np.max(np.abs(u)), 1e-300)) for u, v in zip(a, b))


one_w, one_out, one = train(None)
two_w, two_out, two = train(dist.DataParallel(num_replicas=2))
many_w, _, many = train(dist.DataParallel(), steps_per_execution=5)
variants = {f"parity{int(p)}-bn{int(bn)}": relative(small(None, p, bn), small(dist.DataParallel(), p, bn))
            for p in (True, False) for bn in (False, True)}
variants["cnn"] = relative(cnn(None), cnn(dist.DataParallel()))
print(json.dumps({
    "variants": variants,
    "devices": dist.list_devices(backend="jax"), "xla_flags": os.environ.get("XLA_FLAGS"),
    "one": one, "two": two, "many": many,
    "weights_two": relative(one_w, two_w), "weights_many": relative(one_w, many_w),
    "predict_two": float(np.max(np.abs(one_out - two_out))),
}))
