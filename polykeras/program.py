"""What a backend implements: a :class:`Backend` compiles a spec into a
:class:`Program`, which the core's trainer drives step by step.

The division of labour (docs/writing-a-backend.md, section 2): the core decides initial
weights, data order, batching, loss/metric/optimizer semantics and, in parity
mode, dropout masks; a program owns only the math and the live weights.

Logs are kept lazily: a program accumulates loss and metrics in its own
native form and converts them to Python floats only in :meth:`Program.results`,
which the trainer calls when someone needs to see them (the progress bar,
callbacks, the end of an epoch). That keeps device-to-host syncs off the
per-step path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from polykeras.spec import ModelSpec, TrainingSpec


@dataclass
class Gradients:
    """The result of :meth:`Program.value_and_grad`: the scalar loss, the
    gradient of every weight (canonical layout; ``None`` for non-trainable
    weights) and of the input (``None`` when it is not differentiable; for a
    model of several inputs a tuple with one entry per input)."""

    loss: float
    weights: list[np.ndarray | None]
    inputs: np.ndarray | tuple | None


@dataclass
class OptimizerState:
    """An optimizer's state in canonical form: the number of updates applied, and each slot
    (named by :func:`polykeras.optimizers.slot_names`) as one array per trainable weight, in
    spec order and canonical (Keras) layout -- what a saved model carries so that training
    resumes exactly, on any backend."""

    iterations: int
    slots: dict[str, list[np.ndarray]]


class Program:
    """A model compiled by one backend, holding its live weights.

    Weights go in and out in the canonical Keras layout and spec order. All
    ``x``/``y`` arguments are NumPy arrays with a leading batch dimension; for
    a model of several inputs, ``x`` is a tuple of such arrays, one per
    ``spec.inputs`` entry in that order (``train_steps`` stacks each of them),
    and for several outputs ``y`` is likewise a tuple, one per ``spec.outputs``
    entry (see :class:`polykeras.spec.OutputTraining` for the loss and logs).
    """

    #: Number of optimizer updates applied so far (Keras's ``optimizer.iterations``).
    iterations: int = 0

    # -- training ---------------------------------------------------------------
    def train_step(self, x: np.ndarray, y: np.ndarray, step_seed: int, sample_weight=None,
                   metric_weight=None) -> None:
        """One optimizer update on one batch; accumulate its loss and metrics.

        ``sample_weight`` (only passed to a backend that lists ``"sample_weight"`` in
        ``training_features``) weights each sample's loss as Keras does: ``sum(w * loss) / n``;
        the metrics stay unweighted except the ``weighted_metrics`` entries
        (``MetricSpec.weighted``), whose statistics take ``w`` (see
        :mod:`polykeras.metrics.statistics`). It is one array, ``(batch,)`` or ``(batch, T)``
        for a sequence output, which for a model of several outputs weights every output; or,
        for a model of several outputs on a backend that also lists
        ``"per_output_sample_weight"``, a tuple with one entry per ``spec.outputs`` entry: that
        output's array, or ``None`` where the output is unweighted. Each output's loss takes its
        own weights, then the ``loss_weights``-weighted sum is the loss, and the weighted metrics
        of output ``i`` take output ``i``'s weights (:func:`output_weights` gives the tuple in
        both cases).

        ``metric_weight`` (only passed to a backend that lists ``"metric_weight"``; for a model
        whose outputs carry a Keras mask, :mod:`polykeras.loss_masks`) is a tuple with one entry
        per summed metric, in :func:`polykeras.metrics.statistics.summed` order: the weights that
        metric's statistics take instead of its output's ``sample_weight`` (an array, or ``None``
        for none)."""
        raise NotImplementedError

    def train_steps(self, xs: np.ndarray, ys: np.ndarray, step_seeds: Sequence[int], sample_weights=None,
                    metric_weights=None) -> None:
        """Several updates at once (``compile(steps_per_execution=N)``): ``xs``
        and ``ys`` (and ``sample_weights`` and ``metric_weights``, each array of a tuple) stack N
        batches on a new leading axis. Backends that can run them as one compiled loop override this."""
        for i, seed in enumerate(step_seeds):
            weights = {} if sample_weights is None else {"sample_weight": batch_of(sample_weights, i)}
            if metric_weights is not None:
                weights["metric_weight"] = batch_of(metric_weights, i)
            self.train_step(batch_of(xs, i), batch_of(ys, i), seed, **weights)

    def test_step(self, x: np.ndarray, y: np.ndarray, sample_weight=None, metric_weight=None) -> None:
        """Accumulate loss and metrics of one batch in inference mode (``sample_weight`` and
        ``metric_weight`` as in :meth:`train_step`)."""
        raise NotImplementedError

    def predict_step(self, x: np.ndarray) -> np.ndarray:
        """The model's output for one batch, inference mode, as NumPy."""
        raise NotImplementedError

    def results(self) -> dict[str, float]:
        """Sample-weighted means of ``loss`` and every mean metric, and the value of every
        summed metric (:func:`polykeras.metrics.statistics.value` of its summed statistics),
        since the last :meth:`reset_metrics`; keys and order: ``TrainingSpec.log_names``."""
        raise NotImplementedError

    def reset_metrics(self) -> None:
        raise NotImplementedError

    # -- state ----------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        raise NotImplementedError

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        raise NotImplementedError

    def set_learning_rate(self, value: float) -> None:
        raise NotImplementedError

    def get_optimizer_state(self) -> OptimizerState:
        """The optimizer's state (backends listing ``"optimizer_state"`` in ``training_features``)."""
        raise NotImplementedError

    def set_optimizer_state(self, state: OptimizerState) -> None:
        """Continue from ``state`` (as :meth:`get_optimizer_state` gives it, from any backend)."""
        raise NotImplementedError

    # -- for the conformance suite -----------------------------------------------
    def value_and_grad(self, x: np.ndarray, y: np.ndarray, step_seed: int = 0, training: bool = True) -> Gradients:
        """Loss (with regularization) and gradients for one batch, without
        updating anything. In training mode dropout uses parity-mode masks."""
        raise NotImplementedError


class Backend:
    """One framework on one device in one dtype; compiles specs into programs.

    Subclasses set ``name`` and the ``*_kinds`` sets they implement, so that
    the core can explain what is missing before anything runs.

    Data-parallel training (:mod:`polykeras.distribution`) is optional; a backend
    that offers it defines ``list_devices(device_type)`` (the devices it can
    replicate over), ``distribute(program, data_parallel)`` (returns the program
    run on the replicas; each takes :func:`polykeras.distribution.replica_rows`
    of every global batch, the gradient is that of the global batch's loss) and,
    for several processes, the static method ``initialize_distributed(cluster,
    device)`` (called on the class, before any backend exists). Without them the
    core refuses a distribution, naming the backend.
    """

    name: ClassVar[str] = ""
    #: Graph features beyond a single-input, single-output graph without shared
    #: layers that this backend runs: ``"multiple_inputs"``, ``"multiple_outputs"``,
    #: ``"shared_layers"``, ``"masking"`` (nodes that read a Keras mask, ``LayerSpec.mask``:
    #: see :mod:`polykeras.layers.masking`; :attr:`polykeras.spec.ModelSpec.features`),
    #: ``"inference_nodes"`` (nodes with ``LayerSpec.training=False`` -- a frozen
    #: BatchNormalization -- run in inference mode inside a training step: ``LayerSpec.node_training``),
    #: ``"added_losses"`` (``AddLoss`` nodes, a traced ``add_loss``: ``[x, loss, ...] -> x``, each scalar
    #: loss added to the step's loss in training and evaluation, see :mod:`polykeras.layers.added_loss`). The
    #: core refuses a model that needs one that is not listed, before compiling.
    graph_features: ClassVar[frozenset[str]] = frozenset()
    #: Training features beyond the plain step: ``"sample_weight"`` (``train_step``/``test_step``
    #: take per-sample loss weights; ``fit(sample_weight=..., class_weight=...)`` needs it),
    #: ``"per_output_sample_weight"`` (for a model of several outputs they may be a tuple, one
    #: entry per output; ``fit(sample_weight=[...] or {...})`` needs it), and
    #: ``"optimizer_state"`` (``get_/set_optimizer_state``: saved models resume exactly) and
    #: ``"metric_statistics"`` (weighted and stateful metrics: the program sums each one's
    #: statistics, :mod:`polykeras.metrics.statistics`; without it the core refuses them), and
    #: ``"loss_mask"`` (the program weights a masked output's loss by its mask itself, as Keras's
    #: own train step does; else the core hands it the mask's weights as sample weights,
    #: :mod:`polykeras.loss_masks`), and ``"metric_weight"`` (steps take each summed metric's own
    #: weights, ``metric_weight``: the masked metrics of a masked output need it).
    training_features: ClassVar[frozenset[str]] = frozenset()
    layer_kinds: ClassVar[frozenset[str]] = frozenset()
    optimizer_kinds: ClassVar[frozenset[str]] = frozenset()
    loss_kinds: ClassVar[frozenset[str]] = frozenset()
    metric_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, device: str, dtype: str) -> None:
        self.device = device
        self.dtype = dtype

    def compile(self, spec: ModelSpec, weights: Sequence[np.ndarray], training: TrainingSpec | None = None,
                *, parity: bool = False) -> Program:
        """Translate ``spec`` into a runnable program with ``weights`` (canonical
        layout, spec order). ``training`` is ``None`` for inference-only use.
        With ``parity`` dropout uses the core's host-drawn masks
        (:func:`polykeras.random.dropout_mask`) so that runs are comparable
        step by step with the reference."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.dtype})"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def batch_of(stacked, i: int):
    """Batch ``i`` of N batches stacked on a leading axis: one array, or a tuple of them (whose
    ``None`` entries -- unweighted outputs -- stay ``None``); NumPy arrays or native tensors."""
    if isinstance(stacked, tuple):
        return tuple(None if a is None else a[i] for a in stacked)
    return stacked[i]


def output_weights(sample_weight, n_outputs: int) -> tuple:
    """The sample weights of each of ``n_outputs`` outputs, whichever form :meth:`Program.train_step`
    got them in: a per-output tuple as it is, one array (or ``None``) repeated for every output."""
    if isinstance(sample_weight, tuple):
        return sample_weight
    return (sample_weight,) * n_outputs


def weighted_total(parts: Sequence[Any], weights: Sequence[float]):
    """Keras's loss of a model of several outputs: ``sum(weight * loss)`` in output order, for
    backend-native scalars (a weight of 1 multiplies nothing, so one output's loss is unchanged)."""
    total = None
    for part, weight in zip(parts, weights):
        part = part * weight if weight != 1.0 else part
        total = part if total is None else total + part
    return total


class MeanAccumulator:
    """Sample-weighted running means of backend-native scalars.

    ``add`` only does native arithmetic (``sum += value * n``), so with torch
    or JAX values nothing is copied to the host until :meth:`results`.
    """

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)
        self.reset()

    def reset(self) -> None:
        self._sums: list[Any] | None = None
        self._count = 0

    def add(self, values: Sequence[Any], n: int) -> None:
        if self._sums is None:
            self._sums = [v * n for v in values]
        else:
            self._sums = [s + v * n for s, v in zip(self._sums, values)]
        self._count += n

    def results(self) -> dict[str, float]:
        if self._sums is None:
            return {}
        return {name: float(s) / self._count for name, s in zip(self.names, self._sums)}
