"""polykeras on Keras 3 against plain Keras 3 ``fit``, on the same Keras backend.

Workloads (float32, synthetic seeded data of the real shapes, ms per training
step; BENCHMARKS.md's three):

* ``mlp``  -- MNIST MLP 784-512-512-10 with Dropout(0.2), batch 128, Adam;
* ``cnn``  -- CIFAR CNN Conv32-Conv64-Pool-Drop-Flatten-Dense128-Drop-Dense10, batch 64, RMSprop;
* ``lstm`` -- IMDB LSTM Embedding(20000,128)-LSTM(128)-Dense(1) on length 80, batch 32, Adam.

Sides, for each Keras backend (``jax``, ``torch``, ``tensorflow`` where installed):

* ``polykeras``: this process, ``model.fit(x, y, epochs=1, verbose=0)`` with
  ``backend="keras-<b>"`` -- the real user path: core trainer, one message per
  step to the Keras worker process, Keras's own train step there; timed from
  ``on_epoch_begin`` to ``on_epoch_end``;
* ``keras``: plain Keras 3 ``fit`` of the same model in a process started
  with ``KERAS_BACKEND=<b>``, timed the same way.

The two sides run interleaved epoch by epoch (only one is busy at a time); the
first epoch of each is a warm-up (compilation). Reported: median ms/step and
the overhead ``polykeras/keras - 1`` (target <= 10%).

Run: ``python benchmarks/keras_backend.py [--backends jax,torch,tensorflow]
[--workloads mlp,cnn,lstm] [--epochs 4]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from polykeras_conformance.measure import epoch_timer

#: name: (batch, steps per epoch, x shape, classes or 1 for binary, optimizer)
WORKLOADS = {
    "mlp": (128, 40, (784,), 10, "adam"),
    "cnn": (64, 20, (32, 32, 3), 10, "rmsprop"),
    "lstm": (32, 40, (80,), 1, "adam"),
}
VOCAB = 20000


def make_data(name: str, seed: int = 0):
    batch, steps, shape, classes, _ = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    n = batch * steps
    x = rng.integers(1, VOCAB, (n,) + shape).astype("int32") if name == "lstm" else rng.random((n,) + shape,
                                                                                                 dtype=np.float32)
    y = rng.integers(0, classes if classes > 1 else 2, n)
    return x, y


def build(keras, name: str):
    """The same architecture from ``keras`` or ``polykeras`` (the same API)."""
    L = keras.layers
    if name == "mlp":
        layers = [L.Input(shape=(784,)), L.Dense(512, activation="relu"), L.Dropout(0.2),
                  L.Dense(512, activation="relu"), L.Dropout(0.2), L.Dense(10, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
    elif name == "cnn":
        layers = [L.Input(shape=(32, 32, 3)), L.Conv2D(32, (3, 3), activation="relu"),
                  L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(),
                  L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
    else:
        layers = [L.Input(shape=(80,), dtype="int32"), L.Embedding(VOCAB, 128), L.LSTM(128),
                  L.Dense(1, activation="sigmoid")]
        loss = "binary_crossentropy"
    return keras.Sequential(layers), WORKLOADS[name][4], loss


class Side:
    """One model and its data, trained one epoch at a time."""

    def __init__(self, keras, name: str, **compile_kwargs):
        self.name, self.keras = name, keras
        self.x, self.y = make_data(name)
        self.model, optimizer, loss = build(keras, name)
        self.model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], **compile_kwargs)
        self.timer = epoch_timer(keras.callbacks.Callback)

    def epoch(self) -> float:
        """ms per step of one more epoch."""
        batch, steps = WORKLOADS[self.name][:2]
        self.model.fit(self.x, self.y, batch_size=batch, epochs=1, verbose=0, callbacks=[self.timer], shuffle=True)
        return self.timer.seconds[-1] * 1e3 / steps


def keras_worker() -> None:
    """``--keras-worker``: plain Keras; reads workload names, answers ms/step."""
    import keras

    sides: dict[str, Side] = {}
    print(json.dumps({"ready": keras.__version__}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name not in sides:
            sides[name] = Side(keras, name)
        print(json.dumps({"ms": sides[name].epoch()}), flush=True)


class KerasProcess:
    def __init__(self, keras_backend: str):
        env = dict(os.environ, KERAS_BACKEND=keras_backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
                   TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen([sys.executable, __file__, "--keras-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.version = self._read()["ready"]

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the plain-Keras process died (see its output above)")
            if line.startswith("{"):
                return json.loads(line)

    def epoch(self, name: str) -> float:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self._read()["ms"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="jax,torch,tensorflow")
    p.add_argument("--workloads", default="mlp,cnn,lstm")
    p.add_argument("--epochs", type=int, default=4, help="epochs per side, the first a warm-up (default 4)")
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker()
        return 0
    import polykeras

    rows = []
    for keras_backend in args.backends.split(","):
        if importlib.util.find_spec(keras_backend) is None:
            print(f"skipping keras-{keras_backend}: {keras_backend} is not installed")
            continue
        plain = KerasProcess(keras_backend)
        for name in args.workloads.split(","):
            polykeras.utils.set_random_seed(0)
            ours = Side(polykeras, name, backend=f"keras-{keras_backend}")
            times = {"polykeras": [], "keras": []}
            for epoch in range(args.epochs):
                order = ("polykeras", "keras") if epoch % 2 == 0 else ("keras", "polykeras")
                for side in order:
                    times[side].append(ours.epoch() if side == "polykeras" else plain.epoch(name))
            med = {k: statistics.median(v[1:]) for k, v in times.items()}
            rows.append((keras_backend, name, med["polykeras"], med["keras"]))
            print(f"keras-{keras_backend} {name}: polykeras {med['polykeras']:.2f} ms/step, keras fit "
                  f"{med['keras']:.2f} ms/step, overhead {med['polykeras'] / med['keras'] - 1:+.1%}  "
                  f"(epochs: {['%.2f' % t for t in times['polykeras']]} vs {['%.2f' % t for t in times['keras']]})",
                  flush=True)
        plain.close()
    print(f"\nKeras {rows and plain.version}; median ms/step after one warm-up epoch, interleaved in one run\n")
    print("| Keras backend | workload | polykeras on Keras | plain Keras fit | overhead |")
    print("|---|---|---|---|---|")
    for keras_backend, name, ours_ms, keras_ms in rows:
        print(f"| {keras_backend} | {name} | {ours_ms:.2f} | {keras_ms:.2f} | {ours_ms / keras_ms - 1:+.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
