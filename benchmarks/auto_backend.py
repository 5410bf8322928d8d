"""What ``backend="auto"`` (with ``steps_per_execution="auto"``) picks per workload, and how fast
it trains against the best of the yardsticks: a plain PyTorch loop, a plain JAX + optax loop and
Keras 3 ``fit`` on jax, torch and tensorflow -- measured in one run.

    python benchmarks/auto_backend.py                                  # mnist-mlp, cifar-cnn, imdb-lstm
    python benchmarks/auto_backend.py --workloads mnist-mlp --rounds 5 --no-keras

The workloads, data and yardsticks are ``jax_backend.py``'s (synthetic float32 data of the real
shapes, ``--steps`` full batches per epoch; the plain loops are the conformance suite's L3 yardsticks,
:mod:`polykeras_conformance.native`, built from the same model and initial weights; each Keras 3
side runs in a worker process of its own, as Keras fixes its backend at import).

Per workload:

* **auto**: ``compile(backend="auto", steps_per_execution="auto")`` and ``fit``, the user's path.
  Its first fit (one epoch) runs the backend probe -- fresh, in a cache folder of this run -- and
  the steps-per-execution tuning; its wall time is the column "first fit". The probe's table (each
  candidate's ms/step) is printed, and its choice is the column "picked".
* then ``--rounds`` rounds of one epoch of every side, in rotated order (load from other processes
  falls on all alike), each epoch timed from its start to its end; the table gives the median
  ms/step and ``best yardstick / auto`` (above 1: auto faster).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax_backend  # noqa: E402
from jax_backend import WORKLOADS, FitRunner, KerasWorker, PlainJax, data, optimizer  # noqa: E402

KERAS_BACKENDS = ("jax", "torch", "tensorflow")


class KerasOn(KerasWorker):
    """Keras 3 ``fit`` on ``backend`` in a worker process (jax_backend.py's protocol)."""

    def __init__(self, backend: str):
        env = {**os.environ, "KERAS_BACKEND": backend}
        self.process = subprocess.Popen([sys.executable, jax_backend.__file__, "--keras-worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


class PlainTorch:
    """The conformance suite's native torch loop on the same model and weights."""

    def __init__(self, name: str, steps: int, model):
        import polykeras
        from polykeras_conformance.native import torch_loop

        self.batch = WORKLOADS[name][0]
        self.x, self.y = data(name, steps)
        workload = SimpleNamespace(loss=WORKLOADS[name][2], optimizer=lambda: optimizer(polykeras, name))
        self.loop = torch_loop.Loop(model, workload, "cpu")

    def run(self, epochs: int) -> list[float]:
        return self.loop.fit_epochs(self.x, self.y, self.batch, epochs)


def benchmark(name: str, args, keras_workers: dict, cache: str) -> dict:
    import polykeras

    polykeras.utils.set_random_seed(0)
    auto = FitRunner(polykeras, name, args.steps, backend="auto", steps_per_execution="auto")
    sides = {"auto": auto, "plain torch": PlainTorch(name, args.steps, auto.model),
             "plain jax": PlainJax(name, args.steps, auto.model)}
    sides.update({f"keras-{b}": w.runner(name, args.steps) for b, w in keras_workers.items()})
    before = set(glob.glob(os.path.join(cache, "*", "*.json")))
    start = time.perf_counter()
    auto.run(1)  # the probe, the compilation and the steps-per-execution tuning
    first = time.perf_counter() - start
    (record_path,) = set(glob.glob(os.path.join(cache, "*", "*.json"))) - before
    record = json.loads(open(record_path).read())
    for label, side in sides.items():
        if label != "auto":
            side.run(1)  # compile
    times: dict[str, list[float]] = {label: [] for label in sides}
    order = list(sides)
    for r in range(args.rounds):
        for label in order[r % len(order):] + order[:r % len(order)]:
            times[label] += sides[label].run(1)
    ms = {label: 1e3 * statistics.median(t) / args.steps for label, t in times.items()}
    spe = (auto.model._auto_steps_per_execution or {}).get("chosen") or 1
    return {"ms": ms, "picked": record["name"], "spe": spe, "first": first, "probe": record}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="mnist-mlp,cifar-cnn,imdb-lstm")
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-keras", action="store_true", help="no Keras 3 yardsticks")
    args = parser.parse_args(argv)
    cache = tempfile.mkdtemp(prefix="polykeras-auto-bench-")
    os.environ["POLYKERAS_CACHE_DIR"] = cache  # a fresh probe, measured in this run
    import jax
    import torch

    print(f"{os.cpu_count()} CPUs; torch {torch.__version__}, jax {jax.__version__}; auto candidates: "
          f"{os.environ.get('POLYKERAS_AUTO_CANDIDATES') or 'the default'}; {args.steps} steps/epoch, "
          f"{args.rounds} rounds, median ms/step", flush=True)
    keras_workers = {} if args.no_keras else {b: KerasOn(b) for b in KERAS_BACKENDS}
    rows = []
    try:
        for name in args.workloads.split(","):
            result = benchmark(name, args, keras_workers, cache)
            rows.append((name, result))
            probe = ", ".join(f"{c['name']} {c['ms_per_step']:.2f}" if c["ms_per_step"] else f"{c['name']} {c['status']}"
                              for c in result["probe"]["candidates"])
            print(f"{name}: picked {result['picked']} (probe of {result['probe']['seconds']:.1f} s, ms/step: {probe}); "
                  f"spe {result['spe']}; first fit {result['first']:.1f} s;",
                  json.dumps({k: round(v, 3) for k, v in result["ms"].items()}), flush=True)
    finally:
        for worker in keras_workers.values():
            worker.close()
    yardsticks = ["plain torch", "plain jax"] + [f"keras-{b}" for b in keras_workers]
    print("\n| workload (batch) | auto picked | spe | auto ms/step | " + " | ".join(yardsticks)
          + " | best yardstick | best / auto |")
    print("|---|---|---|---|" + "---|" * len(yardsticks) + "---|---|")
    for name, r in rows:
        ms = r["ms"]
        best = min(yardsticks, key=lambda y: ms[y])
        print(f"| {name} ({WORKLOADS[name][0]}) | {r['picked']} | {r['spe']} | {ms['auto']:.2f} | "
              + " | ".join(f"{ms[y]:.2f}" for y in yardsticks)
              + f" | {best} | {ms[best] / ms['auto']:.2f}x |")


if __name__ == "__main__":
    main()
