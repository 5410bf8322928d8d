"""The keras.io programs of ``examples/`` (bidirectional LSTM and transformer classifier on IMDB,
convolutional denoising autoencoder on MNIST), each run as a user runs it -- ``python
examples/<program>.py`` with ``POLYKERAS_BACKEND`` set -- on a few hundred real samples
(``../shared/datasets``): it must finish, and its training loss must be finite and lower after the last
epoch than after the first. torch, the quickest, runs each program in the default suite; numpy, jax and
keras-jax (a Keras worker process) are marked slow. The accuracy on the full data, against Keras 3's
on the same program, is measured by hand (recorded in ``benchmarks/README.md``), not here.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# small runs: enough epochs over the same few samples that the training loss falls
PROGRAMS = {
    "imdb_bidirectional_lstm": ["--limit", "128", "--maxlen", "40", "--epochs", "3"],
    "imdb_transformer": ["--limit", "128", "--maxlen", "40", "--epochs", "4"],
    "mnist_denoising_autoencoder": ["--limit", "256", "--epochs", "2"],  # two epochs per phase
}
QUICK_BACKEND = "torch"
BACKENDS = ("numpy", "torch", "jax", "keras-jax")


def run_program(name: str, backend: str, args: list[str]) -> dict:
    """Run ``examples/<name>.py`` on ``backend``; the numbers of the ``final:`` line it prints."""
    env = {**os.environ, "POLYKERAS_BACKEND": backend, "PYTHONWARNINGS": "ignore::UserWarning"}
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{name} on {backend} failed:\n{done.stderr[-3000:]}"
    final = next(line for line in done.stdout.splitlines() if line.startswith("final:"))
    losses = [float(v) for v in re.search(r"losses \[([^\]]*)\]", final).group(1).split(",")]
    numbers = dict(re.findall(r"(\w+) (-?[\d.]+(?:e-?\d+)?)(?= |$)", final.replace("final: ", "")))
    return {"losses": losses, **{k: float(v) for k, v in numbers.items()}}


@pytest.mark.parametrize("backend", [pytest.param(b, marks=() if b == QUICK_BACKEND else pytest.mark.slow)
                                     for b in BACKENDS])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_the_keras_io_program_trains(name, backend, real_data):
    result = run_program(name, backend, PROGRAMS[name])
    losses = result["losses"]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(result["val_loss"]), result
    assert losses[-1] < losses[0], f"{name} on {backend}: the training loss did not fall: {losses}"
    if "val_accuracy" in result:
        assert 0.0 <= result["val_accuracy"] <= 1.0
