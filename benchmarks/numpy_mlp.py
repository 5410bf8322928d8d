"""polykeras on the NumPy backend against a plain NumPy training loop.

The MNIST MLP 784-512(relu)-512(relu)-10(softmax), batch 128, Adam (Keras
defaults), sparse categorical cross-entropy, float32, synthetic seeded data.

Both sides are measured in the same run, interleaved epoch by epoch (the
order alternates A B / B A), and each reports the median ms/step over the
measured epochs; the first epoch of each is a warm-up and is not counted.

* ``polykeras fit``: ``model.fit(x, y, epochs=1, verbose=0)`` once per epoch,
  the real user path (trainer + program). The epoch is timed from
  ``on_epoch_begin`` to ``on_epoch_end`` (shuffle, all steps, the epoch's
  logs), so the once-per-``fit`` set-up is reported separately rather than
  charged to the steps of a one-epoch ``fit``.
* ``plain numpy``: the same model written by hand as a competent person would
  write a NumPy MLP: float32 throughout, one permutation per epoch, in-place
  Adam. It starts from polykeras's initial weights.

Run: ``python benchmarks/numpy_mlp.py [--steps 40] [--epochs 11] [--threads N]``.
OPENBLAS_NUM_THREADS is respected; ``--threads`` sets it (and OMP_NUM_THREADS)
before NumPy is imported.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="steps (batches) per epoch (default 40)")
    p.add_argument("--epochs", type=int, default=11,
                   help="epochs per side, the first one a warm-up that is not counted (default 11)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (sets OPENBLAS_NUM_THREADS); default: the environment's setting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first is a warm-up)")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads is not None:
    # Must happen before NumPy (and with it OpenBLAS) is loaded.
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402

import polykeras as keras  # noqa: E402
from polykeras import layers  # noqa: E402
from polykeras_conformance.measure import epoch_timer  # noqa: E402

UNITS = (784, 512, 512, 10)


# -- environment --------------------------------------------------------------------------
def blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy, or a build that does not say
        return "unknown"


def blas_threads() -> str:
    """The thread count OpenBLAS actually uses, asked through ctypes when the
    loaded library can be found, else what the environment says."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.split()[-1].lower()}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for name in ("openblas_get_num_threads", "openblas_get_num_threads64_",
                         "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads"):
                fn = getattr(lib, name, None)
                if fn is not None:
                    return str(fn())
    except Exception:
        pass
    return os.environ.get("OPENBLAS_NUM_THREADS", f"default (cpus: {os.cpu_count()})")


# -- data and models ----------------------------------------------------------------------------
def make_data(n: int, seed: int):
    """Uniform inputs with learnable labels (argmax of a fixed random projection),
    so the two losses can be seen to fall together."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, UNITS[0]), dtype=np.float32)
    projection = rng.standard_normal((UNITS[0], UNITS[-1])).astype(np.float32)
    y = np.argmax((x - 0.5) @ projection, axis=1).astype(np.int64)
    return x, y


def make_polykeras_model(seed: int):
    keras.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(UNITS[0],)),
        layers.Dense(UNITS[1], activation="relu"),
        layers.Dense(UNITS[2], activation="relu"),
        layers.Dense(UNITS[3], activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy", dtype="float32")
    return model


class PlainMLP:
    """A hand-written NumPy MLP with Adam (Keras's defaults), float32 throughout."""

    def __init__(self, weights, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, seed=0):
        self.params = [np.array(w, dtype=np.float32) for w in weights]  # W1, b1, W2, b2, W3, b3
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.lr, self.beta_1, self.beta_2, self.epsilon = lr, beta_1, beta_2, epsilon
        self.t = 0
        self.rng = np.random.default_rng(seed)

    def step(self, x, y):
        W1, b1, W2, b2, W3, b3 = self.params
        n = len(x)
        rows = np.arange(n)
        # forward
        h1 = x @ W1
        h1 += b1
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ W2
        h2 += b2
        np.maximum(h2, 0, out=h2)
        logits = h2 @ W3
        logits += b3
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, y]).mean()
        accuracy = (p.argmax(axis=1) == y).mean()
        # backward: softmax + cross-entropy together
        dz3 = p
        dz3[rows, y] -= 1
        dz3 /= n
        dh2 = dz3 @ W3.T
        dh2 *= h2 > 0
        dh1 = dh2 @ W2.T
        dh1 *= h1 > 0
        grads = [x.T @ dh1, dh1.sum(axis=0), h1.T @ dh2, dh2.sum(axis=0), h2.T @ dz3, dz3.sum(axis=0)]
        # Adam, in place
        self.t += 1
        b1_, b2_ = self.beta_1, self.beta_2
        lr_t = self.lr * math.sqrt(1 - b2_ ** self.t) / (1 - b1_ ** self.t)  # a Python float: stays float32
        for w, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1_
            m += (1 - b1_) * g
            v *= b2_
            v += (1 - b2_) * (g * g)
            w -= lr_t * m / (np.sqrt(v) + self.epsilon)
        return loss, accuracy

    def epoch(self, x, y, batch_size):
        order = self.rng.permutation(len(x))
        xs, ys = x[order], y[order]
        losses = []
        for lo in range(0, len(x), batch_size):
            loss, _ = self.step(xs[lo:lo + batch_size], ys[lo:lo + batch_size])
            losses.append(loss)
        return float(np.mean(losses))


# -- the run ------------------------------------------------------------------------------
def main(args) -> int:
    n = args.steps * args.batch_size
    x, y = make_data(n, args.seed)
    model = make_polykeras_model(args.seed)
    plain = PlainMLP(model.get_weights(), seed=args.seed)
    assert all(p.dtype == np.float32 for p in plain.params)

    print(f"numpy {np.__version__}, BLAS: {blas_name()}, BLAS threads: {blas_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, cpus: {os.cpu_count()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = "  -- other jobs are running: expect noisy numbers" if load > 0.5 else ""
    print(f"load average (1 min) before the run: {load:.2f}{busy}")
    print(f"python {sys.version.split()[0]}; MLP {'-'.join(map(str, UNITS))}, batch {args.batch_size}, "
          f"{args.steps} steps/epoch, {args.epochs} epochs each (first is warm-up), interleaved")

    timer = epoch_timer()
    fit_seconds: list[float] = []
    plain_seconds: list[float] = []
    plain_losses: list[float] = []

    def run_polykeras():
        start = time.perf_counter()
        model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, callbacks=[timer], shuffle=True)
        fit_seconds.append(time.perf_counter() - start)

    def run_plain():
        start = time.perf_counter()
        plain_losses.append(plain.epoch(x, y, args.batch_size))
        plain_seconds.append(time.perf_counter() - start)

    for epoch in range(args.epochs):
        for run in ((run_polykeras, run_plain) if epoch % 2 == 0 else (run_plain, run_polykeras)):
            run()

    def ms_per_step(seconds):
        return [1000 * s / args.steps for s in seconds[1:]]  # drop the warm-up epoch

    poly, ref = ms_per_step(timer.seconds), ms_per_step(plain_seconds)
    overhead_ms = statistics.median(1000 * (f - e) for f, e in zip(fit_seconds[1:], timer.seconds[1:]))
    rows = [("polykeras fit (numpy)", poly), ("plain numpy loop", ref)]
    ref_median = statistics.median(ref)
    print()
    print(f"| {'path':<22} | ms/step (median) | min   | max   | samples/s | vs plain |")
    print(f"|{'-' * 24}|------------------|-------|-------|-----------|----------|")
    for name, values in rows:
        med = statistics.median(values)
        print(f"| {name:<22} | {med:16.2f} | {min(values):5.2f} | {max(values):5.2f} | "
              f"{args.batch_size * 1000 / med:9.0f} | {med / ref_median:7.2f}x |")
    ratios = [p / r for p, r in zip(poly, ref)]
    print()
    print(f"ratio polykeras/plain: {statistics.median(poly) / ref_median:.2f}x "
          f"(per interleaved epoch pair: median {statistics.median(ratios):.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x; target <= 1.3x)")
    print(f"fit() set-up outside the epoch: {overhead_ms:.2f} ms per call")
    print(f"mean loss, last epoch: polykeras {timer.losses[-1]:.4f}, plain {plain_losses[-1]:.4f} "
          f"(first epoch: {timer.losses[0]:.4f}, {plain_losses[0]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
