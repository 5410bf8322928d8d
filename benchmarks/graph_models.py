"""ms per training step of a functional (graph) model: a residual MLP on polykeras's
torch and jax backends, against the same Dense layers as a Sequential, a plain
PyTorch loop, a plain JAX + optax loop and Keras 3 ``fit``, measured in one run.

    python benchmarks/graph_models.py                          # every side
    python benchmarks/graph_models.py --epochs 3 --steps 10 --sides functional-torch,plain-torch

Workload (float32, seeded synthetic data of MNIST's shapes -- ``data("mnist-mlp")``
of ``jax_backend.py`` --, batch 128, Adam, sparse categorical cross-entropy,
accuracy logged every step):

    x = Input(784) -> Dense(256, relu) = h
    twice:  h = h + Dense(256)(Dense(256, relu)(h))
    -> Dense(10, softmax)

Sides, all on the CPU with the frameworks' default thread counts:

* ``functional-torch`` / ``functional-jax``: the model built with
  ``polykeras.Input`` / ``polykeras.Model``, ``compile(backend="torch" | "jax")``,
  ``model.fit(x, y, epochs=1, verbose=0)`` per epoch, timed from
  ``on_epoch_begin`` to ``on_epoch_end`` (``measure.epoch_timer``);
* ``sequential-torch`` / ``sequential-jax``: the same six Dense layers without the
  two skip connections, as a ``polykeras.Sequential`` (same seed, so the same
  initial weights): the functional model should cost just the two adds more;
* ``plain-torch``: the residual model as an ``nn.Module`` (logits +
  ``F.cross_entropy``), ``torch.optim.Adam`` with Keras's hyper-parameters,
  driven by the conformance suite's native torch loop's epoch
  (:class:`polykeras_conformance.native.torch_loop.Loop`: a ``randperm`` per
  epoch, loss and accuracy summed as tensors, one host sync at the end);
* ``plain-jax``: the residual model as a pure function of a parameter list, one
  jitted ``value_and_grad`` + ``optax.adam`` step with donated buffers (logits +
  optax's integer-label cross-entropy), driven by the native JAX loop's epoch
  (:class:`polykeras_conformance.native.jax_loop.Loop`: a NumPy permutation per
  epoch, the losses fetched once at its end);
* ``keras-torch`` / ``keras-jax``: Keras 3 ``fit`` of the same functional model
  (its own initial weights) with ``KERAS_BACKEND=torch`` / ``jax``, each in a
  worker process (Keras fixes its backend at import), timed like polykeras.

The plain loops start from the functional polykeras model's initial weights;
before timing, their first-step loss on the first batch is printed next to
polykeras's initial loss on it (``evaluate``), which must agree to float32
tolerance. Then the sides run interleaved epoch by epoch (the order rotates);
the first epoch of each is a warm-up (it compiles the jitted steps). Reported:
median ms/step, the speed ratios ``plain / polykeras functional`` (target >=
0.9) and ``keras / polykeras functional``, and ``functional / Sequential`` ms
(the functional model's extra cost: about 1.0).

Run: ``python benchmarks/graph_models.py [--epochs 6] [--steps 40]
[--sides functional-torch,sequential-torch,plain-torch,keras-torch,...]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from polykeras_conformance.measure import epoch_timer

from epoch_worker import EpochWorker, cell, ratio, run_interleaved, serve  # this script's folder is on sys.path
from jax_backend import data  # the sibling benchmark's MNIST-MLP data

BATCH, UNITS, BLOCKS, CLASSES = 128, 256, 2, 10
LOSS = "sparse_categorical_crossentropy"
WORKLOAD = f"residual MLP 784-256-{BLOCKS}x(256-256)+-10 ({BATCH}, adam)"
BACKENDS = ("torch", "jax")
KINDS = ("functional", "sequential", "plain", "keras")
SIDES = [f"{kind}-{b}" for b in BACKENDS for kind in KINDS]


def build(k, residual: bool = True):
    """(model, its Dense layers in order: stem, inner/outer of each block, head), for polykeras
    or Keras. ``residual=False``: the same layers as a Sequential, without the skip connections."""
    L = k.layers
    stem = L.Dense(UNITS, activation="relu")
    blocks = [(L.Dense(UNITS, activation="relu"), L.Dense(UNITS)) for _ in range(BLOCKS)]
    head = L.Dense(CLASSES, activation="softmax")
    dense = [stem, *[d for block in blocks for d in block], head]
    if not residual:
        return k.Sequential([L.Input((784,)), *dense]), dense
    inputs = k.Input((784,))
    h = stem(inputs)
    for inner, outer in blocks:
        h = h + outer(inner(h))
    return k.Model(inputs, head(h)), dense


def optimizer(k):
    return k.optimizers.Adam()  # Keras's defaults: lr 1e-3, betas 0.9/0.999, epsilon 1e-7


# -- the sides ---------------------------------------------------------------------------------------
class FitSide:
    """``fit`` of polykeras or Keras: one epoch per call."""

    def __init__(self, k, steps: int, residual: bool = True, **compile_kwargs):
        self.x, self.y = data("mnist-mlp", steps)
        self.model, self.dense = build(k, residual)
        self.model.compile(optimizer=optimizer(k), loss=LOSS, metrics=["accuracy"], **compile_kwargs)
        self.timer = epoch_timer(k.callbacks.Callback)

    def epoch(self) -> tuple[float, float]:
        self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.seconds[-1], self.timer.losses[-1]


def _workload():
    """The optimizer as the native loops read it (:func:`native.optimizer_config`)."""
    from types import SimpleNamespace

    import polykeras

    return SimpleNamespace(loss=LOSS, optimizer=lambda: optimizer(polykeras))


def plain_torch(weights):
    """The residual model as a PyTorch user writes it, in the native torch loop's epoch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from polykeras_conformance import native
    from polykeras_conformance.native import torch_loop

    class ResidualMLP(nn.Module):
        def __init__(self):
            super().__init__()
            linears = []
            for kernel, bias in weights:
                linear = nn.Linear(*kernel.shape)
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
                    linear.bias.copy_(torch.from_numpy(bias))
                linears.append(linear)
            self.stem, *blocks, self.head = linears
            self.blocks = nn.ModuleList(nn.Sequential(inner, nn.ReLU(), outer)
                                        for inner, outer in zip(blocks[::2], blocks[1::2]))

        def forward(self, x):
            h = F.relu(self.stem(x))
            for block in self.blocks:
                h = h + block(h)
            return self.head(h)  # logits: the softmax is inside F.cross_entropy

    class Plain(torch_loop.Loop):
        """``Loop``'s epoch (``fit_epochs``) on this network; ``Loop.__init__`` builds chains only."""

        def __init__(self):
            self.device, self.loss_name = torch.device("cpu"), LOSS
            self.net, self.logits, self.channels_first = ResidualMLP(), True, False
            self.losses = []
            _, cfg = native.optimizer_config(_workload())
            self.opt = torch.optim.Adam(self.net.parameters(), cfg["learning_rate"],
                                        betas=(cfg["beta_1"], cfg["beta_2"]), eps=cfg["epsilon"])

    return Plain()


def plain_jax(weights):
    """The residual model as a JAX + optax user writes it, in the native JAX loop's epoch."""
    import jax
    import optax

    from polykeras_conformance.native import jax_loop

    def logits(params, x):
        stem, *blocks, head = params
        h = jax.nn.relu(x @ stem["kernel"] + stem["bias"])
        for inner, outer in zip(blocks[::2], blocks[1::2]):
            h = h + jax.nn.relu(h @ inner["kernel"] + inner["bias"]) @ outer["kernel"] + outer["bias"]
        return h @ head["kernel"] + head["bias"]

    def loss_fn(params, x, y):
        out = logits(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), (out.argmax(-1) == y).sum()

    class Plain(jax_loop.Loop):
        """``Loop``'s epoch (``fit_epochs``) on this function; ``Loop.__init__`` builds chains only."""

        def __init__(self):
            device = jax.devices("cpu")[0]
            self.loss_name, self.logits = LOSS, True
            self.params = jax.device_put([{"kernel": k, "bias": b} for k, b in weights], device)
            self.tx = jax_loop._optimizer(_workload())  # optax.adam(1e-3, 0.9, 0.999, 1e-7)
            self.opt_state = jax.device_put(self.tx.init(self.params), device)

            def step(params, opt_state, x, y, step_number):  # step_number: the native loop's dropout key
                (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
                updates, opt_state = self.tx.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state, loss, correct

            self.step = jax.jit(step, donate_argnums=(0, 1))
            self.forward = jax.jit(logits)
            self.rng = np.random.default_rng(1)
            self.losses = []

    return Plain()


PLAIN = {"torch": plain_torch, "jax": plain_jax}


class PlainSide:
    def __init__(self, backend: str, weights, steps: int):
        self.x, self.y = data("mnist-mlp", steps)
        self.loop = PLAIN[backend](weights)

    def epoch(self) -> tuple[float, float]:
        return self.loop.fit_epochs(self.x, self.y, BATCH, 1)[0], self.loop.losses[-1]


def keras_worker(steps: int) -> None:
    import keras

    serve(FitSide(keras, steps), keras.__version__)


# -- the run -----------------------------------------------------------------------------------------
def make_sides(wanted: list[str], steps: int) -> dict:
    import polykeras

    sides = {}
    for backend in BACKENDS:
        if not {f"functional-{backend}", f"plain-{backend}"} & set(wanted):
            continue
        polykeras.utils.set_random_seed(0)
        functional = FitSide(polykeras, steps, backend=backend, dtype="float32")
        weights = [d.get_weights() for d in functional.dense]
        # the check: the plain loop's first step (a throwaway copy, one batch) against polykeras's initial loss
        x, y = functional.x[:BATCH], functional.y[:BATCH]
        initial = functional.model.evaluate(x, y, batch_size=BATCH, verbose=0)[0]
        check = PLAIN[backend](weights)
        check.fit_epochs(x, y, BATCH, 1)
        first = check.losses[-1]
        diff = abs(first - initial)
        print(f"check {backend}: loss on batch 0 at the initial weights: polykeras functional {initial:.6f}, "
              f"plain loop's first step {first:.6f}, |diff| {diff:.1e} "
              f"({'ok' if diff <= 1e-5 * max(1.0, abs(initial)) else 'MISMATCH'})", flush=True)
        if f"functional-{backend}" in wanted:
            sides[f"functional-{backend}"] = functional
        if f"sequential-{backend}" in wanted:
            polykeras.utils.set_random_seed(0)
            sides[f"sequential-{backend}"] = FitSide(polykeras, steps, residual=False, backend=backend,
                                                     dtype="float32")
        if f"plain-{backend}" in wanted:
            sides[f"plain-{backend}"] = PlainSide(backend, weights, steps)
    for backend in BACKENDS:
        if f"sequential-{backend}" in wanted and f"sequential-{backend}" not in sides:
            polykeras.utils.set_random_seed(0)
            sides[f"sequential-{backend}"] = FitSide(polykeras, steps, residual=False, backend=backend,
                                                     dtype="float32")
        if f"keras-{backend}" in wanted:
            sides[f"keras-{backend}"] = EpochWorker(__file__, ["--keras-worker", "--steps", str(steps)],
                                                    {"KERAS_BACKEND": backend})
    return {name: sides[name] for name in SIDES if name in sides}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs per side, the first a warm-up (default 6)")
    p.add_argument("--steps", type=int, default=40, help="batches per epoch (default 40)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker(args.steps)
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
    print("| workload (batch, optimizer) | backend | polykeras functional ms/step | polykeras Sequential (no skips) "
          "| plain loop | Keras 3 fit | plain / polykeras (>= 0.9) | functional / Sequential | keras / polykeras |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in BACKENDS:
        f, s, pl, k = (med.get(f"{kind}-{b}") for kind in KINDS)
        if f is None and s is None and pl is None and k is None:
            continue
        print(f"| {WORKLOAD} | {b} | {cell(f)} | {cell(s)} | {cell(pl)} | {cell(k)} | "
              f"{cell(ratio(pl, f), '{:.2f}x')} | {cell(ratio(f, s), '{:.2f}x')} | {cell(ratio(k, f), '{:.2f}x')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
