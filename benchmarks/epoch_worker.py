"""A benchmark side in a child process, driven one epoch per request over a pipe: Keras 3
fixes its backend at import, so each Keras side runs in a process of its own. The parent
writes ``epoch``; the child answers ``[seconds, mean loss]`` as one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys


class EpochWorker:
    """``python script *args`` with ``env`` added, which must call :func:`serve` (the ``ready`` line
    it prints carries the framework's version, kept as ``self.version``)."""

    def __init__(self, script: str, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, script, *args], env={**os.environ, **env},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline()
        if not ready.startswith("ready"):
            raise RuntimeError(f"the benchmark worker did not start: {ready!r}")
        self.version = ready.split()[1]

    def epoch(self) -> tuple[float, float]:
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        seconds, loss = json.loads(self.proc.stdout.readline())
        return seconds, loss

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve(side, version: str) -> None:
    """The child's loop: announce ``version``, then run one ``side.epoch()`` per request."""
    print("ready", version, flush=True)
    for line in sys.stdin:
        if line.strip() == "epoch":
            print(json.dumps(side.epoch()), flush=True)


def run_interleaved(sides: dict, epochs: int, steps: int) -> dict[str, float]:
    """Run every side's ``epoch()`` ``epochs`` times, interleaved epoch by epoch (the order
    rotates), print each side's median ms/step (the first epoch, a warm-up, left out) and
    return the medians. Worker sides are closed at the end."""
    import statistics

    times = {k: [] for k in sides}
    losses = {k: [] for k in sides}
    order = list(sides)
    try:
        for epoch in range(epochs):
            for key in order[epoch % len(order):] + order[:epoch % len(order)]:
                seconds, loss = sides[key].epoch()
                times[key].append(seconds)
                losses[key].append(loss)
    finally:
        for side in sides.values():
            if isinstance(side, EpochWorker):
                side.close()
    versions = {k: s.version for k, s in sides.items() if isinstance(s, EpochWorker)}
    ms = {k: [1000 * s / steps for s in v[1:]] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in ms.items() if v}
    for k, v in ms.items():
        if v:
            print(f"  {k}: median {med[k]:.3f} ms/step (min {min(v):.3f}, max {max(v):.3f}), warm-up epoch "
                  f"{times[k][0]:.2f} s, last epoch loss {losses[k][-1]:.4f}"
                  + (f" [keras {versions[k]}]" if k in versions else ""))
    return med


def cell(value, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def ratio(a, b):
    return None if a is None or b is None else a / b


def plain_torch_loop(net, loss_name: str):
    """The conformance suite's native torch epoch (``Loop.fit_epochs``, what a plain PyTorch user's loop
    does) on a hand-written ``nn.Module`` ``net`` that returns logits, with Keras's Adam settings;
    ``Loop.__init__`` builds chains only, so the loop's attributes are set here."""
    import torch

    from polykeras_conformance.native import torch_loop

    class Plain(torch_loop.Loop):
        def __init__(self):
            self.device, self.loss_name = torch.device("cpu"), loss_name
            self.net, self.logits, self.channels_first = net, True, False
            self.losses = []
            self.opt = torch.optim.Adam(self.net.parameters(), 1e-3, betas=(0.9, 0.999), eps=1e-7)

        def inference_loss(self, x, y) -> float:
            self.net.eval()
            xb, yb = self.tensors(x, y)
            with torch.no_grad():
                loss = self._loss_and_correct(self.net(xb), yb)[0]
            self.net.train()
            return float(loss)

    return Plain()
