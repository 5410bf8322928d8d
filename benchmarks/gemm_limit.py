"""How close polykeras trains the MNIST MLP to this machine's physical limit: its matrix products.

    python benchmarks/gemm_limit.py                    # torch and jax, spe 1 and "auto", 3 rounds
    python benchmarks/gemm_limit.py --rounds 5 --steps 64

A training step of ``jax_backend.py``'s ``mnist-mlp`` (784-512-512-10, batch 128) is three matrix
products per Dense layer -- forward ``x @ W``, the input's gradient ``dy @ W.T`` (not needed for
the first layer's input, counted anyway, as the 0.51 GFLOP figure of the issue does) and the
kernel's gradient ``x.T @ dy`` -- so ``3 * 2 * 128 * (784*512 + 512*512 + 512*10)`` = 0.514 GFLOP.
Everything else (bias, relu, dropout, softmax, Adam over 0.67 M weights) is memory-bound and
small beside it. The limit is that work at the best float32 GEMM rate measured here: the highest
of torch, NumPy and JAX products, each timed on the step's own shapes (the three products of
every layer, as one step runs them) and on a 2048 x 2048 square, best of several repeats.

The rounds interleave the GEMM timings with one epoch of every polykeras side (``fit``,
``verbose=0``, timed per epoch by a callback), so that load from other processes falls on both.
Reported per side: median ms/step, the limit in ms/step from the same round's GEMM rate, and
``ms/step / limit`` (1.0 would be every cycle spent in peak-rate matrix products).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jax_backend import WORKLOADS, FitRunner  # noqa: E402

NAME = "mnist-mlp"
BATCH = WORKLOADS[NAME][0]
LAYERS = [(784, 512), (512, 512), (512, 10)]
STEP_FLOP = 3 * 2 * BATCH * sum(i * o for i, o in LAYERS)


def _step_products(lib) -> list:
    """The step's matrix products as ``(a, b)`` pairs of ``lib``'s float32 arrays."""
    rng = np.random.default_rng(0)
    pairs = []
    for i, o in LAYERS:
        x, w, dy = (rng.standard_normal(s, dtype=np.float32) for s in ((BATCH, i), (i, o), (BATCH, o)))
        pairs += [(x, w), (dy, w.T.copy()), (x.T.copy(), dy)]
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    return [tuple(lib(a) for a in pair) for pair in pairs], (lib(square), lib(square))


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_rates(repeats: int = 20) -> dict[str, float]:
    """GFLOP/s per library and shape set: ``"<lib> step"`` (the step's nine products, one after
    another) and ``"<lib> 2048^2"``."""
    import jax
    import jax.numpy as jnp
    import torch

    mm = jax.jit(jnp.matmul)
    libs = {"torch": (torch.from_numpy, torch.mm, lambda r: r),
            "numpy": (np.asarray, np.matmul, lambda r: r),
            "jax": (jnp.asarray, mm, lambda r: r.block_until_ready())}
    rates = {}
    for lib, (convert, matmul, sync) in libs.items():
        step, square = _step_products(convert)
        flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in step)
        rates[f"{lib} step"] = flop / _best_seconds(lambda: [sync(matmul(a, b)) for a, b in step], repeats) / 1e9
        rates[f"{lib} 2048^2"] = 2 * 2048 ** 3 / _best_seconds(lambda: sync(matmul(*square)), max(3, repeats // 5)) / 1e9
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=64, help="batches per timed epoch")
    args = parser.parse_args()

    import polykeras

    import jax
    import torch

    sides = {}
    for backend in ("jax", "torch"):
        for spe in (1, "auto"):
            polykeras.utils.set_random_seed(0)
            runner = FitRunner(polykeras, NAME, args.steps, backend=backend, steps_per_execution=spe)
            runner.run(2)  # compilation, the tuning of "auto", first-use costs
            sides[f"polykeras-{backend}, steps_per_execution={spe!r}"] = runner
    print(f"torch {torch.__version__} (threads {torch.get_num_threads()}), jax {jax.__version__}, numpy "
          f"{np.__version__}, cpus {os.cpu_count()}; {NAME} step = {STEP_FLOP / 1e9:.3f} GFLOP; "
          f"{args.rounds} rounds of {args.steps} steps per side")
    times = {name: [] for name in sides}
    best_rates = []
    for r in range(args.rounds):
        rates = gemm_rates()
        best_rates.append(max(rates.values()))
        print(f"round {r + 1}: GEMM GFLOP/s " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
        for name, runner in sides.items():
            seconds = runner.run(1)[0]
            times[name].append(seconds / args.steps * 1000)
    rate = max(best_rates)
    limit_ms = STEP_FLOP / (rate * 1e9) * 1000
    print(f"\nbest GEMM rate measured: {rate:.1f} GFLOP/s -> the step's products alone take {limit_ms:.3f} ms\n")
    print("| side | ms/step (median) | min-max | limit ms/step | ms/step / limit |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {min(values):.3f}-{max(values):.3f} | {limit_ms:.3f} | "
              f"{median / limit_ms:.2f}x |")


if __name__ == "__main__":
    main()
