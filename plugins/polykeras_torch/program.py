"""A spec compiled to torch: :class:`TorchProgram`.

One training step is one fused sequence of torch calls -- input to the
device, forward, loss (+ L1/L2 penalties), ``torch.autograd.grad``, the
optimizer's ``_foreach`` update, BatchNormalization's moving statistics --
with no copy back to the host: the loss and metrics are accumulated as
device tensors and read only when :meth:`TorchProgram.results` is called
(the trainer calls it when logs are needed).

Weights live as leaf tensors in each layer's native layout (see
:mod:`.layers.base`); ``get_weights`` / ``set_weights`` / gradients speak the
canonical Keras layout.

Dropout: in parity mode the masks are the core's host-drawn ones
(:func:`polykeras.random.dropout_mask`); otherwise torch draws them from a
generator reseeded from the step seed, so a run is still reproducible from
polykeras's seed without drawing anything on the host.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from polykeras.metrics.statistics import SummedStatistics, is_summed
from polykeras.program import Gradients, OptimizerState, Program, batch_of, output_weights, weighted_total
from polykeras.spec import ModelSpec, TrainingSpec

from . import losses, metrics, optimizers
from .logs import DeferredMeans
from .layers import LAYERS, StepContext, TorchLayer
from .layers.core import Embedding


def layer_class(kind: str) -> type[TorchLayer]:
    try:
        return LAYERS[kind]
    except KeyError:
        raise NotImplementedError(
            f"the torch backend has no implementation of layer kind {kind!r}; it implements {', '.join(LAYERS)}"
        ) from None


class TorchProgram(Program):
    def __init__(self, backend, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None,
                 *, parity: bool = False):
        self.backend = backend
        self.spec = spec
        self.parity = parity
        self.device, self.dtype = backend.torch_device, backend.torch_dtype
        self.np_dtype = np.dtype(backend.dtype)
        self.layers = [layer_class(layer.kind)(layer, i, self.dtype, self.device) for i, layer in enumerate(spec.layers)]
        self.input_names = [inp.name for inp in spec.inputs]
        self.params: list[list[torch.Tensor]] = []  # per node; a shared layer's later calls hold none
        self.set_weights(weights)
        # each node computes with its owner's parameters (itself, or a shared layer's first call)
        self.node_params = [self.params[owner] for owner in spec.weight_owners]
        self.trainable = [p for layer, ps in zip(spec.layers, self.params)
                          for w, p in zip(layer.weights, ps) if w.trainable]
        self.regularized = [(p, float(w.regularizer.get("l1", 0.0)), float(w.regularizer.get("l2", 0.0)))
                            for layer, ps in zip(spec.layers, self.params)
                            for w, p in zip(layer.weights, ps) if w.regularizer and w.trainable]
        # Layers reading a model input: Embeddings check their ids there, on
        # the host; differentiable ones make the input's gradient meaningful.
        readers = [[t for t, layer in zip(self.layers, spec.layers) if name in layer.inbound]
                   for name in self.input_names]
        self.id_checks = [[t for t in ts if isinstance(t, Embedding)] for ts in readers]
        self.input_differentiable = [all(t.differentiable_input for t in ts) for ts in readers]
        self.generator = None
        if any(getattr(t.ref, name, 0) for t in self.layers for name in ("rate", "dropout", "recurrent_dropout")):
            self.generator = torch.Generator(device=self.device)
        self._forward = self._forward_eager
        if backend.compile_forward:
            self._forward = torch.compile(self._forward_eager, dynamic=False)
        self.training = training
        self.iterations = 0
        self.replicas = None  # a distributed.Replicas once replicated (data-parallel)
        self.num_replicas = 1
        if training is not None:
            # (loss, weight) per output: one for a single output, Keras's weighted sum over several
            self.several = bool(training.outputs)
            parts = training.outputs or [training]
            self.objectives = [(losses.get(p.loss), getattr(p, "weight", 1.0)) for p in parts]
            self.optimizer = optimizers.create(training.optimizer, self.trainable)
            means = [(i, m) for i, m in training.all_metrics if not is_summed(m)]
            summed = [(i, m) for i, m in training.all_metrics if is_summed(m)]
            self.logs = DeferredMeans(["loss"] + [o.log_name for o in training.outputs] + [m.name for _, m in means],
                                      [(i, metrics.get(m)) for i, m in means],
                                      summed=[(i, metrics.get_statistics(m)) for i, m in summed],
                                      statistics=SummedStatistics([m for _, m in summed], _to_numpy),
                                      log_names=training.log_names)

    # -- weights ---------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        out = []
        for layer, params in zip(self.layers, self.params):
            if params:
                out += layer.to_canonical([p.detach().cpu().numpy().copy() for p in params])
        return out

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        expected = [w.shape for _, w in self.spec.weight_specs]
        if len(weights) != len(expected):
            raise ValueError(f"model {self.spec.name!r} has {len(expected)} weight arrays, got {len(weights)}")
        for i, (w, shape) in enumerate(zip(weights, expected)):
            if tuple(np.shape(w)) != tuple(shape):
                raise ValueError(f"weight {i} of model {self.spec.name!r} must have shape {tuple(shape)}, "
                                 f"got {np.shape(w)}")
        flat = iter(weights)
        fresh = not self.params
        for index, (spec, layer) in enumerate(zip(self.spec.layers, self.layers)):
            if not spec.weights:  # no weights, or a later call of a shared layer
                if fresh:
                    self.params.append([])
                continue
            native = layer.to_native([np.asarray(next(flat), dtype=self.np_dtype) for _ in spec.weights])
            if fresh:
                self.params.append([
                    torch.tensor(a, dtype=self.dtype, device=self.device).requires_grad_(w.trainable)
                    for a, w in zip(native, spec.weights)])
            else:
                with torch.no_grad():
                    for p, a in zip(self.params[index], native):
                        p.copy_(torch.from_numpy(np.array(a, order="C")))

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate = float(value)

    def _canonical_trainable(self, native: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Tensors shaped like the trainable parameters (native layout, spec order) in canonical layout."""
        tensors, out = iter(native), []
        for spec, layer, params in zip(self.spec.layers, self.layers, self.params):
            if not any(w.trainable for w in spec.weights):
                continue
            full = [next(tensors) if w.trainable else p for w, p in zip(spec.weights, params)]
            canonical = layer.to_canonical([t.detach().cpu().numpy().copy() for t in full])
            out += [c for w, c in zip(spec.weights, canonical) if w.trainable]
        return out

    def _native_trainable(self, canonical: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The inverse of :meth:`_canonical_trainable`."""
        arrays, out = iter(canonical), []
        for spec, layer in zip(self.spec.layers, self.layers):
            if not any(w.trainable for w in spec.weights):
                continue
            full = [np.asarray(next(arrays), self.np_dtype) if w.trainable else np.zeros(w.shape, self.np_dtype)
                    for w in spec.weights]
            out += [n for w, n in zip(spec.weights, layer.to_native(full)) if w.trainable]
        return out

    def get_optimizer_state(self) -> OptimizerState:
        return OptimizerState(self.iterations, {name: self._canonical_trainable(tensors)
                                                for name, tensors in self.optimizer.get_slots().items()})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        slots = self.optimizer.get_slots()
        with torch.no_grad():
            for name, values in state.slots.items():
                for tensor, value in zip(slots[name], self._native_trainable(values)):
                    tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        self.iterations = self.optimizer.iterations = int(state.iterations)

    # -- data ------------------------------------------------------------------------------
    def _inputs(self, x) -> tuple[torch.Tensor, ...]:
        """One tensor per model input (``x`` is a tuple for several)."""
        out = []
        for a, checks in zip(x if isinstance(x, tuple) else (x,), self.id_checks):
            a = np.asarray(a)
            for layer in checks:
                layer.check_ids(a)
            if a.dtype.kind == "f" and a.dtype != self.np_dtype:
                a = a.astype(self.np_dtype)
            out.append(self._to_device(a))
        return tuple(out)

    def _targets(self, y):
        """Float targets in the program's dtype, integer labels as int64 (what
        torch's indexing ops take); a tuple for several outputs. Always a private
        copy: the logs read the targets again when they are computed (see :mod:`.logs`)."""
        if isinstance(y, tuple):
            return tuple(self._targets(a) for a in y)
        y = np.asarray(y)
        dtype = np.int64 if y.dtype.kind in "iu" else self.np_dtype
        return self._to_device(np.array(y, dtype=dtype, order="C", copy=True))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """No copy on the CPU (``from_numpy`` shares the batch's memory);
        one asynchronous transfer per batch to an accelerator."""
        if not array.flags.c_contiguous or not array.flags.writeable:
            array = np.array(array, order="C")
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device, non_blocking=True)

    # -- the step ------------------------------------------------------------------------
    def _context(self, training: bool, step_seed: int | None, parity: bool) -> StepContext:
        if not training:
            return StepContext(False)
        replica = None if self.replicas is None else (self.replicas.world, self.replicas.rank)
        if parity:
            return StepContext(True, parity_seed=int(step_seed), replica=replica)
        if self.generator is not None:
            self.generator.manual_seed(int(step_seed) % 2**63)
        return StepContext(True, generator=self.generator, replica=replica)

    def _forward_eager(self, xs: tuple[torch.Tensor, ...], ctx: StepContext):
        """The output (a tuple for several) for one tensor per model input."""
        values = dict(zip(self.input_names, xs))
        for spec, layer, params in zip(self.spec.layers, self.layers, self.node_params):
            args = [values[name] for name in spec.inbound]
            ctx.mask = None if spec.mask is None else values[spec.mask]  # the Keras mask a node reads
            training, ctx.training = ctx.training, spec.node_training(ctx.training)  # a frozen BatchNormalization
            values[spec.name] = layer.forward(params, args if layer.multiple_inputs else args[0], ctx)
            ctx.training = training
        outputs = tuple(values[name] for name in self.spec.outputs)
        return outputs if len(outputs) > 1 else outputs[0]

    def _penalty(self) -> torch.Tensor | float:
        """Keras's L1/L2 penalty of the regularised weights (once per step,
        not scaled by the batch size)."""
        total: torch.Tensor | float = 0.0
        for w, l1, l2 in self.regularized:
            if l1:
                total = total + l1 * w.abs().sum()
            if l2:
                total = total + l2 * w.square().sum()
        return total

    def _loss(self, x: tuple[torch.Tensor, ...], y, ctx: StepContext, sample_weight=None):
        """The loss (for several outputs Keras's sum of weight x loss, each output's loss with
        its own sample weights, plus the penalty), the outputs and targets as tuples, and what
        the logs keep of the loss (``[total, each output's loss before its loss weight]`` for
        several outputs)."""
        output = self._forward(x, ctx)
        ys, outputs = (y, output) if self.several else ((y,), (output,))
        weights = output_weights(sample_weight, len(ys))
        parts = [loss_fn(yi, oi, wi) for (loss_fn, _), yi, oi, wi in zip(self.objectives, ys, outputs, weights)]
        loss = weighted_total(parts, [weight for _, weight in self.objectives])
        if self.regularized:
            loss = loss + self._penalty()
        if ctx.losses:  # ActivityRegularization
            loss = loss + sum(ctx.losses)
        logged = torch.stack([loss, *parts]).detach() if self.several else loss.detach()
        return loss, ys, outputs, logged

    def _train(self, x: tuple[torch.Tensor, ...], y: torch.Tensor, step_seed: int, sample_weight=None,
               metric_weight=None) -> None:
        ctx = self._context(True, step_seed, self.parity)
        loss, ys, outputs, logged = self._loss(x, y, ctx, sample_weight)
        # a model may have no trainable weight (BatchNormalization(center=False, scale=False) alone): Keras still
        # trains it -- its moving statistics update -- while torch.autograd.grad refuses an empty list
        grads = (torch.autograd.grad(loss, self.trainable, allow_unused=True, materialize_grads=True)
                 if self.trainable else ())
        if self.replicas is not None and grads:  # the global batch's gradient: the replicas' mean
            grads = self.replicas.average(grads)
        self.optimizer.apply(self.trainable, _distinct(grads))
        if ctx.assignments:
            ctx.apply_assignments()
        self.iterations += 1
        self.logs.add(logged, ys, tuple(o.detach() for o in outputs), sample_weight, metric_weight)

    # -- the Program interface -----------------------------------------------------------------
    def _weights(self, sample_weight):
        """Per-sample loss weights in the program's dtype on its device (``None`` stays ``None``;
        a per-output tuple, entry by entry)."""
        if sample_weight is None:
            return None
        if isinstance(sample_weight, tuple):
            return tuple(self._weights(w) for w in sample_weight)
        return self._to_device(np.asarray(sample_weight, dtype=self.np_dtype))

    def replicate(self, replicas) -> None:
        """Train data-parallel (:mod:`.distributed`): this process is one of ``replicas``; it
        takes rank 0's weights, then its rows of every batch, and averages the gradients."""
        self.replicas, self.num_replicas = replicas, replicas.world
        replicas.broadcast([p for params in self.params for p in params])

    def broadcast_seed(self, seed: int) -> int:
        """Rank 0's ``seed`` (a fit's data order and step seeds), replicated or not."""
        return seed if self.replicas is None else self.replicas.broadcast_seed(seed)

    def _rows(self, batch, stacked: bool = False):
        """This replica's rows of a global batch (as it is without replicas)."""
        return batch if self.replicas is None else self.replicas.rows(batch, stacked)

    def train_step(self, x, y, step_seed: int, sample_weight=None, metric_weight=None) -> None:
        x, y, sample_weight = self._rows(x), self._rows(y), self._rows(sample_weight)
        self._train(self._inputs(x), self._targets(y), step_seed, self._weights(sample_weight),
                    self._weights(self._rows(metric_weight)))

    def train_steps(self, xs, ys, step_seeds, sample_weights=None, metric_weights=None) -> None:
        """``steps_per_execution``: the N batches go to the device in one
        transfer, then run as N fused steps."""
        xs, ys, sample_weights = self._rows(xs, True), self._rows(ys, True), self._rows(sample_weights, True)
        xs, ys, ws = self._inputs(xs), self._targets(ys), self._weights(sample_weights)
        mws = self._weights(self._rows(metric_weights, True))
        for i, seed in enumerate(step_seeds):
            self._train(tuple(x[i] for x in xs), tuple(y[i] for y in ys) if self.several else ys[i], seed,
                        None if ws is None else batch_of(ws, i), None if mws is None else batch_of(mws, i))

    def test_step(self, x, y, sample_weight=None, metric_weight=None) -> None:
        x, y, sample_weight = self._rows(x), self._rows(y), self._rows(sample_weight)
        x, y = self._inputs(x), self._targets(y)
        with torch.no_grad():
            w = self._weights(sample_weight)
            _, ys, outputs, logged = self._loss(x, y, StepContext(False), w)
        self.logs.add(logged, ys, outputs, w, self._weights(self._rows(metric_weight)))

    def predict_step(self, x) -> np.ndarray:
        with torch.inference_mode():
            output = self._forward(self._inputs(x), StepContext(False))
            if isinstance(output, tuple):
                return tuple(o.cpu().numpy().copy() for o in output)
            return output.cpu().numpy().copy()

    def results(self) -> dict[str, float]:
        """The logs; of a data-parallel run, of all replicas (a collective: every replica calls it)."""
        return self.logs.results() if self.replicas is None else self.replicas.results(self.logs)

    def batch_results(self) -> dict[str, float]:
        """Mid-epoch logs for callbacks: this replica's own, without communication (rank 0 shows
        them in its progress bar at moments only it decides)."""
        return self.logs.results()

    def reset_metrics(self) -> None:
        self.logs.reset()

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        """Loss and canonical-layout gradients, nothing updated; in training
        mode dropout always uses the parity masks of ``step_seed``."""
        x, y = self._inputs(x), self._targets(y)
        with_input = [ok and a.is_floating_point() for ok, a in zip(self.input_differentiable, x)]
        x = tuple(a.clone().requires_grad_(True) if w else a for a, w in zip(x, with_input))
        loss = self._loss(x, y, self._context(training, step_seed, parity=True))[0]
        wanted = self.trainable + [a for a, w in zip(x, with_input) if w]
        grads = iter(torch.autograd.grad(loss, wanted, allow_unused=True, materialize_grads=True) if wanted else ())
        weights: list[np.ndarray | None] = []
        by_weight = iter(self._canonical_trainable([next(grads) for _ in self.trainable]))
        for spec in self.spec.layers:
            weights += [next(by_weight) if w.trainable else None for w in spec.weights]
        d_inputs = tuple(next(grads).cpu().numpy() if w else None for w in with_input)
        return Gradients(float(loss.detach()), weights, d_inputs if len(d_inputs) > 1 else d_inputs[0])


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _distinct(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The optimizer works in place on the gradients; autograd may return one
    tensor for two weights (``w1 + w2``), so repeated buffers are cloned."""
    seen: set[int] = set()
    out = []
    for g in grads:
        if g.data_ptr() in seen:
            g = g.clone()
        seen.add(g.data_ptr())
        out.append(g)
    return out
