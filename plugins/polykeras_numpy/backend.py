"""The NumPy reference backend: the executable specification.

:class:`NumpyProgram` runs a spec layer by layer with the reference kernels
(:mod:`polykeras_numpy.layers`), then the loss, regularization penalties and
the optimizer update (:mod:`.losses`, :mod:`.optimizers`), exactly as the
core documents them. Dropout always uses the core's parity masks, so any
other backend in parity mode can be compared with it step by step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from polykeras import random as _random
from polykeras.program import Backend, Gradients, MeanAccumulator, Program
from polykeras.spec import ModelSpec, TrainingSpec
from polykeras_numpy import losses, metrics, optimizers
from polykeras_numpy.layers import KERNELS, ForwardContext


def kernel_class(kind: str):
    """The reference kernel of ``kind``: built in, or a plugin layer's ``reference_kernel``."""
    if kind in KERNELS:
        return KERNELS[kind]
    from polykeras.plugins import plugin_layers

    layer = plugin_layers().get(kind)
    kernel = getattr(layer, "reference_kernel", None)
    if kernel is None:
        raise NotImplementedError(f"the numpy backend has no kernel for layer kind {kind!r}")
    return kernel


class NumpyBackend(Backend):
    name = "numpy"
    layer_kinds = frozenset(KERNELS)
    optimizer_kinds = frozenset(optimizers.OPTIMIZERS)
    loss_kinds = frozenset(losses.LOSSES)
    metric_kinds = frozenset(metrics.METRICS)

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        if device != "cpu":
            raise ValueError(f"the numpy backend runs on 'cpu' only, not {device!r}")
        super().__init__(device, dtype)

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> "NumpyProgram":
        return NumpyProgram(self, spec, weights, training)


class NumpyProgram(Program):
    def __init__(self, backend: NumpyBackend, spec: ModelSpec, weights: Sequence[np.ndarray],
                 training: TrainingSpec | None):
        self.backend = backend
        self.spec = spec
        self.dtype = np.dtype(backend.dtype)
        self.kernels = [kernel_class(layer.kind)(layer, self.dtype) for layer in spec.layers]
        self.weights: list[list[np.ndarray]] = []  # per layer, canonical order
        self.set_weights(weights)
        self.training = training
        self.iterations = 0
        if training is not None:
            self.loss_fn = losses.get(training.loss)
            self.metric_fns = [metrics.get(kind) for _, kind in training.metrics]
            self.optimizer = optimizers.create(training.optimizer, self._trainable())
            self.accumulator = MeanAccumulator(["loss"] + [name for name, _ in training.metrics])

    # -- weights ----------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for layer in self.weights for w in layer]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        flat = iter(weights)
        self.weights = [[np.array(next(flat), dtype=self.dtype) for _ in layer.weights] for layer in self.spec.layers]

    def _trainable(self) -> list[np.ndarray]:
        """Trainable weight arrays (live, updated in place), in spec order."""
        return [w for layer, ws in zip(self.spec.layers, self.weights)
                for spec, w in zip(layer.weights, ws) if spec.trainable]

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = float(value)

    # -- forward and backward ------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool, step_seed: int | None):
        values = {self.spec.inputs[0].name: x}
        caches, contexts = [], []
        for index, (layer, kernel) in enumerate(zip(self.spec.layers, self.kernels)):
            mask_fn = None
            if step_seed is not None:
                def mask_fn(shape, rate, stream, _index=index):
                    return _random.dropout_mask(step_seed, _index, stream, shape, rate, self.dtype)
            ctx = ForwardContext(training, mask_fn)
            y, cache = kernel.forward(self.weights[index], values[layer.inbound[0]], ctx)
            values[layer.name] = y
            caches.append(cache)
            contexts.append(ctx)
        return values[self.spec.outputs[0]], caches, contexts

    def _backward(self, caches, d_output: np.ndarray):
        """Gradients of every weight (``None`` for non-trainable) and of the input."""
        grads: dict[str, np.ndarray] = {self.spec.outputs[0]: d_output}
        weight_grads: list[list[np.ndarray | None]] = [[] for _ in self.spec.layers]
        for index in reversed(range(len(self.spec.layers))):
            layer, kernel = self.spec.layers[index], self.kernels[index]
            dy = grads.pop(layer.name, None)
            if dy is None:  # the layer does not reach the output
                weight_grads[index] = [None if not w.trainable else np.zeros(w.shape, self.dtype) for w in layer.weights]
                continue
            dx, dws = kernel.backward(self.weights[index], caches[index], dy)
            weight_grads[index] = list(dws)
            if dx is not None:
                source = layer.inbound[0]
                grads[source] = dx if source not in grads else grads[source] + dx
        return weight_grads, grads.get(self.spec.inputs[0].name)

    def _loss_and_gradients(self, x, y, training: bool, step_seed: int | None):
        output, caches, contexts = self._forward(x, training, step_seed)
        loss, d_output = self.loss_fn(y, output)
        weight_grads, d_input = self._backward(caches, d_output)
        loss = loss + self._regularization(weight_grads)
        return loss, output, weight_grads, d_input, contexts

    def _regularization(self, weight_grads=None):
        """Keras's L1/L2 penalty of all regularised weights; with
        ``weight_grads``, its gradient is also added to them in place."""
        penalty = self.dtype.type(0)
        for index, (layer, ws) in enumerate(zip(self.spec.layers, self.weights)):
            for j, (spec, w) in enumerate(zip(layer.weights, ws)):
                if not spec.regularizer or not spec.trainable:
                    continue
                l1 = self.dtype.type(spec.regularizer.get("l1", 0.0))
                l2 = self.dtype.type(spec.regularizer.get("l2", 0.0))
                penalty += l1 * np.abs(w).sum() + l2 * np.square(w).sum()
                if weight_grads is not None:
                    weight_grads[index][j] = weight_grads[index][j] + l1 * np.sign(w) + 2 * l2 * w
        return penalty

    # -- the Program interface ----------------------------------------------------------
    def train_step(self, x, y, step_seed: int) -> None:
        loss, output, weight_grads, _, contexts = self._loss_and_gradients(x, y, True, step_seed)
        grads = [g for layer, gs in zip(self.spec.layers, weight_grads)
                 for spec, g in zip(layer.weights, gs) if spec.trainable]
        self.optimizer.apply(self._trainable(), grads)
        self.iterations += 1
        for ws, ctx in zip(self.weights, contexts):
            for j, value in ctx.assignments.items():
                ws[j] = value.astype(self.dtype, copy=False)
        self.accumulator.add([loss] + [m(y, output) for m in self.metric_fns], len(x))

    def test_step(self, x, y) -> None:
        output, _, _ = self._forward(x, False, None)
        loss = self.loss_fn(y, output)[0] + self._regularization()
        self.accumulator.add([loss] + [m(y, output) for m in self.metric_fns], len(x))

    def predict_step(self, x) -> np.ndarray:
        return self._forward(x, False, None)[0]

    def results(self) -> dict[str, float]:
        return self.accumulator.results()

    def reset_metrics(self) -> None:
        self.accumulator.reset()

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        loss, _, weight_grads, d_input, _ = self._loss_and_gradients(x, y, training, step_seed)
        return Gradients(float(loss), [g for gs in weight_grads for g in gs], d_input)
