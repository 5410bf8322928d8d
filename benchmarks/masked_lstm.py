"""ms per training step of a masked IMDB LSTM on polykeras's torch backend against a plain
PyTorch loop, with left-padded (``pad_sequences``'s default) and right-padded batches, measured
in one run; the table says which path polykeras's LSTM took.

    python benchmarks/masked_lstm.py                       # every side
    python benchmarks/masked_lstm.py --epochs 3 --steps 3 --sides polykeras-left,plain-left

Workload (float32, batch 32, reviews of 200 word ids out of 20,000, Adam with Keras's defaults;
seeded synthetic data: each review 20-200 words long, padded with id 0; random 0/1 labels):
``Embedding(20000, 128, mask_zero=True)``, ``LSTM(64)``, ``Dense(1, sigmoid)``; binary
cross-entropy. The same reviews, padded on the left or on the right.

Sides, all on the CPU:

* ``polykeras-left`` / ``polykeras-right``: ``compile(backend="torch")``, ``model.fit(x, y,
  epochs=1, verbose=0)`` per epoch, timed from ``on_epoch_begin`` to ``on_epoch_end``; the LSTM's
  calls of the fused op over a mask (of them the packed ones) and of the time loop are recorded (the
  path column);
* ``polykeras-loop``: the left-padded side with the mask reading switched off
  (``recurrent.mask_segments`` answering ``None`` during its epochs): the time loop every masked
  layer took before the fused path -- the "before" row;
* ``plain-left`` / ``plain-right``: what a PyTorch user writes -- ``nn.Embedding``, ``nn.LSTM`` on
  ``pack_padded_sequence`` of the lengths ``(ids != 0).sum(1)``, ``nn.Linear`` on ``h_n``, logits into
  ``binary_cross_entropy_with_logits``, ``torch.optim.Adam``; left-padded batches first move each row's
  words to the front (one gather), since ``pack_padded_sequence`` takes right padding. Driven by the
  native torch loop's epoch (:class:`polykeras_conformance.native.torch_loop.Loop`), from the polykeras
  model's initial weights (the first-batch loss in inference mode is printed next to polykeras's
  ``evaluate``). ``fit`` shuffles, each side from its own point of the random stream, so the sides'
  losses drift apart over the epochs (``shuffle=False``: the fused and loop sides' float32 losses agree
  to 1e-7 after 5 epochs).

The sides run interleaved epoch by epoch (the order rotates); the first epoch of each is a
warm-up. Reported: median ms/step and ``plain / polykeras`` (target >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from polykeras_conformance.measure import epoch_timer

from epoch_worker import cell, plain_torch_loop, ratio, run_interleaved  # this script's folder is on sys.path

BATCH, MAXLEN, VOCAB, EMBED, UNITS = 32, 200, 20000, 128, 64
PADDINGS = ("left", "right")
SIDES = ["polykeras-left", "plain-left", "polykeras-right", "plain-right", "polykeras-loop"]


def data(padding: str, steps: int):
    """IMDB-shaped reviews of 20-200 word ids, padded with 0 to 200 on ``padding``'s side (the same
    reviews either way); 0/1 labels."""
    rng = np.random.default_rng(0)
    n = BATCH * steps
    lengths = rng.integers(20, MAXLEN + 1, n)
    words = rng.integers(1, VOCAB, (n, MAXLEN)).astype(np.int32)
    words[np.arange(MAXLEN)[None, :] >= lengths[:, None]] = 0  # right-padded
    if padding == "left":
        words = np.stack([np.roll(row, MAXLEN - length) for row, length in zip(words, lengths)])
    return words, rng.integers(0, 2, n).astype(np.float32)[:, None]


def build(k):
    inputs = k.Input(shape=(MAXLEN,), dtype="int32")
    x = k.layers.LSTM(UNITS)(k.layers.Embedding(VOCAB, EMBED, mask_zero=True)(inputs))
    return k.Model(inputs, k.layers.Dense(1, activation="sigmoid")(x))


class PolykerasSide:
    """``fit`` on polykeras-torch, one epoch per call, counting the LSTM's paths; ``loop``: the mask
    reading switched off during its epochs."""

    def __init__(self, padding: str, steps: int, loop: bool = False):
        import polykeras

        polykeras.utils.set_random_seed(0)
        self.x, self.y = data(padding, steps)
        self.model = build(polykeras)
        self.model.compile(optimizer=polykeras.optimizers.Adam(), loss="binary_crossentropy", backend="torch",
                           dtype="float32")
        self.timer, self.loop, self.paths = epoch_timer(polykeras.callbacks.Callback), loop, set()

    def epoch(self) -> tuple[float, float]:
        from polykeras_torch.layers import recurrent

        fused, packed, loop = recurrent._Recurrent._fused_segments, recurrent.packed_fused_call, recurrent._Recurrent._loop
        segments = recurrent.mask_segments

        def count(name, fn):
            return lambda *a, **k: self.paths.add(name) or fn(*a, **k)

        recurrent._Recurrent._fused_segments = count("fused op", fused)
        recurrent.packed_fused_call = count("packed", packed)
        recurrent._Recurrent._loop = count("time loop", loop)
        if self.loop:
            recurrent.mask_segments = lambda mask: None
        try:
            self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[self.timer])
        finally:
            recurrent._Recurrent._fused_segments, recurrent._Recurrent._loop = fused, loop
            recurrent.packed_fused_call, recurrent.mask_segments = packed, segments
        return self.timer.seconds[-1], self.timer.losses[-1]


def plain_torch(weights: list, padding: str):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence


    embeddings, kernel, recurrent, bias, dense_w, dense_b = weights

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding.from_pretrained(torch.from_numpy(embeddings), freeze=False)
            self.lstm = nn.LSTM(EMBED, UNITS, batch_first=True)
            self.dense = nn.Linear(UNITS, 1)
            with torch.no_grad():  # torch's gate order is Keras's; one bias, so bias_hh is zero
                self.lstm.weight_ih_l0.copy_(torch.from_numpy(kernel.T))
                self.lstm.weight_hh_l0.copy_(torch.from_numpy(recurrent.T))
                self.lstm.bias_ih_l0.copy_(torch.from_numpy(bias))
                self.lstm.bias_hh_l0.zero_()
                self.dense.weight.copy_(torch.from_numpy(dense_w.T))
                self.dense.bias.copy_(torch.from_numpy(dense_b))

        def forward(self, ids):
            lengths = (ids != 0).sum(1)
            if padding == "left":  # the words to the front: pack_padded_sequence takes right padding
                index = (torch.arange(ids.shape[1])[None, :] + (ids.shape[1] - lengths)[:, None]) % ids.shape[1]
                ids = torch.gather(ids, 1, index)
            packed = pack_padded_sequence(self.emb(ids), lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
            return self.dense(h[-1])  # logits

    return plain_torch_loop(Net(), "binary_crossentropy")


class PlainSide:
    def __init__(self, loop, padding: str, steps: int):
        self.x, self.y = data(padding, steps)
        self.loop = loop

    def epoch(self) -> tuple[float, float]:
        return self.loop.fit_epochs(self.x, self.y, BATCH, 1)[0], self.loop.losses[-1]


def make_sides(wanted: list[str], steps: int) -> dict:
    sides = {}
    for padding in PADDINGS:
        if not {f"polykeras-{padding}", f"plain-{padding}"} & set(wanted):
            continue
        side = PolykerasSide(padding, steps)
        if f"polykeras-{padding}" in wanted:
            sides[f"polykeras-{padding}"] = side
        if f"plain-{padding}" in wanted:
            loop = plain_torch(side.model.get_weights(), padding)
            x, y = side.x[:BATCH], side.y[:BATCH]
            initial = float(side.model.evaluate(x, y, batch_size=BATCH, verbose=0))
            first = loop.inference_loss(x, y)
            diff = abs(first - initial)
            print(f"check {padding}: loss on batch 0 at the initial weights: polykeras {initial:.6f}, plain "
                  f"{first:.6f}, |diff| {diff:.1e} ({'ok' if diff <= 1e-5 * max(1.0, abs(initial)) else 'MISMATCH'})",
                  flush=True)
            sides[f"plain-{padding}"] = PlainSide(loop, padding, steps)
    if "polykeras-loop" in wanted:
        sides["polykeras-loop"] = PolykerasSide("left", steps, loop=True)
    return {name: sides[name] for name in SIDES if name in sides}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="epochs per side, the first a warm-up (default 4)")
    p.add_argument("--steps", type=int, default=5, help="batches per epoch (default 5)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    args = p.parse_args(argv)
    wanted = args.sides.split(",")
    unknown = sorted(set(wanted) - set(SIDES))
    if unknown:
        p.error(f"unknown side(s) {', '.join(unknown)}; sides: {', '.join(SIDES)}")
    import torch

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cpus, python "
          f"{sys.version.split()[0]}; {args.steps} steps/epoch, {args.epochs} epochs per side (first is warm-up), "
          f"interleaved; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    sides = make_sides(wanted, args.steps)
    med = run_interleaved(sides, args.epochs, args.steps)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print()
    print("| masked LSTM(64), 32x200, adam | polykeras-torch path | polykeras ms/step | plain torch ms/step "
          "| plain / polykeras (>= 0.9) |")
    print("|---|---|---|---|---|")
    for name, label in (("left", "left-padded (pad_sequences default)"), ("right", "right-padded"),
                        ("loop", "left-padded, mask reading off (the loop, before)")):
        pk, pl = med.get(f"polykeras-{name}"), med.get(f"plain-{name}" if name != "loop" else "plain-left")
        if pk is None:
            continue
        path = ", ".join(sorted(sides[f"polykeras-{name}"].paths)) or "-"
        print(f"| {label} | {path} | {cell(pk)} | {cell(pl)} | {cell(ratio(pl, pk), '{:.2f}x')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
