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
        self.training, self.parity = training, parity
        self.num_replicas = 1
        self._steps = 0
        self._compile(worker, weights)

    def _compile(self, worker: Worker, weights) -> None:
        self.worker, self.id = worker, worker.new_id()
        worker.call("compile", self.id, self.spec, [np.asarray(w) for w in weights], self.training, self.backend.dtype,
                    self.parity)

    def distribute(self, replicas: int, worker: Worker) -> None:
        """Train data-parallel over ``worker``'s first ``replicas`` devices (keras-jax:
        :mod:`.distributed`); moved there first, with its weights, when it is another worker."""
        if worker is not self.worker:
            weights = self.get_weights()
            self.worker.drop(self.id)
            self._compile(worker, weights)
        self._call("distribute", int(replicas))
        self.num_replicas = int(replicas)

    def replica_devices(self) -> int:
        """On how many devices the worker holds the weights (keras-jax under a distribution: all)."""
        return self._call("replica_devices")

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

