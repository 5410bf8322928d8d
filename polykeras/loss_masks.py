"""Losses and metrics weighted by their output's mask, as Keras weights them.

When a model's output carries a Keras mask (``Embedding(mask_zero=True)`` or ``Masking`` upstream,
passed on by ``return_sequences`` recurrent layers, ``Dense``, ``TimeDistributed``, ...), Keras
weights the loss by it: each step's weight is the sample weight times ``total / valid`` on valid
steps and 0 on padded ones (``total`` the mask's size, ``valid`` its count of ``True``; 0 when
nothing is valid), so the batch loss ``sum(w * loss) / total`` is the mean over the valid steps.

Keras weights the output's mean metrics by the mask too (``MeanMetricWrapper.update_state``: the
accuracies, ``mse``/``mae``, the crossentropies, top-k and a user's function; not ``Precision``,
``Recall``, ``AUC``, ``MeanIoU``), without the ``total / valid`` factor: a ``metrics`` entry takes
the mask as its weights, a ``weighted_metrics`` entry ``sample_weight * mask``. A metric's value is
then the mean over the valid steps of the epoch (each sample's weighted values and weights reduced
to their means over its steps, as Keras's ``Mean`` does). The core marks those metrics
(``MetricSpec.masked``, :func:`mark_masked`).

polykeras computes these weights on the host, before a step, and hands them to the backend: the
loss's as the step's sample weights (``(batch, T)``, which every backend with ``"sample_weight"``
takes), each summed metric's as its ``metric_weight`` entry (:func:`metric_weights`; backends with
``"metric_weight"``): one mechanism, the same numbers on every backend, nothing for a backend to
add. This works because a mask is an ordinary graph value (:mod:`polykeras.layers.masking`) made of
``polykeras.ops`` nodes on the model's inputs, which :func:`host_mask` evaluates with the ops' NumPy
forwards. A mask computed from a layer's output (``Masking`` after a ``Dense``) is refused when the
program is built, with that reason. The Keras backends run Keras's own train step, which does all
of this itself (``"loss_mask"``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from polykeras.metrics.statistics import MASKED_KINDS, summed
from polykeras.program import batch_of, output_weights


def output_masks(model) -> list:
    """Per model output, the symbolic mask it carries, or ``None``; ``[]`` for a model without a graph."""
    graph = getattr(model, "_graph", None)
    return [] if graph is None else [t.mask for t in graph.outputs]


def host_mask(mask, inputs: list, x, dtype):
    """``mask`` (a symbolic tensor) evaluated for the batch ``x`` (one array, or one per model input in
    ``inputs`` order) with the ops' NumPy forwards."""
    from polykeras.layers.operation import op_params, resolve_args

    arrays = x if isinstance(x, (list, tuple)) else [x]
    values = {id(t): np.asarray(a) for t, a in zip(inputs, arrays)}

    def value(t):
        if id(t) not in values:
            layer = t.layer
            values[id(t)] = np.asarray(layer.op.forward(*resolve_args(layer.args, [value(i) for i in t.inputs]),
                                                        **op_params(layer.params, dtype)))
        return values[id(t)]

    return value(mask)


def check_host_computable(mask, inputs: list, output_name: str) -> None:
    """Refuse a mask that is not made of ops on the model's inputs alone, naming the layer it reads."""
    seen, pending = {id(t) for t in inputs}, [mask]
    while pending:
        t = pending.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if getattr(t.layer, "kind", None) != "Operation" or not t.batched:
            raise NotImplementedError(
                f"output {output_name!r} carries a mask computed from the output of layer {t.layer.name!r}; polykeras "
                "weights a loss only by a mask computed from the model's inputs (Embedding(mask_zero=True), Masking "
                "on an input). Mask the input instead, or pass the padding as sample_weight")
        pending.extend(t.inputs)


def keras_loss_weights(mask: np.ndarray, sample_weight, dtype) -> np.ndarray:
    """Keras's ``apply_mask`` for a mean loss: ``sample_weight * where(mask, total / valid, 0)``
    (``(batch, T)``; a ``(batch,)`` sample weight is spread over the steps)."""
    mask = np.asarray(mask, dtype=bool)
    valid = np.count_nonzero(mask)
    scale = np.asarray(mask.size / valid if valid else 0.0, dtype)
    weights = np.where(mask, scale, np.zeros((), dtype))
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype)
        weights = weights * sample_weight.reshape(sample_weight.shape + (1,) * (weights.ndim - sample_weight.ndim))
    return weights


def keras_metric_weights(mask: np.ndarray, sample_weight, dtype) -> np.ndarray:
    """Keras's ``apply_mask`` for a metric (``reduction="sum"``): ``sample_weight * mask`` (``(batch, T)``; a
    ``(batch,)`` sample weight is spread over the steps), the mask alone without sample weights."""
    weights = np.asarray(mask, dtype=bool).astype(dtype)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype)
        weights = weights * sample_weight.reshape(sample_weight.shape + (1,) * (weights.ndim - sample_weight.ndim))
    return weights


def mark_masked(model, training):
    """``training`` (a :class:`~polykeras.spec.TrainingSpec`) with the metrics that Keras weights by their
    output's mask marked ``masked`` (:data:`~polykeras.metrics.statistics.MASKED_KINDS` of a masked output)."""
    masks = output_masks(model)
    if training is None or not any(m is not None for m in masks):
        return training

    def marked(metrics, mask):
        return tuple(replace(m, masked=True) if mask is not None and m.kind in MASKED_KINDS else m for m in metrics)

    if training.outputs:
        return replace(training, outputs=tuple(replace(o, metrics=marked(o.metrics, mask))
                                               for o, mask in zip(training.outputs, masks)))
    return replace(training, metrics=marked(training.metrics, masks[0]))


class MaskedLossProgram:
    """A compiled program whose steps weight each masked output's loss and metrics by its mask (the
    module's rule); everything else is the program's own."""

    def __init__(self, program, masks: list, inputs: list, dtype, training=None):
        self._program, self._masks, self._inputs, self._dtype = program, masks, inputs, np.dtype(dtype)
        #: (output index, metric) of the summed metrics: each gets its weights (metric_weight), or none at all
        self._summed = summed(training) if training is not None else []

    def __getattr__(self, name):
        return getattr(self._program, name)

    def _weights(self, x, sample_weight) -> dict:
        """The step's weights for batch ``x``: ``sample_weight`` (one array for a model of one output, else a
        tuple per output, ``None`` where an output is neither masked nor weighted) for the loss, and
        ``metric_weight`` (one entry per summed metric, :meth:`polykeras.program.Program.train_step`)."""
        given = output_weights(sample_weight, len(self._masks))
        masks = [None if m is None else host_mask(m, self._inputs, x, self._dtype) for m in self._masks]
        out = tuple(w if m is None else keras_loss_weights(m, w, self._dtype) for m, w in zip(masks, given))
        weights = {"sample_weight": out[0] if len(out) == 1 else out}
        if self._summed:
            weights["metric_weight"] = tuple(
                keras_metric_weights(masks[i], given[i] if m.weighted else None, self._dtype) if m.masked
                else (None if not m.weighted or given[i] is None else np.asarray(given[i], self._dtype))
                for i, m in self._summed)
        return weights

    def loss_weights(self, x, sample_weight):
        """The loss's sample weights for batch ``x`` (see :meth:`_weights`)."""
        return self._weights(x, sample_weight)["sample_weight"]

    def train_step(self, x, y, step_seed: int, sample_weight=None) -> None:
        self._program.train_step(x, y, step_seed, **self._weights(x, sample_weight))

    def train_steps(self, xs, ys, step_seeds, sample_weights=None) -> None:
        per_step = [self._weights(batch_of(xs, i), None if sample_weights is None else batch_of(sample_weights, i))
                    for i in range(len(step_seeds))]
        stacked = {f"{name}s": _stacked([step[name] for step in per_step]) for name in per_step[0]}
        self._program.train_steps(xs, ys, step_seeds, **stacked)  # sample_weights, metric_weights

    def test_step(self, x, y, sample_weight=None) -> None:
        self._program.test_step(x, y, **self._weights(x, sample_weight))


def _stacked(per_step: list):
    """One step's weights per entry of ``per_step`` stacked on a new leading axis: an array, or a tuple of
    them whose ``None`` entries stay ``None``."""
    if isinstance(per_step[0], tuple):
        return tuple(None if per_step[0][k] is None else np.stack([w[k] for w in per_step])
                     for k in range(len(per_step[0])))
    return np.stack(per_step)


def wrap(model, backend, program, training=None):
    """``program`` as is for a model whose outputs carry no mask or on a backend that masks losses and
    metrics itself (``"loss_mask"`` in its ``training_features``: the Keras backends, whose train step is
    Keras's), else a :class:`MaskedLossProgram`; a backend without the sample weights this needs (or,
    for summed metrics, each metric's own weights) is refused by name. ``training`` is the program's
    :class:`~polykeras.spec.TrainingSpec` (:func:`mark_masked`'s)."""
    masks = output_masks(model)
    if not any(m is not None for m in masks) or "loss_mask" in getattr(backend, "training_features", ()):
        return program
    graph, names = model._graph, model.output_names  # as compile and the logs name them
    for mask, name in zip(masks, names):
        if mask is not None:
            check_host_computable(mask, graph.inputs, name)
    needed = {"sample_weight"} | ({"per_output_sample_weight"} if len(masks) > 1 else set())
    if training is not None and summed(training):
        needed.add("metric_weight")
    missing = sorted(needed - set(getattr(backend, "training_features", ())))
    if missing:
        raise NotImplementedError(f"model {model.name!r}: its output(s) carry a Keras mask, by which the loss (and "
                                  f"metrics) are weighted as sample weights, and backend {backend.name!r} lacks "
                                  f"{', '.join(missing)}; use a backend that has it (polykeras backends)")
    return MaskedLossProgram(program, masks, graph.inputs, backend.dtype, training)
