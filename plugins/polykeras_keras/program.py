""":class:`WorkerProgram`: the user's handle on a program that lives in a
Keras worker process (:mod:`.worker`).

Every :class:`~polykeras.program.Program` call is one message to the worker
and one reply: a training step sends its batch and gets nothing back but an
acknowledgement (the loss and metrics stay in Keras's metric variables until
:meth:`results` asks for them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from polykeras.program import Gradients, Program
from polykeras.spec import ModelSpec, TrainingSpec

from .worker import Worker


class WorkerProgram(Program):
    def __init__(self, backend, worker: Worker, spec: ModelSpec, weights: Sequence[np.ndarray],
                 training: TrainingSpec | None, parity: bool):
        self.backend, self.spec, self.worker = backend, spec, worker
        self.id = worker.new_id()
        self._steps = 0
        worker.call("compile", self.id, spec, [np.asarray(w) for w in weights], training, backend.dtype, parity)

    def __del__(self):
        try:
            self.worker.drop(self.id)  # sent with the worker's next call: never blocks here
        except Exception:  # interpreter shutdown
            pass

    def _call(self, op: str, *args):
        return self.worker.call(op, self.id, *args)

    @property
    def iterations(self) -> int:
        return self._steps

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._steps = value

    def train_step(self, x, y, step_seed: int, sample_weight=None) -> None:
        self._call("train_step", x, y, int(step_seed), sample_weight)
        self._steps += 1

    def train_steps(self, xs, ys, step_seeds, sample_weights=None) -> None:
        seeds = [int(s) for s in step_seeds]
        self._call("train_steps", xs, ys, seeds, sample_weights)
        self._steps += len(seeds)

    def test_step(self, x, y, sample_weight=None) -> None:
        self._call("test_step", x, y, sample_weight)

    def predict_step(self, x) -> np.ndarray:
        return self._call("predict_step", x)

    def results(self) -> dict[str, float]:
        return self._call("results")

    def reset_metrics(self) -> None:
        self._call("reset_metrics")

    def get_weights(self) -> list[np.ndarray]:
        return self._call("get_weights")

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._call("set_weights", [np.asarray(w) for w in weights])

    def set_learning_rate(self, value: float) -> None:
        self._call("set_learning_rate", float(value))

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        return self._call("value_and_grad", x, y, int(step_seed), bool(training))

