"""The NumPy reference backend: the executable specification.

:class:`NumpyProgram` runs a spec's graph node by node with the reference
kernels (:mod:`polykeras_numpy.layers`), then the loss, regularization
penalties and the optimizer update (:mod:`.losses`, :mod:`.optimizers`),
exactly as the core documents them. Dropout always uses the core's parity
masks, so any other backend in parity mode can be compared with it step by
step.

The backward pass walks the nodes in reverse: where a tensor feeds several
nodes (fan-out) its gradients are summed, and the weight gradients of a
shared layer's nodes are summed into the node that owns the weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from polykeras import random as _random
from polykeras.metrics.statistics import SummedStatistics, is_summed, ordered
from polykeras.program import Backend, Gradients, MeanAccumulator, OptimizerState, Program, output_weights
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


def _trainable_upstream(spec: ModelSpec) -> dict[str, bool]:
    """For the inputs and every node's output: whether a trainable weight lies
    upstream of it, i.e. whether back-propagating past it matters for the
    weight gradients."""
    upstream = {inp.name: False for inp in spec.inputs}
    for i, layer in enumerate(spec.layers):  # topological order
        upstream[layer.name] = (any(upstream[name] for name in layer.inbound)
                                or any(w.trainable for w in spec.node_weights(i)))
    return upstream


class NumpyBackend(Backend):
    name = "numpy"
    graph_features = frozenset({"multiple_inputs", "multiple_outputs", "shared_layers", "masking",
                                "inference_nodes", "added_losses"})
    training_features = frozenset({"sample_weight", "per_output_sample_weight", "optimizer_state",
                                   "metric_statistics", "metric_weight"})
    layer_kinds = frozenset(KERNELS)
    optimizer_kinds = frozenset(optimizers.OPTIMIZERS)
    loss_kinds = frozenset(losses.LOSSES) | {"function"}
    metric_kinds = frozenset(metrics.METRICS)
    #: Replacement kernels / optimizer rules by kind: how a subclass (a
    #: faster variant, or the conformance suite's deliberately broken ones)
    #: swaps one piece and keeps the rest of the reference.
    kernel_overrides: dict = {}
    optimizer_overrides: dict = {}

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
        self.kernels = [backend.kernel_overrides.get(layer.kind, kernel_class(layer.kind))(layer, self.dtype)
                        for layer in spec.layers]
        self._trainable_upstream = _trainable_upstream(spec)
        self.owners = spec.weight_owners
        self.weights: list[list[np.ndarray]] = []  # per layer, canonical order
        self.set_weights(weights)
        self.training = training
        self.iterations = 0
        if training is not None:
            # (loss, weight) per output: one for a single output, Keras's weighted sum over several
            self.several = bool(training.outputs)
            self.objectives = [(losses.get(p.loss), getattr(p, "weight", 1.0)) for p in training.outputs or [training]]
            self.optimizer = optimizers.create(training.optimizer, self._trainable(), backend.optimizer_overrides)
            # (output index, function): plain mean metrics give batch means, the others statistics to sum
            means = [(i, m) for i, m in training.all_metrics if not is_summed(m)]
            summed = [(i, m) for i, m in training.all_metrics if is_summed(m)]
            self.mean_metrics = [(i, metrics.get(m)) for i, m in means]
            self.summed_metrics = [(i, metrics.get_statistics(m)) for i, m in summed]
            self.accumulator = MeanAccumulator(["loss"] + [o.log_name for o in training.outputs]
                                               + [m.name for _, m in means])
            self.statistics = SummedStatistics([m for _, m in summed])

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

    def get_optimizer_state(self) -> OptimizerState:
        return OptimizerState(self.iterations, self.optimizer.get_slots())

    def set_optimizer_state(self, state: OptimizerState) -> None:
        self.optimizer.set_slots(state.slots)
        self.iterations = self.optimizer.iterations = int(state.iterations)

    # -- forward and backward ------------------------------------------------------
    def _mask_fn(self, step_seed: int, index: int):
        """Layer ``index``'s dropout masks for this step (see :mod:`polykeras.random`)."""
        def mask_fn(shape, rate, stream):
            return _random.dropout_mask(step_seed, index, stream, shape, rate, self.dtype)
        return mask_fn

    def _forward(self, x, training: bool, step_seed: int | None):
        """The outputs (one array, or a tuple for several) and what the backward pass needs."""
        xs = x if isinstance(x, tuple) else (x,)
        values = {inp.name: value for inp, value in zip(self.spec.inputs, xs)}
        caches, contexts = [], []
        for index, (layer, kernel) in enumerate(zip(self.spec.layers, self.kernels)):
            ctx = ForwardContext(layer.node_training(training),
                                 None if step_seed is None else self._mask_fn(step_seed, index),
                                 None if layer.mask is None else values[layer.mask])
            args = [values[name] for name in layer.inbound]
            y, cache = kernel.forward(self.weights[self.owners[index]], args if kernel.multiple_inputs else args[0],
                                      ctx)
            values[layer.name] = y
            caches.append(cache)
            contexts.append(ctx)
        outputs = tuple(values[name] for name in self.spec.outputs)
        return (outputs if len(outputs) > 1 else outputs[0]), caches, contexts

    def _backward(self, caches, d_outputs, input_grad: bool):
        """Gradients of every weight (``None`` for non-trainable) and, with
        ``input_grad``, of the inputs (else ``None``); ``d_outputs`` has one
        entry per model output.

        Without ``input_grad`` a node's input gradient is computed only where
        a trainable weight lies upstream of it; the other nodes (the first
        Dense or Conv of most models) compute only their weight gradients,
        which skips one matrix product as large as their forward pass.
        """
        grads: dict[str, np.ndarray] = {}
        for name, d in zip(self.spec.outputs, d_outputs):
            grads[name] = d if name not in grads else grads[name] + d
        weight_grads: list[list[np.ndarray | None]] = [[None] * len(layer.weights) for layer in self.spec.layers]
        for index in reversed(range(len(self.spec.layers))):
            layer, kernel = self.spec.layers[index], self.kernels[index]
            dy = grads.pop(layer.name, None)
            if dy is None:  # the node does not reach an output, or no weight needs its dy
                continue
            owner = self.owners[index]
            weights = self.weights[owner]
            sources = layer.inbound
            if not (input_grad or any(self._trainable_upstream[s] for s in sources)):
                dws = kernel.backward_weights(weights, caches[index], dy)
            else:
                dx, dws = kernel.backward(weights, caches[index], dy)
                dxs = dx if kernel.multiple_inputs else [dx]
                for source, d in zip(sources, dxs):
                    if d is not None:
                        grads[source] = d if source not in grads else grads[source] + d
            for j, g in enumerate(dws):  # a shared layer's calls add up in the owner's gradients
                if g is not None:
                    total = weight_grads[owner][j]
                    weight_grads[owner][j] = g if total is None else total + g
        for layer, gs in zip(self.spec.layers, weight_grads):  # zeros where no call reached an output
            for j, w in enumerate(layer.weights):
                gs[j] = (gs[j] if gs[j] is not None else np.zeros(w.shape, self.dtype)) if w.trainable else None
        d_inputs = tuple(grads.get(inp.name) for inp in self.spec.inputs)
        return weight_grads, (d_inputs if len(d_inputs) > 1 else d_inputs[0])

    def _pairs(self, y, output):
        """Targets and outputs paired per output."""
        return zip(y, output) if self.several else [(y, output)]

    def _loss(self, y, output, sample_weight=None):
        """The loss (for several outputs Keras's sum of weight x loss, in output order, each
        output's loss with its own sample weights), its gradient with respect to each output,
        and each output's loss before its loss weight."""
        total, d_outputs, parts = None, [], []
        weights = output_weights(sample_weight, len(self.objectives))
        for (loss_fn, weight), (yi, oi), wi in zip(self.objectives, self._pairs(y, output), weights):
            value, d = loss_fn(yi, oi, wi)
            parts.append(value)
            if weight != 1.0:
                value, d = value * weight, d * weight
            total = value if total is None else total + value
            d_outputs.append(d)
        return total, d_outputs, parts

    def _logs(self, loss, parts, y, output, sample_weight=None, metric_weight=None) -> None:
        """Accumulate ``[loss, (each output's loss,) each mean metric]`` and the summed metrics'
        statistics (a metric of output ``i`` with output ``i``'s sample weights, or with its own
        ``metric_weight`` entry when the step has them)."""
        pairs = list(self._pairs(y, output))
        values = [loss] + (parts if self.several else [])
        values += [m(*pairs[i]) for i, m in self.mean_metrics]
        self.accumulator.add(values, _batch(y))
        weights = output_weights(sample_weight, len(pairs))
        own = metric_weight if metric_weight is not None else [weights[i] for i, _ in self.summed_metrics]
        self.statistics.add([m(*pairs[i], w) for (i, m), w in zip(self.summed_metrics, own)])

    def _loss_and_gradients(self, x, y, training: bool, step_seed: int | None, input_grad: bool = False,
                            sample_weight=None):
        output, caches, contexts = self._forward(x, training, step_seed)
        loss, d_outputs, parts = self._loss(y, output, sample_weight)
        weight_grads, d_input = self._backward(caches, d_outputs, input_grad)
        loss = loss + self._regularization(weight_grads) + _added_losses(contexts)
        return loss, output, weight_grads, d_input, contexts, parts

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
    def train_step(self, x, y, step_seed: int, sample_weight=None, metric_weight=None) -> None:
        loss, output, weight_grads, _, contexts, parts = self._loss_and_gradients(x, y, True, step_seed,
                                                                                  sample_weight=sample_weight)
        grads = [g for layer, gs in zip(self.spec.layers, weight_grads)
                 for spec, g in zip(layer.weights, gs) if spec.trainable]
        self.optimizer.apply(self._trainable(), grads)
        self.iterations += 1
        for owner, ctx in zip(self.owners, contexts):
            for j, value in ctx.assignments.items():
                self.weights[owner][j] = value.astype(self.dtype, copy=False)
        self._logs(loss, parts, y, output, sample_weight, metric_weight)

    def test_step(self, x, y, sample_weight=None, metric_weight=None) -> None:
        output, _, contexts = self._forward(x, False, None)
        loss, _, parts = self._loss(y, output, sample_weight)
        self._logs(loss + self._regularization() + _added_losses(contexts), parts, y, output, sample_weight,
                   metric_weight)

    def predict_step(self, x) -> np.ndarray:
        return self._forward(x, False, None)[0]

    def results(self) -> dict[str, float]:
        return ordered(self.training.log_names, self.accumulator.results(), self.statistics.results())

    def reset_metrics(self) -> None:
        self.accumulator.reset()
        self.statistics.reset()

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        loss, _, weight_grads, d_input, _, _ = self._loss_and_gradients(x, y, training, step_seed, input_grad=True)
        return Gradients(float(loss), [g for gs in weight_grads for g in gs], d_input)


def _added_losses(contexts) -> float:
    """The layers' ``add_loss`` terms of one forward pass (ActivityRegularization), 0 without any."""
    return sum(value for ctx in contexts for value in ctx.losses)


def _batch(y) -> int:
    return len(y[0]) if isinstance(y, tuple) else len(y)
