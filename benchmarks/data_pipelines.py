"""Feeding ``fit`` from a data pipeline against in-memory arrays, on torch.

Workload: the MNIST MLP 784-512-512-10 (dropout 0.2), batch 128, Adam, float32 synthetic data.
Sides, interleaved epoch by epoch (order rotating), first epoch a warm-up, median ms/step:

* ``arrays``: ``fit(x, y)`` -- the core slices batches from memory;
* ``DataLoader(num_workers=2)``: ``fit(loader)`` over a ``TensorDataset`` (batches collated in two
  worker processes, converted to NumPy and checked on polykeras's prefetch thread);
* ``generator``: ``fit(gen, steps_per_epoch=...)`` over NumPy slices (the prefetch thread alone);
* ``plain torch: tensors`` / ``plain torch: DataLoader(num_workers=2)``: the same model written as a
  plain PyTorch loop (``nn.Sequential``, ``torch.optim.Adam``), fed from in-memory tensors or from the
  same DataLoader -- the yardstick that tells what the DataLoader costs any PyTorch program on this
  machine from what polykeras adds.

Target (the training issue): the DataLoader within 10% of the arrays, i.e. ratio >= 0.9.

Run: ``python benchmarks/data_pipelines.py [--epochs 6] [--steps 40]``.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from polykeras_conformance.measure import epoch_timer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args(argv)
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import polykeras as keras
    from polykeras import layers

    batch = 128
    n = batch * args.steps
    rng = np.random.default_rng(0)
    x, y = rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"), layers.Dropout(0.2),
                              layers.Dense(512, activation="relu"), layers.Dropout(0.2),
                              layers.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend="torch")
        return m

    def forever():
        while True:
            for i in range(0, n, batch):
                yield x[i:i + batch], y[i:i + batch]

    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch, shuffle=True,
                        num_workers=2, persistent_workers=True)
    stream = forever()
    sides = {"arrays": (model(), lambda m, cb: m.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[cb])),
             "DataLoader(num_workers=2)": (model(), lambda m, cb: m.fit(loader, epochs=1, verbose=0, callbacks=[cb])),
             "generator": (model(), lambda m, cb: m.fit(stream, steps_per_epoch=args.steps, epochs=1, verbose=0,
                                                          callbacks=[cb]))}
    net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(512, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def plain(batches, cb):
        net.train()
        cb.on_epoch_begin(0)
        for xb, yb in batches:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            optimizer.step()
        cb.on_epoch_end(0)

    sides["plain torch: tensors"] = (None, lambda m, cb: plain(
        ((tx[i:i + batch], ty[i:i + batch]) for i in range(0, n, batch)), cb))
    sides["plain torch: DataLoader(num_workers=2)"] = (None, lambda m, cb: plain(loader, cb))
    times = {k: [] for k in sides}
    order = list(sides)
    for epoch in range(args.epochs):
        for name in order[epoch % len(order):] + order[:epoch % len(order)]:
            m, fit = sides[name]
            timer = epoch_timer()
            fit(m, timer)
            times[name].append(1000 * timer.seconds[-1] / args.steps)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.epochs} epochs x {args.steps} steps "
          "per side (first a warm-up), interleaved")
    print("| feeding fit (MNIST MLP, batch 128, torch) | ms/step (median) | speed vs arrays |")
    print("|---|---|---|")
    base = statistics.median(times["arrays"][1:])
    for name, values in times.items():
        med = statistics.median(values[1:])
        print(f"| {name} | {med:.3f} | {base / med:.2f}x |")
    plain_base = statistics.median(times["plain torch: tensors"][1:])
    plain_loader = statistics.median(times["plain torch: DataLoader(num_workers=2)"][1:])
    print(f"\nthe DataLoader in a plain PyTorch loop runs at {plain_base / plain_loader:.2f}x its in-memory tensors; "
          f"polykeras fed by it at {plain_loader / statistics.median(times['DataLoader(num_workers=2)'][1:]):.2f}x "
          "the plain loop fed by it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
