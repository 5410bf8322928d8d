"""polykeras on torch against a plain PyTorch loop and Keras 3 on torch.

Workloads (float32, synthetic seeded data of the real shapes, ms per training
step):

* ``small``  -- Dense(64, relu, input_dim=100)-Dense(10, softmax), batch 32,
  Adam, categorical cross-entropy on one-hot labels (the seed's first example:
  per-step overhead is the whole cost);
* ``mlp``    -- MNIST MLP 784-512-512-10 with Dropout(0.2), batch 128, Adam;
* ``cnn``    -- CIFAR CNN Conv32-Conv64-Pool-Drop-Flatten-Dense128-Drop-Dense10,
  batch 64, RMSprop;
* ``lstm``   -- IMDB LSTM Embedding(20000,128)-LSTM(128)-Dense(1) on length
  80, batch 32, Adam (BENCHMARKS.md's model);
* ``lstm-rd`` -- the same with ``dropout=0.2, recurrent_dropout=0.2`` (the
  ``imdb-lstm`` workload, Keras's imdb_lstm example): no fused kernel can mask
  ``h`` inside the recurrence, so every side runs a time loop; the plain loop
  is the idiomatic ``nn.LSTMCell`` loop with masked ``h``.

Sides, all on the CPU with torch's default thread count, all logging the loss
and accuracy of every step (as ``fit`` does):

* ``polykeras``: ``model.fit(x, y, epochs=1, verbose=0)`` per epoch, the real
  user path (core trainer + torch program), timed from ``on_epoch_begin`` to
  ``on_epoch_end``;
* ``plain torch``: ``nn.Module`` + ``torch.optim`` with Keras's
  hyper-parameters, logits + ``F.cross_entropy`` / ``BCEWithLogits`` (the
  idiomatic spelling of softmax/sigmoid + cross-entropy), a ``randperm`` per
  epoch and tensor indexing per batch, loss and accuracy summed as tensors;
* ``keras-torch``: Keras 3 with ``KERAS_BACKEND=torch`` ``fit`` in a worker
  process (Keras fixes its backend at import), timed like polykeras.

The sides run interleaved epoch by epoch (the order rotates); the first epoch
of each is a warm-up. Reported: median ms/step, and speed ratios
``plain/polykeras`` (target >= 0.9) and ``keras/polykeras`` (target > 1).

Run: ``python benchmarks/torch_backend.py [--workloads small,mlp,cnn,lstm,lstm-rd]
[--epochs 6] [--no-keras] [--threads N]`` (``--threads`` sets torch's intra-op threads of the
polykeras and plain sides; Keras's worker keeps torch's default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

from epoch_worker import EpochWorker, serve
from polykeras_conformance.measure import epoch_timer

#: name: (batch, steps per epoch, x shape, classes or 1 for binary, optimizer)
WORKLOADS = {
    "small": (32, 200, (100,), 10, "adam"),
    "mlp": (128, 40, (784,), 10, "adam"),
    "cnn": (64, 20, (32, 32, 3), 10, "rmsprop"),
    "lstm": (32, 40, (80,), 1, "adam"),
    "lstm-rd": (32, 20, (80,), 1, "adam"),
}
VOCAB = 20000


def make_data(name: str, seed: int = 0):
    batch, steps, shape, classes, _ = WORKLOADS[name]
    n = batch * steps
    rng = np.random.default_rng(seed)
    if name.startswith("lstm"):
        return rng.integers(1, VOCAB, (n,) + shape).astype(np.int32), rng.integers(0, 2, n).astype(np.float32)
    x = rng.random((n,) + shape, dtype=np.float32)
    y = rng.integers(0, classes, n)
    if name == "small":
        return x, np.eye(classes, dtype=np.float32)[y]
    return x, y.astype(np.int32)


def build_keras_like(keras, name: str):
    """The model in the Keras API; works for ``polykeras`` and ``keras``."""
    L = keras.layers
    if name == "small":
        layers = [L.Input((100,)), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]
    elif name == "mlp":
        layers = [L.Input((784,)), L.Dense(512, activation="relu"), L.Dropout(0.2), L.Dense(512, activation="relu"),
                  L.Dropout(0.2), L.Dense(10, activation="softmax")]
    elif name == "cnn":
        layers = [L.Input((32, 32, 3)), L.Conv2D(32, (3, 3), activation="relu"),
                  L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(),
                  L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")]
    else:
        rd = 0.2 if name == "lstm-rd" else 0.0
        layers = [L.Input((80,), dtype="int32"), L.Embedding(VOCAB, 128), L.LSTM(128, dropout=rd, recurrent_dropout=rd),
                  L.Dense(1, activation="sigmoid")]
    model = keras.Sequential(layers)
    loss = {"small": "categorical_crossentropy", "lstm": "binary_crossentropy",
            "lstm-rd": "binary_crossentropy"}.get(name, "sparse_categorical_crossentropy")
    optimizer = keras.optimizers.Adam() if WORKLOADS[name][4] == "adam" else keras.optimizers.RMSprop()
    return model, dict(optimizer=optimizer, loss=loss, metrics=["accuracy"])


# -- the three sides ---------------------------------------------------------------------------
class FitSide:
    """``fit`` of polykeras or Keras: one epoch per call."""

    def __init__(self, keras, name, **compile_kwargs):
        self.x, self.y = make_data(name)
        self.batch = WORKLOADS[name][0]
        self.model, kwargs = build_keras_like(keras, name)
        self.model.compile(**kwargs, **compile_kwargs)
        self.timer = epoch_timer(keras.callbacks.Callback)

    def epoch(self) -> tuple[float, float]:
        self.model.fit(self.x, self.y, batch_size=self.batch, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.seconds[-1], self.timer.losses[-1]


class PlainTorchSide:
    """The model as a competent PyTorch user writes it: the conformance suite's native torch loop
    (:mod:`polykeras_conformance.native.torch_loop`) on the same model and weights."""

    def __init__(self, name, model):
        from types import SimpleNamespace

        import polykeras
        from polykeras_conformance.native import torch_loop

        self.x, self.y = make_data(name)
        self.batch = WORKLOADS[name][0]
        _, kwargs = build_keras_like(polykeras, name)
        workload = SimpleNamespace(loss=kwargs["loss"], optimizer=lambda: kwargs["optimizer"])
        self.loop = torch_loop.Loop(model, workload, "cpu")

    def epoch(self) -> tuple[float, float]:
        return self.loop.fit_epochs(self.x, self.y, self.batch, 1)[0], self.loop.losses[-1]


def keras_worker(name: str) -> None:
    import keras

    serve(FitSide(keras, name), keras.__version__)


# -- the run -----------------------------------------------------------------------------------------
def run_workload(name, args, keras_version_box):
    import polykeras

    sides = {}
    polykeras.utils.set_random_seed(0)
    sides["polykeras"] = FitSide(polykeras, name, backend="torch", dtype="float32")
    sides["plain torch"] = PlainTorchSide(name, sides["polykeras"].model)
    if not args.no_keras:
        sides["keras-torch"] = EpochWorker(__file__, ["--keras-worker", name], {"KERAS_BACKEND": "torch"})
        keras_version_box.append(sides["keras-torch"].version)
    times = {k: [] for k in sides}
    losses = {k: [] for k in sides}
    order = list(sides)
    for epoch in range(args.epochs):
        for key in order[epoch % len(order):] + order[:epoch % len(order)]:
            seconds, loss = sides[key].epoch()
            times[key].append(seconds)
            losses[key].append(loss)
    if "keras-torch" in sides:
        sides["keras-torch"].close()
    steps = WORKLOADS[name][1]
    return {k: [1000 * s / steps for s in v[1:]] for k, v in times.items()}, losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="small,mlp,cnn,lstm,lstm-rd")
    p.add_argument("--epochs", type=int, default=6, help="epochs per side, the first a warm-up (default 6)")
    p.add_argument("--no-keras", action="store_true", help="skip Keras 3 on torch")
    p.add_argument("--threads", type=int, help="torch intra-op threads of the polykeras and plain sides "
                   "(default: torch's; 1 is steadier on a loaded machine)")
    p.add_argument("--keras-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker(args.keras_worker)
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"python {sys.version.split()[0]}; {args.epochs} epochs per side (first is warm-up), interleaved; "
          f"load average {os.getloadavg()[0]:.2f}")
    rows, versions = [], []
    for name in args.workloads.split(","):
        ms, losses = run_workload(name, args, versions)
        med = {k: statistics.median(v) for k, v in ms.items()}
        rows.append((name, med, {k: (min(v), max(v)) for k, v in ms.items()}))
        print(f"  {name}: " + ", ".join(f"{k} {m:.3f} ms ({losses[k][-1]:.4f} loss)" for k, m in med.items()),
              flush=True)
    if versions:
        print(f"keras {versions[0]} (KERAS_BACKEND=torch)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print("| workload (batch, optimizer) | polykeras-torch ms/step | plain torch ms/step | keras-torch ms/step "
          "| speed vs plain (>= 0.9) | speed vs keras (> 1) |")
    print("|---|---|---|---|---|---|")
    for name, med, spread in rows:
        batch, _, _, _, opt = WORKLOADS[name]
        poly, plain = med["polykeras"], med["plain torch"]
        keras_ms = med.get("keras-torch")
        vs_keras = f"{keras_ms / poly:.2f}x" if keras_ms else "-"
        keras_cell = f"{keras_ms:.3f}" if keras_ms else "-"
        print(f"| {name} ({batch}, {opt}) | {poly:.3f} | {plain:.3f} | {keras_cell} | {plain / poly:.2f}x | {vs_keras} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
