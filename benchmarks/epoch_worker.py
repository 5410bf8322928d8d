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
