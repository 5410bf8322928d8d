"""ms per training step: polykeras on jax against a plain JAX + optax loop and
Keras 3 on jax, on four workloads, measured in one run.

    python benchmarks/jax_backend.py                      # all workloads
    python benchmarks/jax_backend.py --workloads seed-mlp --rounds 5

Contenders, each training the same model on the same synthetic float32 data
(``--steps`` full batches per epoch, reshuffled every epoch):

* ``plain``: an idiomatic jitted JAX step (``value_and_grad`` + ``optax``,
  logits into optax's cross-entropies, dropout from ``jax.random``, buffers
  donated), driven by a Python loop over NumPy batches; the epoch's losses are
  fetched once at its end. It is the conformance suite's L3 yardstick
  (:mod:`polykeras_conformance.native.jax_loop`), built from the same model.
* ``polykeras``: ``model.fit`` with ``POLYKERAS_BACKEND=jax`` semantics
  (``compile(backend="jax")``), default ``steps_per_execution=1``.
* ``polykeras spe=N``: the same with ``compile(steps_per_execution=N)``:
  N batches per jitted ``lax.scan``.
* ``keras``: Keras 3 ``fit`` with ``KERAS_BACKEND=jax``, in a worker
  subprocess (Keras fixes its backend at import), fed the same data.

Each contender first trains one epoch to compile; then ``--rounds`` rounds
run ``--epochs`` epochs of every contender in turn (interleaved, so that load
from other processes falls on all of them alike), each epoch timed from its
start to its end (including the shuffle and the end-of-epoch host sync of the
logs). The table gives the median ms/step and the speed ratios
``plain / polykeras`` (target >= 0.9) and ``keras / polykeras`` (target > 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from polykeras_conformance.measure import epoch_timer

#: name -> (batch size, optimizer, loss, input shape, integer vocabulary or None, classes)
WORKLOADS = {
    "mnist-mlp": (128, "adam", "sparse_categorical_crossentropy", (784,), None, 10),
    "cifar-cnn": (64, "rmsprop", "sparse_categorical_crossentropy", (32, 32, 3), None, 10),
    "imdb-lstm": (32, "adam", "binary_crossentropy", (80,), 20000, 1),
    "seed-mlp": (32, "adam", "categorical_crossentropy", (100,), None, 10),
}


def build(k, name: str):
    """The workload's model, written once for any Keras-compatible module ``k``."""
    L = k.layers
    if name == "mnist-mlp":
        return k.Sequential([L.Input(shape=(784,)), L.Dense(512, activation="relu"), L.Dropout(0.2),
                             L.Dense(512, activation="relu"), L.Dropout(0.2), L.Dense(10, activation="softmax")])
    if name == "cifar-cnn":
        return k.Sequential([L.Input(shape=(32, 32, 3)), L.Conv2D(32, (3, 3), activation="relu"),
                             L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D(pool_size=(2, 2)),
                             L.Dropout(0.25), L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5),
                             L.Dense(10, activation="softmax")])
    if name == "imdb-lstm":
        return k.Sequential([L.Input(shape=(80,), dtype="int32"), L.Embedding(20000, 128), L.LSTM(128),
                             L.Dense(1, activation="sigmoid")])
    return k.Sequential([L.Input(shape=(100,)), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])


def data(name: str, steps: int):
    batch, _, loss, shape, vocab, classes = WORKLOADS[name]
    rng = np.random.default_rng(0)
    n = batch * steps
    x = rng.integers(1, vocab, (n,) + shape).astype(np.int32) if vocab else rng.random((n,) + shape, np.float32)
    labels = rng.integers(0, max(classes, 2), n)
    if loss == "binary_crossentropy":
        return x, labels.astype(np.float32)[:, None]
    if loss == "categorical_crossentropy":
        return x, np.eye(classes, dtype=np.float32)[labels]
    return x, labels.astype(np.int32)


def optimizer(k, name: str):
    return k.optimizers.Adam() if WORKLOADS[name][1] == "adam" else k.optimizers.RMSprop()


class FitRunner:
    """A compiled Keras-style model (polykeras or Keras) that ``fit`` runs again and again."""

    def __init__(self, k, name: str, steps: int, **compile_args):
        self.k, self.name = k, name
        self.x, self.y = data(name, steps)
        self.model = build(k, name)
        self.model.compile(optimizer=optimizer(k, name), loss=WORKLOADS[name][2], metrics=["accuracy"],
                           **compile_args)

    def run(self, epochs: int) -> list[float]:
        timer = epoch_timer(self.k.callbacks.Callback)
        self.model.fit(self.x, self.y, batch_size=WORKLOADS[self.name][0], epochs=epochs, verbose=0,
                       callbacks=[timer])
        return timer.seconds


# -- the plain JAX + optax loop ---------------------------------------------------------
class PlainJax:
    """What a JAX user writes by hand: the conformance suite's native JAX loop
    (:mod:`polykeras_conformance.native.jax_loop`) on the same model and weights."""

    def __init__(self, name: str, steps: int, model):
        from types import SimpleNamespace

        import polykeras
        from polykeras_conformance.native import jax_loop

        self.batch = WORKLOADS[name][0]
        self.x, self.y = data(name, steps)
        workload = SimpleNamespace(loss=WORKLOADS[name][2], optimizer=lambda: optimizer(polykeras, name))
        self.loop = jax_loop.Loop(model, workload, "cpu")

    def run(self, epochs: int) -> list[float]:
        return self.loop.fit_epochs(self.x, self.y, self.batch, epochs)


# -- Keras 3 in a worker process ----------------------------------------------------------
class KerasWorker:
    """Keras 3 on jax in a subprocess, driven over a pipe (one JSON line per request)."""

    def __init__(self):
        env = {**os.environ, "KERAS_BACKEND": "jax"}
        self.process = subprocess.Popen([sys.executable, __file__, "--keras-worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)

    def runner(self, name: str, steps: int):
        worker = self

        class Remote:
            def run(self, epochs: int) -> list[float]:
                worker.process.stdin.write(json.dumps({"workload": name, "steps": steps, "epochs": epochs}) + "\n")
                worker.process.stdin.flush()
                return json.loads(worker.process.stdout.readline())["times"]

        return Remote()

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def keras_worker_main() -> None:
    import keras

    runners: dict[str, FitRunner] = {}
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # keep the pipe for answers only
    for line in sys.stdin:
        request = json.loads(line)
        name = request["workload"]
        if name not in runners:
            runners[name] = FitRunner(keras, name, request["steps"])
        times = runners[name].run(request["epochs"])
        real_stdout.write(json.dumps({"times": times}) + "\n")
        real_stdout.flush()


# -- the run -----------------------------------------------------------------------------------
def benchmark(name: str, args, keras_worker: KerasWorker | None) -> dict[str, float]:
    import polykeras

    polykeras.utils.set_random_seed(0)
    runners = {"plain": None, "polykeras": FitRunner(polykeras, name, args.steps, backend="jax"),
               f"polykeras spe={args.spe}": FitRunner(polykeras, name, args.steps, backend="jax",
                                                      steps_per_execution=args.spe)}
    runners["plain"] = PlainJax(name, args.steps, runners["polykeras"].model)
    if keras_worker is not None:
        runners["keras"] = keras_worker.runner(name, args.steps)
    times: dict[str, list[float]] = {label: [] for label in runners}
    for runner in runners.values():
        runner.run(1)  # compile
    for _ in range(args.rounds):
        for label, runner in runners.items():
            times[label] += runner.run(args.epochs)
    return {label: 1e3 * statistics.median(t) / args.steps for label, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spe", type=int, default=10, help="steps_per_execution of the second polykeras row")
    parser.add_argument("--no-keras", action="store_true", help="skip Keras 3 (e.g. when it is not installed)")
    parser.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keras_worker:
        return keras_worker_main()
    import jax

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; {args.steps} steps/epoch, "
          f"{args.rounds} rounds x {args.epochs} epochs per contender, median ms/step", flush=True)
    keras_worker = None if args.no_keras else KerasWorker()
    rows = []
    try:
        for name in args.workloads.split(","):
            result = benchmark(name, args, keras_worker)
            rows.append((name, result))
            print(name, json.dumps({k: round(v, 3) for k, v in result.items()}), flush=True)
    finally:
        if keras_worker is not None:
            keras_worker.close()
    spe = f"polykeras spe={args.spe}"
    print(f"\n| workload (batch, optimizer) | plain JAX+optax | Keras 3 on jax | polykeras-jax | {spe} "
          f"| plain/polykeras | keras/polykeras | plain/{spe} |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        keras_ms = r.get("keras", float("nan"))
        print(f"| {name} ({WORKLOADS[name][0]}, {WORKLOADS[name][1]}) | {r['plain']:.3f} | {keras_ms:.3f} | "
              f"{r['polykeras']:.3f} | {r[spe]:.3f} | {r['plain'] / r['polykeras']:.2f}x | "
              f"{keras_ms / r['polykeras']:.2f}x | {r['plain'] / r[spe]:.2f}x |")


if __name__ == "__main__":
    main()
