"""The example backend: compiles a model spec into an :class:`ExampleProgram`.

The core decides everything that must be the same on every backend -- the
initial weights (passed to :meth:`ExampleBackend.compile`), the data order,
the batches, the step seeds and the dropout masks -- and the program does the
math: forward through the layers in spec order, the loss, the backward pass
in reverse order, the L1/L2 penalties and the optimizer update.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np

from polykeras.program import Backend, Gradients, MeanAccumulator, Program
from polykeras.random import dropout_mask
from polykeras.spec import ModelSpec, TrainingSpec

from . import LAYER_KINDS, losses, optimizers
from .layers import LAYERS


def lookup(table: dict, kind: str, what: str):
    """``table[kind]``, or a ``NotImplementedError`` that says what is missing.
    Raised while compiling, it is what the core shows the user and what the
    conformance suite counts as *unsupported* rather than failed."""
    if kind not in table:
        raise NotImplementedError(f"the example backend does not implement {what} {kind!r}; it has {', '.join(table)}")
    return table[kind]


class ExampleBackend(Backend):
    """The ``example`` backend: NumPy on the CPU (``BackendInfo.devices`` left at
    its default, ``["cpu"]``), float32 or float64. The core refuses a model with a
    layer kind outside ``layer_kinds`` before compiling it, naming the kind."""

    name = "example"
    layer_kinds = LAYER_KINDS
    optimizer_kinds = frozenset(optimizers.OPTIMIZERS)
    loss_kinds = frozenset(losses.LOSSES)
    metric_kinds = frozenset(losses.METRICS)

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> "ExampleProgram":
        # NumPy draws the core's parity masks as fast as any of its own, so the
        # program always uses them and ``parity`` changes nothing here.
        return ExampleProgram(self, spec, weights, training)


class ExampleProgram(Program):
    """A compiled model with its live weights (one list per layer, canonical layout)."""

    def __init__(self, backend: ExampleBackend, spec: ModelSpec, weights: Sequence[np.ndarray],
                 training: TrainingSpec | None):
        self.backend = backend
        self.spec = spec
        self.dtype = np.dtype(backend.dtype)
        self.layers = [lookup(LAYERS, layer.kind, "layer kind")(layer) for layer in spec.layers]
        self.set_weights(weights)
        #: (layer index, weight index) of every trainable weight, in spec order
        self.trainable = [(i, j) for i, layer in enumerate(spec.layers) for j in layer.trainable_indices]
        self.iterations = 0
        if training is not None:  # unsupported kinds raise NotImplementedError here, at compile time
            self.loss = partial(lookup(losses.LOSSES, training.loss["kind"], "loss"), **training.loss["config"])
            for m in training.metrics:  # stateful kinds and weighted_metrics need summed statistics: not here
                if m.weighted or m.kind not in losses.METRICS:
                    raise NotImplementedError(
                        f"the example backend does not implement metric {m.name!r} (kind {m.kind!r}"
                        f"{', in weighted_metrics' if m.weighted else ''}); it has unweighted "
                        f"{', '.join(losses.METRICS)}")
            self.metrics = [lookup(losses.METRICS, m.kind, "metric") for m in training.metrics]
            optimizer = training.optimizer
            self.optimizer = lookup(optimizers.OPTIMIZERS, optimizer["kind"], "optimizer")(optimizer["config"])
            # sums NumPy scalars per step; floats only when the trainer asks for results()
            self.accumulator = MeanAccumulator(["loss"] + [m.name for m in training.metrics])

    # -- weights --------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for ws in self.weights for w in ws]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        flat = iter(weights)
        self.weights = [[np.array(next(flat), dtype=self.dtype) for _ in layer.weights] for layer in self.spec.layers]

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = float(value)

    # -- forward, backward, loss ------------------------------------------------------
    def _forward(self, x, training: bool, step_seed: int | None):
        values = {self.spec.inputs[0].name: np.asarray(x, dtype=self.dtype)}
        caches = []
        for index, (spec, layer) in enumerate(zip(self.spec.layers, self.layers)):
            def mask(shape, rate, stream, index=index):  # the core's mask for this layer and step
                return dropout_mask(step_seed, index, stream, shape, rate, self.dtype)

            values[spec.name], cache = layer.forward(self.weights[index], values[spec.inbound[0]], training, mask)
            caches.append(cache)
        return values[self.spec.outputs[0]], caches

    def _backward(self, caches, d_output):
        """Reverse mode: gradients of every weight (per layer) and of the input."""
        grads = {self.spec.outputs[0]: d_output}  # d loss / d (output of the named layer or input)
        weight_grads = [[np.zeros_like(w) for w in ws] for ws in self.weights]
        for index in reversed(range(len(self.layers))):
            spec = self.spec.layers[index]
            dy = grads.pop(spec.name, None)
            if dy is None:  # this layer does not lead to the output
                continue
            dx, weight_grads[index] = self.layers[index].backward(self.weights[index], caches[index], dy)
            source = spec.inbound[0]
            grads[source] = grads[source] + dx if source in grads else dx
        return weight_grads, grads.get(self.spec.inputs[0].name)

    def _penalty(self, weight_grads=None):
        """Keras's L1/L2 penalty ``l1*sum|w| + l2*sum(w^2)`` of every regularised
        weight, once per step; with ``weight_grads``, adds its gradient to them."""
        total = 0.0
        for i, j in self.trainable:
            reg, w = self.spec.layers[i].weights[j].regularizer, self.weights[i][j]
            if reg:
                l1, l2 = reg.get("l1", 0.0), reg.get("l2", 0.0)
                total += l1 * np.abs(w).sum() + l2 * np.square(w).sum()
                if weight_grads is not None:
                    weight_grads[i][j] += l1 * np.sign(w) + 2 * l2 * w
        return total

    def _loss_and_gradients(self, x, y, training: bool, step_seed: int | None):
        output, caches = self._forward(x, training, step_seed)
        loss, d_output = self.loss(y, output)
        weight_grads, d_input = self._backward(caches, d_output)
        return loss + self._penalty(weight_grads), output, weight_grads, d_input

    # -- the Program interface ----------------------------------------------------------
    def train_step(self, x, y, step_seed: int) -> None:
        loss, output, grads, _ = self._loss_and_gradients(x, y, True, step_seed)
        self.optimizer.apply([self.weights[i][j] for i, j in self.trainable],
                             [grads[i][j] for i, j in self.trainable])
        self.iterations += 1
        self.accumulator.add([loss] + [metric(y, output) for metric in self.metrics], len(y))

    def test_step(self, x, y) -> None:
        output, _ = self._forward(x, False, None)
        loss = self.loss(y, output)[0] + self._penalty()
        self.accumulator.add([loss] + [metric(y, output) for metric in self.metrics], len(y))

    def predict_step(self, x) -> np.ndarray:
        return self._forward(x, False, None)[0]

    def results(self) -> dict[str, float]:
        return self.accumulator.results()

    def reset_metrics(self) -> None:
        self.accumulator.reset()

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        loss, _, grads, d_input = self._loss_and_gradients(x, y, training, step_seed)
        trainable = set(self.trainable)
        flat = [g if (i, j) in trainable else None for i, gs in enumerate(grads) for j, g in enumerate(gs)]
        return Gradients(float(loss), flat, d_input)
