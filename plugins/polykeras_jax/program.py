"""The compiled program: live state on the device and the jitted functions
that advance it.

One training step -- forward, loss, gradients, clipping, optimizer update,
moving statistics, metric sums -- is **one** jitted XLA function of the whole
state, with the state's buffers donated (updated in place, no copies).
``train_steps`` (Keras's ``steps_per_execution``) runs N of those steps as a
``lax.scan`` inside one jitted call, so N batches cost one dispatch.

What the host does per step is kept to the unavoidable: hand the NumPy batch
and the seed to the jitted function and count samples. The learning rate is a
device scalar argument (changing it never recompiles), and loss and metrics
are summed on the device and read only by :meth:`JaxProgram.results`.

Compilations: one per distinct input shape, i.e. one for the full batch and
at most one more for a fit's last partial batch (and one per distinct
``steps_per_execution`` chunk length). :attr:`JaxProgram.traces` counts them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from polykeras import random as _random
from polykeras.metrics.statistics import SummedStatistics, is_summed, ordered, statistics_shape
from polykeras.program import Gradients, OptimizerState, Program, output_weights, weighted_total
from polykeras.spec import ModelSpec, TrainingSpec
from polykeras_jax import losses, metrics, optimizers
from polykeras_jax.model import HostMasks, KeyNoise, ModelFunction, seed_words
from polykeras_jax.precision import Precision


def _batch(y) -> int:
    return len(y[0]) if isinstance(y, tuple) else len(y)


def _shapes(x) -> tuple:
    """The shapes and dtypes of a batch (arrays or tracers, one or a tuple): the key of a mask plan."""
    return tuple((tuple(a.shape), np.dtype(a.dtype)) for a in (x if isinstance(x, tuple) else (x,)))


class TrainState(NamedTuple):
    """Everything a step reads and replaces; donated to the jitted step."""

    trainable: list
    frozen: list
    optimizer: optimizers.OptimizerState | None
    sums: Any  # (1 + n_means,): sum over samples of the loss(es) and each mean metric since reset
    stats: tuple = ()  # each summed metric's statistics, summed since reset


class JaxProgram(Program):
    def __init__(self, backend, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None,
                 parity: bool = False) -> None:
        self.backend = backend
        self.spec = spec
        self.parity = parity
        self.precision = Precision(backend.dtype, parity)
        self.dtype = self.precision.dtype
        self.device = backend.jax_device
        self._placement = self.device  # where the state lives: the device, or replicated on a mesh (shard)
        self._batches = None  # a BatchSharding once sharded
        self.num_replicas = 1
        self.model = ModelFunction(spec, self.dtype)
        self.training = training
        self.iterations = 0
        #: how often each jitted function was traced (= compiled), by name
        self.traces: Counter[str] = Counter()
        self._count = 0
        self._plans: dict[tuple, list] = {}
        self._random: bool | None = None  # does a training step draw dropout masks at all?
        if training is not None:
            # (loss, weight) per output: one for a single output, Keras's weighted sum over several
            self.several = bool(training.outputs)
            parts = training.outputs or [training]
            self.objectives = [(losses.get(p.loss), getattr(p, "weight", 1.0)) for p in parts]
            means = [(i, m) for i, m in training.all_metrics if not is_summed(m)]
            summed = [(i, m) for i, m in training.all_metrics if is_summed(m)]
            # after "loss": each output's loss (several), the mean metrics
            self.metric_names = [o.log_name for o in training.outputs] + [m.name for _, m in means]
            self.metric_fns = [(i, metrics.get(m)) for i, m in means]
            self.summed_fns = [(i, metrics.get_statistics(m)) for i, m in summed]
            self.summed = [m for _, m in summed]
            self.optimizer = optimizers.create(training.optimizer)
        else:
            self.metric_names, self.metric_fns, self.optimizer = [], [], None
            self.summed_fns, self.summed = [], []
        with self.precision.scope():
            trainable, frozen = self.model.split(self._to_device(weights))
            opt_state = (None if self.optimizer is None
                         else jax.device_put(self.optimizer.init(trainable), self._placement))
            self._state = TrainState(trainable, frozen, opt_state, self._zero_sums(), self._zero_stats())
            self._lr = self._scalar(training.optimizer["config"]["learning_rate"] if training else 0.0)
        # XLA:CPU runs convolutions inside a while loop (a rolled lax.scan) far slower than
        # outside one: measured 4.4x for one Conv2D, 20x for the CIFAR CNN (jax 0.10.2). There
        # the N steps are unrolled instead -- still one dispatch, at N times the compile time.
        self._unroll = True if self.device.platform == "cpu" and {"Conv1D", "Conv2D"} & set(spec.kinds) else 1
        self._train = jax.jit(self._train_fn, donate_argnums=0)
        self._train_many = jax.jit(self._train_many_fn, donate_argnums=0)
        self._test = jax.jit(self._test_fn, donate_argnums=(2, 3))
        self._predict = jax.jit(self._predict_fn)
        self._value_and_grad = jax.jit(self._value_and_grad_fn, static_argnums=(4,))

    # -- host <-> device ------------------------------------------------------------------
    def shard(self, mesh) -> None:
        """Run data-parallel on ``mesh`` (:mod:`polykeras_jax.distributed`): the state
        replicated on its devices, every batch split along its data axis."""
        from polykeras_jax.distributed import BatchSharding

        self._batches = BatchSharding(mesh)
        self._placement = self._batches.replicated
        self.num_replicas = self._batches.replicas
        with self.precision.scope():
            self._state = self._batches.replicate(self._state)
            self._lr = self._batches.replicate(self._lr)

    def broadcast_seed(self, seed: int) -> int:
        """Process 0's ``seed`` (a fit's data order and step seeds) when several processes share a mesh."""
        return seed if self._batches is None else self._batches.broadcast_seed(seed)

    def _host(self, a, gather: bool = False) -> np.ndarray:
        """A state array (or, ``gather``, a batch-sharded output) as NumPy, on a mesh of several
        processes too."""
        if self._batches is None:
            return np.asarray(a)
        return self._batches.gather(a) if gather else self._batches.host(a)

    def _settle(self) -> None:
        if self._batches is not None:
            self._batches.settle(self._state.sums)

    def _place(self, batch, stacked: bool = False):
        """A batch (x, y or sample weights) as the step takes it: as it is on one device,
        sharded along the data axis on a mesh."""
        return batch if self._batches is None or batch is None else self._batches(batch, stacked)

    def _to_device(self, weights: Sequence[np.ndarray]) -> list:
        return [jax.device_put(np.asarray(w, self.dtype), self._placement) for w in weights]

    def _scalar(self, value: float):
        return jax.device_put(np.asarray(value, self.dtype), self._placement)

    def _zero_sums(self):
        return jax.device_put(np.zeros(1 + len(self.metric_names), self.dtype), self._placement)

    def _zero_stats(self) -> tuple:
        return tuple(jax.device_put(np.zeros(statistics_shape(m), self.dtype), self._placement) for m in self.summed)

    def _x(self, x):
        """The batch as the step takes it: integer ids checked and int32, floats in the
        program's dtype; one array, or a tuple of one per input for several."""
        out = []
        for i, (a, integer) in enumerate(zip(x if isinstance(x, tuple) else (x,), self.model.integer_inputs)):
            a = np.asarray(a)
            if integer:
                self.model.check_ids(a, i)
                out.append(a if a.dtype == np.int32 else a.astype(np.int32))
            else:
                out.append(a if a.dtype == self.dtype else a.astype(self.dtype))
        return tuple(out) if len(out) > 1 else out[0]

    def _noise(self, step_seed: int, x: np.ndarray):
        """The step's dropout input: None, a seed (fast path) or parity masks."""
        if self.parity:
            plan = self._plan(x)
            return tuple(_random.dropout_mask(step_seed, r.layer_index, r.stream, r.shape, r.rate, self.dtype)
                         for r in plan) or None
        if self._random is None:
            self._random = bool(self._plan(x))
        return seed_words(step_seed) if self._random else None

    def _plan(self, x) -> list:
        key = _shapes(x)
        if key not in self._plans:
            weights = self.model.merge(self._state.trainable, self._state.frozen)
            with self.precision.scope():
                self._plans[key] = self.model.mask_plan(weights, x)
        return self._plans[key]

    def _noise_source(self, noise, x):
        """Inside a trace: what the step's ``noise`` argument means (see :meth:`_noise`)."""
        if noise is None:
            return None
        if isinstance(noise, tuple):  # parity masks, in the order of the plan
            return HostMasks(self._plans[_shapes(x)], noise)
        return KeyNoise(noise, self.dtype)

    # -- the traced functions -------------------------------------------------------------
    def _objective(self, trainable, frozen, x, y, training: bool, noise, sample_weight=None):
        weights = self.model.merge(trainable, frozen)
        out, assignments, added = self.model.forward_with_losses(weights, x, training, noise)
        ys, outs = (y, out) if self.several else ((y,), (out,))
        ws = output_weights(sample_weight, len(ys))  # each output's loss takes its own weights
        parts = [loss_fn(yi, oi, wi) for (loss_fn, _), yi, oi, wi in zip(self.objectives, ys, outs, ws)]
        loss = weighted_total(parts, [weight for _, weight in self.objectives])
        return loss + self.model.penalty(weights) + added, ((ys, outs, parts), assignments)

    def _logs(self, loss, batch, sample_weight, metric_weight=None):
        """``[loss, (each output's loss,) *mean metrics]`` of one batch, each a batch mean
        weighted by the batch size, and the summed metrics' statistics (a metric of output ``i``
        with output ``i``'s sample weights, or its own ``metric_weight`` entry when the step has them)."""
        ys, outs, parts = batch
        values = [loss] + (parts if self.several else [])
        values += [m(ys[i], outs[i]).astype(self.dtype) for i, m in self.metric_fns]
        ws = output_weights(sample_weight, len(ys))
        own = metric_weight if metric_weight is not None else [ws[i] for i, _ in self.summed_fns]
        stats = tuple(fn(ys[i], outs[i], w).astype(self.dtype) for (i, fn), w in zip(self.summed_fns, own))
        return jnp.stack(values) * ys[0].shape[0], stats

    @staticmethod
    def _add(state: TrainState, logs) -> TrainState:
        sums, stats = logs
        return state._replace(sums=state.sums + sums, stats=tuple(a + b for a, b in zip(state.stats, stats)))

    def _step(self, state: TrainState, lr, x, y, noise, sample_weight, metric_weight=None) -> TrainState:
        grad_fn = jax.value_and_grad(self._objective, has_aux=True)
        (loss, (batch, assignments)), grads = grad_fn(state.trainable, state.frozen, x, y, True,
                                                      self._noise_source(noise, x), sample_weight)
        trainable, opt_state = self.optimizer.update(grads, state.optimizer, state.trainable, lr)
        frozen = self.model.assign(state.frozen, assignments)
        return self._add(TrainState(trainable, frozen, opt_state, state.sums, state.stats),
                         self._logs(loss, batch, sample_weight, metric_weight))

    def _train_fn(self, state, lr, x, y, noise, sample_weight, metric_weight=None):
        self.traces["train_step"] += 1  # runs only while tracing
        return self._step(state, lr, x, y, noise, sample_weight, metric_weight)

    def _train_many_fn(self, state, lr, xs, ys, noises, sample_weights, metric_weights=None):
        self.traces["train_steps"] += 1

        def body(state, batch):
            return self._step(state, lr, *batch), None

        return lax.scan(body, state, (xs, ys, noises, sample_weights, metric_weights), unroll=self._unroll)[0]

    def _test_fn(self, trainable, frozen, sums, stats, x, y, sample_weight, metric_weight=None):
        self.traces["test_step"] += 1
        loss, (batch, _) = self._objective(trainable, frozen, x, y, False, None, sample_weight)
        logs = self._logs(loss, batch, sample_weight, metric_weight)
        return sums + logs[0], tuple(a + b for a, b in zip(stats, logs[1]))

    def _predict_fn(self, trainable, frozen, x):
        self.traces["predict_step"] += 1
        return self.model.forward(self.model.merge(trainable, frozen), x, False)[0]

    def _value_and_grad_fn(self, trainable, frozen, x, y, training, noise):
        """Loss and gradients of the trainable weights and of the differentiable inputs."""
        self.traces["value_and_grad"] += 1
        xs = x if isinstance(x, tuple) else (x,)
        wanted = [i for i, ok in enumerate(self.model.inputs_differentiable) if ok]

        def objective(w, f, x_wanted):
            full = list(xs)
            for i, a in zip(wanted, x_wanted):
                full[i] = a
            full = tuple(full) if isinstance(x, tuple) else full[0]
            return self._objective(w, f, full, y, training, self._noise_source(noise, full))

        (loss, _), (grads, x_grads) = jax.value_and_grad(objective, argnums=(0, 2), has_aux=True)(
            trainable, frozen, [xs[i] for i in wanted])
        by_input = dict(zip(wanted, x_grads))
        return loss, (grads, [by_input.get(i) for i in range(len(xs))])

    # -- the Program interface ------------------------------------------------------------
    def _weights(self, sample_weight):
        """Sample weights in the program's dtype: one array, or a per-output tuple whose ``None``
        entries (unweighted outputs) are empty leaves of the jitted step's (and scan's) arguments."""
        if isinstance(sample_weight, tuple):
            return tuple(self._weights(w) for w in sample_weight)
        return None if sample_weight is None else np.asarray(sample_weight, dtype=self.dtype)

    def train_step(self, x, y, step_seed: int, sample_weight=None, metric_weight=None) -> None:
        x = self._x(x)
        noise = self._noise(step_seed, x)
        with self.precision.scope():
            self._state = self._train(self._state, self._lr, self._place(x), self._place(y), noise,
                                      self._place(self._weights(sample_weight)),
                                      self._place(self._weights(metric_weight)))
        self._settle()
        self._count += _batch(y)
        self.iterations += 1

    def train_steps(self, xs, ys, step_seeds: Sequence[int], sample_weights=None, metric_weights=None) -> None:
        xs = self._x(xs)
        first = tuple(a[0] for a in xs) if isinstance(xs, tuple) else xs[0]
        noises = [self._noise(seed, first) for seed in step_seeds]
        noises = None if noises[0] is None else jax.tree.map(lambda *n: np.stack(n), *noises)
        with self.precision.scope():
            self._state = self._train_many(self._state, self._lr, self._place(xs, True), self._place(ys, True), noises,
                                           self._place(self._weights(sample_weights), True),
                                           self._place(self._weights(metric_weights), True))
        self._settle()
        first = ys[0] if isinstance(ys, tuple) else ys
        self._count += first.shape[0] * first.shape[1]
        self.iterations += len(first)

    def test_step(self, x, y, sample_weight=None, metric_weight=None) -> None:
        x = self._x(x)
        state = self._state
        with self.precision.scope():
            sums, stats = self._test(state.trainable, state.frozen, state.sums, state.stats, self._place(x),
                                     self._place(y), self._place(self._weights(sample_weight)),
                                     self._place(self._weights(metric_weight)))
            self._state = state._replace(sums=sums, stats=stats)
        self._settle()
        self._count += _batch(y)

    def predict_step(self, x):
        x = self._x(x)
        with self.precision.scope():
            out = self._predict(self._state.trainable, self._state.frozen, self._place(x))
            if isinstance(out, tuple):
                return tuple(self._host(o, gather=True) for o in out)
            return self._host(out, gather=True)

    def results(self) -> dict[str, float]:
        if not self._count:
            return {}
        with self.precision.scope():
            sums = self._host(self._state.sums).astype(np.float64)
            summed = SummedStatistics(self.summed)
            summed.add([self._host(a) for a in self._state.stats])
        means = {name: float(s) / self._count for name, s in zip(["loss", *self.metric_names], sums)}
        return ordered(self.training.log_names, means, summed.results())

    def reset_metrics(self) -> None:
        self._count = 0
        with self.precision.scope():
            self._state = self._state._replace(sums=self._zero_sums(), stats=self._zero_stats())

    def get_weights(self) -> list[np.ndarray]:
        with self.precision.scope():
            return [np.array(self._host(w), copy=True)
                    for w in self.model.merge(self._state.trainable, self._state.frozen)]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """New weights; the optimizer's slots are kept (as Keras's ``set_weights`` does)."""
        with self.precision.scope():
            trainable, frozen = self.model.split(self._to_device(weights))
        self._state = self._state._replace(trainable=trainable, frozen=frozen)

    def set_learning_rate(self, value: float) -> None:
        with self.precision.scope():
            self._lr = self._scalar(value)

    def get_optimizer_state(self) -> OptimizerState:
        with self.precision.scope():
            slots = self.optimizer.canonical_slots(self._state.optimizer.slots)
            return OptimizerState(self.iterations,
                                  {k: [np.array(self._host(a), copy=True) for a in v] for k, v in slots.items()})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        with self.precision.scope():
            canonical = {k: self._to_device(v) for k, v in state.slots.items()}
            slots = self.optimizer.from_canonical(self._state.optimizer.slots, canonical)
            slots = jax.device_put(self.optimizer.at_step(slots, int(state.iterations)), self._placement)
            iterations = jax.device_put(np.asarray(state.iterations, np.int32), self._placement)
            self._state = self._state._replace(optimizer=optimizers.OptimizerState(iterations, slots))
        self.iterations = int(state.iterations)

    def value_and_grad(self, x, y, step_seed: int = 0, training: bool = True) -> Gradients:
        """Loss (with penalties) and gradients; dropout uses the parity masks in training."""
        x = self._x(x)
        masks = None
        if training:
            masks = tuple(_random.dropout_mask(step_seed, r.layer_index, r.stream, r.shape, r.rate, self.dtype)
                          for r in self._plan(x)) or None
        with self.precision.scope():
            loss, (weight_grads, x_grads) = self._value_and_grad(self._state.trainable, self._state.frozen, x, y,
                                                                training, masks)
            weight_grads = iter([np.array(g) for g in weight_grads])
            grads = [next(weight_grads) if t else None for t in self.model.trainable]
            x_grads = tuple(None if g is None else np.array(g) for g in x_grads)
            return Gradients(float(loss), grads, x_grads if len(x_grads) > 1 else x_grads[0])
