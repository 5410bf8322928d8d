"""Losses weighted by their output's mask, as Keras weights them.

When a model's output carries a Keras mask (``Embedding(mask_zero=True)`` or ``Masking`` upstream,
passed on by ``return_sequences`` recurrent layers, ``Dense``, ``TimeDistributed``, ...), Keras
weights the loss by it: each step's weight is the sample weight times ``total / valid`` on valid
steps and 0 on padded ones (``total`` the mask's size, ``valid`` its count of ``True``; 0 when
nothing is valid), so the batch loss ``sum(w * loss) / total`` is the mean over the valid steps.

polykeras computes that weight on the host, before a step, and hands it to the backend as the
step's sample weights (``(batch, T)``, which every backend with ``"sample_weight"`` takes): one
mechanism, the same numbers on every backend, nothing for a backend to add. This works because a
mask is an ordinary graph value (:mod:`polykeras.layers.masking`) made of ``polykeras.ops`` nodes
on the model's inputs, which :func:`host_mask` evaluates with the ops' NumPy forwards. A mask
computed from a layer's output (``Masking`` after a ``Dense``) is refused when the program is
built, with that reason.

Not yet: Keras also weights the metrics by the mask (``sample_weight * mask``, without the
``total / valid`` factor). polykeras's ``metrics`` stay unmasked (padded steps count), and its
``weighted_metrics`` see the loss weights above (masked, but batches combine by those weights, not
by their count of valid steps); ``compile`` warns about it (:func:`warn_about_metrics`).
"""

from __future__ import annotations

import warnings

import numpy as np

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


class MaskedLossProgram:
    """A compiled program whose steps weight each masked output's loss by its mask (the module's rule);
    everything else is the program's own."""

    def __init__(self, program, masks: list, inputs: list, dtype):
        self._program, self._masks, self._inputs, self._dtype = program, masks, inputs, np.dtype(dtype)

    def __getattr__(self, name):
        return getattr(self._program, name)

    def loss_weights(self, x, sample_weight):
        """The sample weights the backend gets for batch ``x``: one array for a model of one output, else
        a tuple per output (``None`` where an output is neither masked nor weighted)."""
        given = output_weights(sample_weight, len(self._masks))
        out = tuple(w if m is None else keras_loss_weights(host_mask(m, self._inputs, x, self._dtype), w, self._dtype)
                    for m, w in zip(self._masks, given))
        return out[0] if len(out) == 1 else out

    def train_step(self, x, y, step_seed: int, sample_weight=None) -> None:
        self._program.train_step(x, y, step_seed, sample_weight=self.loss_weights(x, sample_weight))

    def train_steps(self, xs, ys, step_seeds, sample_weights=None) -> None:
        per_step = [self.loss_weights(batch_of(xs, i), None if sample_weights is None else batch_of(sample_weights, i))
                    for i in range(len(step_seeds))]
        stacked = (tuple(None if per_step[0][k] is None else np.stack([w[k] for w in per_step])
                         for k in range(len(per_step[0]))) if isinstance(per_step[0], tuple) else np.stack(per_step))
        self._program.train_steps(xs, ys, step_seeds, sample_weights=stacked)

    def test_step(self, x, y, sample_weight=None) -> None:
        self._program.test_step(x, y, sample_weight=self.loss_weights(x, sample_weight))


def wrap(model, backend, program):
    """``program`` as is for a model whose outputs carry no mask or on a backend that masks losses
    itself (``"loss_mask"`` in its ``training_features``: the Keras backends, whose train step is
    Keras's), else a :class:`MaskedLossProgram`; a backend without the sample weights this needs is
    refused by name."""
    masks = output_masks(model)
    if not any(m is not None for m in masks) or "loss_mask" in getattr(backend, "training_features", ()):
        return program
    graph, names = model._graph, [t.layer.name for t in model._graph.outputs]
    for mask, name in zip(masks, names):
        if mask is not None:
            check_host_computable(mask, graph.inputs, name)
    needed = {"sample_weight"} | ({"per_output_sample_weight"} if len(masks) > 1 else set())
    missing = sorted(needed - set(getattr(backend, "training_features", ())))
    if missing:
        raise NotImplementedError(f"model {model.name!r}: its output(s) carry a Keras mask, by which the loss is "
                                  f"weighted as sample weights, and backend {backend.name!r} lacks "
                                  f"{', '.join(missing)}; use a backend that has it (polykeras backends)")
    return MaskedLossProgram(program, masks, graph.inputs, backend.dtype)


def warn_about_metrics(model, metrics) -> None:
    """The one part of Keras's mask rule polykeras does not follow yet (see the module's docstring)."""
    masked = [t.layer.name for t, m in zip(model._graph.outputs, output_masks(model)) if m is not None] \
        if getattr(model, "_graph", None) is not None else []
    if masked and metrics:
        warnings.warn(f"model {model.name!r}: output(s) of {', '.join(masked)} carry a Keras mask; the loss is weighted "
                      "by it as in Keras, but the metrics are not masked yet: padded steps count in them "
                      "(polykeras.loss_masks)", stacklevel=3)
