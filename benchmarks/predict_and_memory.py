"""``predict`` throughput and peak resident memory during ``fit``: polykeras on torch and jax
against a plain native loop on the same model and weights, measured in one run.

    python benchmarks/predict_and_memory.py                          # both tables
    python benchmarks/predict_and_memory.py --only predict --backends jax --repeats 7

The workloads are ``jax_backend.py``'s ``mnist-mlp``, ``cifar-cnn`` and ``imdb-lstm`` (synthetic
float32 data of the real shapes; the LSTM without recurrent dropout, so torch runs its fused
kernel). The native side is the conformance suite's native loop
(:mod:`polykeras_conformance.native.torch_loop` / ``jax_loop``), built from the polykeras
model and its initial weights.

**predict** (samples/s, in this process): ``model.predict(x, batch_size=B, verbose=0)`` against
what a framework user writes for inference over the same NumPy array: torch -- the whole array
converted to a tensor once (NCHW for images), then ``net(x[lo:hi])`` per batch under
``torch.inference_mode()``, softmax/sigmoid, ``.numpy()``, one ``np.concatenate``; jax -- one
jitted function (forward and softmax/sigmoid) called per NumPy batch, all dispatched before the
results are read, one ``np.concatenate``. Batch 32 and 1024; the sides alternate (A B B A ...)
``--repeats`` times after one warm-up call each (compilation). Median samples/s, min-max, and
``polykeras / native`` (target >= 0.9).

**peak memory during fit** (in fresh processes): each measurement is a new Python process that
builds the model, makes the data, then trains ``--memory-epochs`` epochs of ``--steps`` batches;
it reports its peak resident set (``VmHWM``, which includes the framework's import) before
training and after. polykeras trains by ``fit(verbose=0)``; the native process builds the
native loop from a polykeras model (so it also imports polykeras and NumPy, a few MB) and runs
its training loop. The processes alternate (A B A B ...) ``--memory-repeats`` times each;
median peak MiB, min-max, ``polykeras / native`` (target <= 1.1x) and the growth during
training (peak after - peak before).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_backend import WORKLOADS, build, data, optimizer  # noqa: E402

NAMES = ("mnist-mlp", "cifar-cnn", "imdb-lstm")
#: samples predicted per call: enough batches of 32 and at least two of 1024
SAMPLES = {"mnist-mlp": 8192, "cifar-cnn": 2048, "imdb-lstm": 2048}


def _model(backend: str, name: str):
    import polykeras

    polykeras.utils.set_random_seed(0)
    model = build(polykeras, name)
    model.compile(optimizer=optimizer(polykeras, name), loss=WORKLOADS[name][2], metrics=["accuracy"],
                  backend=backend)
    return model


def _native_loop(backend: str, name: str, model):
    import polykeras

    workload = SimpleNamespace(loss=WORKLOADS[name][2], optimizer=lambda: optimizer(polykeras, name))
    if backend == "torch":
        from polykeras_conformance.native import torch_loop
        return torch_loop.Loop(model, workload, "cpu")
    from polykeras_conformance.native import jax_loop
    return jax_loop.Loop(model, workload, "cpu")


# -- predict ------------------------------------------------------------------------------------
def native_predictor(backend: str, loop):
    """``predict(x, batch) -> np.ndarray``: the plain inference loop a framework user writes."""
    if backend == "torch":
        import torch

        def predict(x, batch):
            loop.net.eval()
            xt = loop.tensors(x, np.zeros(len(x), np.float32))[0]  # once: NCHW for images, as torch users store them
            outs = []
            with torch.inference_mode():
                for lo in range(0, len(xt), batch):
                    out = loop.net(xt[lo:lo + batch])
                    if loop.logits:
                        out = torch.sigmoid(out) if loop.loss_name == "binary_crossentropy" else torch.softmax(out, -1)
                    outs.append(out.numpy())
            return np.concatenate(outs)
        return predict
    import jax

    def probabilities(params, x):
        out = loop.forward(params, x)
        if loop.logits:
            out = jax.nn.sigmoid(out) if loop.loss_name == "binary_crossentropy" else jax.nn.softmax(out)
        return out

    step = jax.jit(probabilities)

    def predict(x, batch):
        x = loop.arrays(x, np.zeros(len(x)))[0]
        outs = [step(loop.params, x[lo:lo + batch]) for lo in range(0, len(x), batch)]  # all dispatched first
        return np.concatenate([np.asarray(o) for o in outs])
    return predict


def bench_predict(backend: str, name: str, batch: int, repeats: int) -> dict[str, list[float]]:
    model = _model(backend, name)
    native = native_predictor(backend, _native_loop(backend, name, model))
    x, _ = data(name, SAMPLES[name] // WORKLOADS[name][0])
    sides = {"polykeras": lambda: model.predict(x, batch_size=batch, verbose=0), "native": lambda: native(x, batch)}
    a, b = sides["polykeras"](), sides["native"]()  # warm-up: compilation
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)  # the same model
    rates: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(repeats):
        for key in (("polykeras", "native") if r % 2 == 0 else ("native", "polykeras")):
            start = time.perf_counter()
            sides[key]()
            rates[key].append(len(x) / (time.perf_counter() - start))
    return rates


# -- peak memory ---------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident set: ``VmHWM`` of ``/proc/self/status`` on Linux, which starts
    afresh at ``exec``. (``getrusage``'s ``ru_maxrss`` keeps the forking parent's peak across
    ``exec``: every worker of this script read the parent's 652 MiB.)"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def memory_worker(side: str, backend: str, name: str, steps: int, epochs: int) -> None:
    """One measurement, in a fresh process: JSON ``{"before": MiB, "after": MiB}`` on stdout; the
    framework is imported first on both sides, so the growth is what training adds."""
    importlib.import_module(backend)
    model = _model(backend, name)
    x, y = data(name, steps)
    loop = _native_loop(backend, name, model) if side == "native" else None
    before = peak_rss_mib()
    if loop is None:
        model.fit(x, y, batch_size=WORKLOADS[name][0], epochs=epochs, verbose=0)
    else:
        loop.fit_epochs(x, y, WORKLOADS[name][0], epochs)
    after = peak_rss_mib()
    print(json.dumps({"before": before, "after": after,
                      "loaded": [m for m in ("torch", "jax", "keras", "tensorflow") if m in sys.modules]}))


def bench_memory(backend: str, name: str, args) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {"polykeras": [], "native": []}
    for r in range(args.memory_repeats):
        for side in (("polykeras", "native") if r % 2 == 0 else ("native", "polykeras")):
            out = subprocess.run([sys.executable, __file__, "--memory-worker", side, backend, name, str(args.steps),
                                  str(args.memory_epochs)], capture_output=True, text=True, check=True)
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def _spread(values, fmt="{:.0f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch,jax")
    parser.add_argument("--workloads", default=",".join(NAMES))
    parser.add_argument("--only", choices=["predict", "memory"])
    parser.add_argument("--repeats", type=int, default=5, help="predict calls per side and batch size")
    parser.add_argument("--steps", type=int, default=20, help="batches per epoch in the memory runs")
    parser.add_argument("--memory-epochs", type=int, default=2)
    parser.add_argument("--memory-repeats", type=int, default=2, help="fresh processes per side")
    parser.add_argument("--memory-worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        side, backend, name, steps, epochs = args.memory_worker
        return memory_worker(side, backend, name, int(steps), int(epochs))
    backends, names = args.backends.split(","), args.workloads.split(",")
    print(f"{os.cpu_count()} CPUs", flush=True)
    if args.only != "memory":
        rows = []
        for backend in backends:
            for name in names:
                for batch in (32, 1024):
                    rates = bench_predict(backend, name, batch, args.repeats)
                    rows.append((backend, name, batch, rates))
                    print(backend, name, batch, {k: [round(v) for v in vs] for k, vs in rates.items()}, flush=True)
        print(f"\npredict, samples/s: median (min-max) of {args.repeats} calls per side, alternating\n")
        print("| backend | workload | batch | polykeras | native loop | polykeras / native (>= 0.9) |")
        print("|---|---|---|---|---|---|")
        for backend, name, batch, r in rows:
            ratio = statistics.median(r["polykeras"]) / statistics.median(r["native"])
            print(f"| {backend} | {name} | {batch} | {_spread(r['polykeras'])} | {_spread(r['native'])} | "
                  f"{ratio:.2f}x |")
    if args.only != "predict":
        rows = []
        for backend in backends:
            for name in names:
                runs = bench_memory(backend, name, args)
                rows.append((backend, name, runs))
                print(backend, name, json.dumps(runs), flush=True)
        print(f"\npeak RSS during fit, MiB: median (min-max) of {args.memory_repeats} fresh processes per side, "
              f"{args.memory_epochs} epochs x {args.steps} steps\n")
        print("| backend | workload (batch) | polykeras peak | native peak | polykeras / native (<= 1.1) "
              "| growth in fit: polykeras | growth in fit: native |")
        print("|---|---|---|---|---|---|---|")
        for backend, name, runs in rows:
            peak = {k: [m["after"] for m in v] for k, v in runs.items()}
            growth = {k: [m["after"] - m["before"] for m in v] for k, v in runs.items()}
            ratio = statistics.median(peak["polykeras"]) / statistics.median(peak["native"])
            print(f"| {backend} | {name} ({WORKLOADS[name][0]}) | {_spread(peak['polykeras'])} | "
                  f"{_spread(peak['native'])} | {ratio:.2f}x | {_spread(growth['polykeras'])} | "
                  f"{_spread(growth['native'])} |")


if __name__ == "__main__":
    main()
