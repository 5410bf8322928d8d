"""ms per training step of a model written as a custom layer in ``polykeras.ops``
against the same model written with built-in ``Dense`` layers, on polykeras's torch
and jax backends (and Keras 3 ``fit`` of both), measured in one run.

    python benchmarks/custom_layers.py                          # every side
    python benchmarks/custom_layers.py --epochs 3 --steps 10 --sides builtin-torch,custom-torch

Workload (float32, seeded synthetic data of MNIST's shapes -- ``data("mnist-mlp")``
of ``jax_backend.py`` --, batch 128, Adam, sparse categorical cross-entropy,
accuracy logged every step): the MLP 784 -> 256 relu -> 256 relu -> 10 softmax,
written two ways as a functional model:

* ``builtin``: ``Input(784) -> Dense(256, relu) -> Dense(256, relu) -> Dense(10, softmax)``;
* ``custom``: the same three layers as a ``Linear(layers.Layer)`` whose ``build()``
  makes ``kernel`` (glorot uniform) and ``bias`` (zeros) with ``add_weight`` and whose
  ``call()`` is ``ops.matmul(x, kernel) + bias`` followed by ``ops.relu`` /
  ``ops.softmax``. Tracing turns each ``Linear`` call into five graph nodes (two
  ``Variable`` reads, ``matmul``, ``add``, the activation) where ``Dense`` is one.

The custom model is given the built-in model's initial weights (``set_weights``);
before timing, both models' losses on the first batch are printed (``evaluate``),
which must agree to float32 tolerance, with their node counts.

Sides, all on the CPU with the frameworks' default thread counts:

* ``builtin-torch`` / ``custom-torch`` / ``builtin-jax`` / ``custom-jax``: the model
  compiled with ``backend="torch" | "jax"``, ``model.fit(x, y, epochs=1, verbose=0)``
  per epoch, timed from ``on_epoch_begin`` to ``on_epoch_end`` (``measure.epoch_timer``);
* ``keras-builtin-torch`` / ``keras-custom-torch`` / ``keras-builtin-jax`` /
  ``keras-custom-jax``: Keras 3 ``fit`` of the same two models (the same ``Linear``
  class on ``keras.layers.Layer`` / ``keras.ops``; Keras's own seeded initial weights,
  the same for both of its models) with ``KERAS_BACKEND=torch`` / ``jax``, each in a
  worker process (Keras fixes its backend at import), timed like polykeras.

The sides run interleaved epoch by epoch (the order rotates); the first epoch of each
is a warm-up (it compiles the jitted steps). Reported: median ms/step and the speed
ratio ``builtin ms / custom ms`` per framework (target >= 0.9 for polykeras; Keras's
own ratio shows what a custom layer costs there).

Run: ``python benchmarks/custom_layers.py [--epochs 6] [--steps 40]
[--sides builtin-torch,custom-torch,keras-custom-torch,...]``.
"""

from __future__ import annotations

import argparse
import os
import sys

from polykeras_conformance.measure import epoch_timer

from epoch_worker import EpochWorker, cell, ratio, run_interleaved, serve  # this script's folder is on sys.path
from jax_backend import data  # the sibling benchmark's MNIST-MLP data

BATCH, UNITS, CLASSES = 128, 256, 10
LOSS = "sparse_categorical_crossentropy"
WORKLOAD = f"MLP 784-{UNITS}-{UNITS}-{CLASSES} ({BATCH}, adam)"
BACKENDS = ("torch", "jax")
KINDS = ("builtin", "custom", "keras-builtin", "keras-custom")
SIDES = [f"{kind}-{b}" for b in BACKENDS for kind in KINDS]
ACTIVATIONS = ("relu", "relu", "softmax")


def linear_class(k):
    """``Linear`` on ``k.layers.Layer`` and ``k.ops`` (polykeras or Keras 3: the same code)."""
    ops = k.ops

    class Linear(k.layers.Layer):
        def __init__(self, units, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units, self.activation = units, activation

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                          name="kernel")
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

        def call(self, x):
            y = ops.matmul(x, self.kernel) + self.bias
            if self.activation == "relu":
                return ops.relu(y)
            if self.activation == "softmax":
                return ops.softmax(y)
            return y

    return Linear


def build(k, custom: bool):
    """The MLP as a functional model of built-in ``Dense`` layers or of custom ``Linear`` layers."""
    layer = linear_class(k) if custom else k.layers.Dense
    inputs = h = k.Input((784,))
    for units, activation in zip((UNITS, UNITS, CLASSES), ACTIVATIONS):
        h = layer(units, activation=activation)(h)
    return k.Model(inputs, h)


def optimizer(k):
    return k.optimizers.Adam()  # Keras's defaults: lr 1e-3, betas 0.9/0.999, epsilon 1e-7


# -- the sides ---------------------------------------------------------------------------------------
class FitSide:
    """``fit`` of polykeras or Keras: one epoch per call. ``weights``: the initial weights to set."""

    def __init__(self, k, steps: int, custom: bool, weights=None, **compile_kwargs):
        self.x, self.y = data("mnist-mlp", steps)
        self.model = build(k, custom)
        if weights is not None:
            self.model.set_weights(weights)
        self.model.compile(optimizer=optimizer(k), loss=LOSS, metrics=["accuracy"], **compile_kwargs)
        self.timer = epoch_timer(k.callbacks.Callback)

    def epoch(self) -> tuple[float, float]:
        self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.seconds[-1], self.timer.losses[-1]


def keras_worker(steps: int, custom: bool) -> None:
    import keras

    keras.utils.set_random_seed(0)
    weights = build(keras, custom=False).get_weights()  # both Keras sides start from the same weights
    serve(FitSide(keras, steps, custom, weights), keras.__version__)


# -- the run -----------------------------------------------------------------------------------------
def node_count(model) -> int:
    return len(model._spec().layers)


def make_sides(wanted: list[str], steps: int) -> dict:
    import polykeras

    sides = {}
    for backend in BACKENDS:
        if not {f"builtin-{backend}", f"custom-{backend}"} & set(wanted):
            continue
        polykeras.utils.set_random_seed(0)
        builtin = FitSide(polykeras, steps, custom=False, backend=backend, dtype="float32")
        custom = FitSide(polykeras, steps, custom=True, weights=builtin.model.get_weights(), backend=backend,
                         dtype="float32")
        # the check: the same initial weights give the same loss on the first batch
        x, y = builtin.x[:BATCH], builtin.y[:BATCH]
        a = builtin.model.evaluate(x, y, batch_size=BATCH, verbose=0)[0]
        b = custom.model.evaluate(x, y, batch_size=BATCH, verbose=0)[0]
        diff = abs(a - b)
        print(f"check {backend}: loss on batch 0 at the initial weights: builtin Dense {a:.6f} "
              f"({node_count(builtin.model)} nodes), custom Linear {b:.6f} ({node_count(custom.model)} nodes), "
              f"|diff| {diff:.1e} ({'ok' if diff <= 1e-5 * max(1.0, abs(a)) else 'MISMATCH'})", flush=True)
        for name, side in ((f"builtin-{backend}", builtin), (f"custom-{backend}", custom)):
            if name in wanted:
                sides[name] = side
    for backend in BACKENDS:
        for kind in ("builtin", "custom"):
            if f"keras-{kind}-{backend}" in wanted:
                sides[f"keras-{kind}-{backend}"] = EpochWorker(
                    __file__, ["--keras-worker", kind, "--steps", str(steps)], {"KERAS_BACKEND": backend})
    return {name: sides[name] for name in SIDES if name in sides}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs per side, the first a warm-up (default 6)")
    p.add_argument("--steps", type=int, default=40, help="batches per epoch (default 40)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    p.add_argument("--keras-worker", choices=("builtin", "custom"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker(args.steps, args.keras_worker == "custom")
        return 0
    wanted = args.sides.split(",")
    unknown = sorted(set(wanted) - set(SIDES))
    if unknown:
        p.error(f"unknown side(s) {', '.join(unknown)}; choose from {', '.join(SIDES)}")
    import jax
    import torch

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}, "
          f"{os.cpu_count()} cpus, python {sys.version.split()[0]}; {WORKLOAD}; {args.steps} steps/epoch, "
          f"{args.epochs} epochs per side (first is warm-up), interleaved", flush=True)
    med = run_interleaved(make_sides(wanted, args.steps), args.epochs, args.steps)

    print()
    print("| workload (batch, optimizer) | framework | built-in Dense ms/step | custom Linear (ops) ms/step "
          "| builtin / custom (>= 0.9) |")
    print("|---|---|---|---|---|")
    for b in BACKENDS:
        for framework, prefix in ((f"polykeras {b}", ""), (f"Keras 3 {b}", "keras-")):
            builtin, custom = med.get(f"{prefix}builtin-{b}"), med.get(f"{prefix}custom-{b}")
            if builtin is None and custom is None:
                continue
            print(f"| {WORKLOAD} | {framework} | {cell(builtin)} | {cell(custom)} | "
                  f"{cell(ratio(builtin, custom), '{:.2f}x')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
