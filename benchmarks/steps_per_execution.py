"""``compile(steps_per_execution="auto")`` against the default 1, on the torch and jax backends,
measured in one run.

    python benchmarks/steps_per_execution.py                         # torch, jax x four workloads
    python benchmarks/steps_per_execution.py --backends jax --workloads seed-mlp --rounds 5

The workloads and data are ``jax_backend.py``'s (synthetic float32 data of the real shapes,
``--steps`` full batches per epoch). Per backend and workload, two models with the same initial
weights are compiled, one with ``steps_per_execution=1``, one with ``"auto"``, and trained by
the user's path, ``model.fit(..., verbose=0)``:

* **first fit**: ``fit(epochs=--first-epochs)`` (default 2) on the fresh model, wall time:
  compilation, and for ``auto`` the timed probe (single steps and chunks of 8) and the
  compilation of its chunk lengths -- what a short run pays for the tuning (``auto`` times chunks
  only when the fit is long enough to repay compiling them; one throwaway fit first takes the
  framework's first-use costs);
* **steady state**: then ``--rounds`` rounds of one ``fit(epochs=1)`` per side, in alternating
  order (1, auto, auto, 1, ...), each epoch timed from its start to its end; ``auto`` keeps the
  choice its first fit made (the same program and batch size). The table gives the median
  ms/step, its min-max over the rounds, and ``1 / auto`` (above 1: auto faster).

The column ``N`` is what ``auto`` chose (1 also where the fits were too short to time chunks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_backend import WORKLOADS, FitRunner  # noqa: E402


def bench(backend: str, name: str, args) -> dict:
    import polykeras

    FitRunner(polykeras, name, args.steps, backend=backend).run(1)  # the framework's first-use costs, once
    sides = {}
    for spe in (1, "auto"):
        polykeras.utils.set_random_seed(0)  # the same initial weights, data and data order
        sides[spe] = FitRunner(polykeras, name, args.steps, backend=backend, steps_per_execution=spe)
    first = {}
    for spe in (1, "auto"):
        start = time.perf_counter()
        sides[spe].run(args.first_epochs)
        first[spe] = time.perf_counter() - start
    times: dict = {1: [], "auto": []}
    for r in range(args.rounds):
        for spe in ((1, "auto") if r % 2 == 0 else ("auto", 1)):
            times[spe] += sides[spe].run(1)
    ms = {spe: [1e3 * t / args.steps for t in v] for spe, v in times.items()}
    chosen = sides["auto"].model._auto_steps_per_execution
    return {"first": first, "ms": ms, "chosen": (chosen or {}).get("chosen") or 1}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument("--workloads", default="seed-mlp,mnist-mlp,imdb-lstm,cifar-cnn")
    parser.add_argument("--steps", type=int, default=64, help="batches per epoch")
    parser.add_argument("--rounds", type=int, default=4, help="steady-state epochs per side")
    parser.add_argument("--first-epochs", type=int, default=2, help="epochs of the first fit")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; {args.steps} steps/epoch, first fit {args.first_epochs} epochs, then "
          f"{args.rounds} epochs per side alternating", flush=True)
    rows = []
    for backend in args.backends.split(","):
        for name in args.workloads.split(","):
            r = bench(backend, name, args)
            rows.append((backend, name, r))
            print(backend, name, {k: [round(x, 3) for x in v] for k, v in r["ms"].items()},
                  {k: round(v, 2) for k, v in r["first"].items()}, "N =", r["chosen"], flush=True)
    print("\n| backend | workload (batch) | N | spe=1 ms/step (min-max) | auto ms/step (min-max) | 1 / auto "
          "| first fit s, spe=1 | first fit s, auto |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, name, r in rows:
        one, auto = r["ms"][1], r["ms"]["auto"]
        m1, ma = statistics.median(one), statistics.median(auto)
        print(f"| {backend} | {name} ({WORKLOADS[name][0]}) | {r['chosen']} | {m1:.3f} ({min(one):.3f}-{max(one):.3f}) "
              f"| {ma:.3f} ({min(auto):.3f}-{max(auto):.3f}) | {m1 / ma:.2f}x | {r['first'][1]:.2f} "
              f"| {r['first']['auto']:.2f} |")


if __name__ == "__main__":
    main()
