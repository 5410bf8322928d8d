"""Keras's ``Layer.add_loss``: terms a layer's ``call()`` adds to the training loss.

polykeras traces ``call()`` once (:mod:`polykeras.layers.custom`), so an ``add_loss(value)``
there cannot hand a value to the trainer; it records the value's *tensor*. When the call
returns, the recorded tensors become inputs of one :class:`AddLoss` node put on the call's
first output: that node passes its first input through and adds the others to the step's
loss on the backends that declare the graph feature ``added_losses``, the way
``ActivityRegularization`` adds its penalty (``ctx.add_loss``).
So the term is differentiated by the backend as part of the loss (the NumPy reference starts
its backward at each term with gradient 1) and counts in ``fit``'s and ``evaluate``'s loss,
as in Keras 3 (``Trainer.compute_loss`` sums ``model.losses`` in both).

As Keras's ``compute_loss`` does (``ops.sum`` of each added loss), a value that is not a
scalar is summed first. ``layer.losses`` lists the values of the last eager call
(``layer(array)``): the layer is run once as a one-layer model whose extra outputs are the
terms (:func:`eager_call`), then the penalties of its regularized weights, as in Keras.

Keras lets ``call()`` compute a term across the batch (``ops.mean(x)``); polykeras's ops keep
axis 0 as the batch axis. So while a ``call()`` is traced (``COLLECTING``) an op may reduce the
batch axis, and its result is marked ``across_batch``. Such a value may only flow into
``add_loss``: :func:`check_across_batch` and :func:`check_outputs` refuse it anywhere else.
"""

from __future__ import annotations

import numpy as np

from polykeras.layers.base import Layer
from polykeras.layers.symbolic import COLLECTING, SymbolicTensor


class AddLoss(Layer):
    """The node of a traced ``add_loss``: ``[x, loss_1, ...] -> x``, the scalar losses added to the
    step's loss. ``adders`` holds, per loss, the layer whose ``add_loss`` recorded it."""

    kind = "AddLoss"
    multiple_inputs = True
    takes_across_batch = True
    adders: list = []  # (a node rebuilt from a file: the layer called eagerly stands for them)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def output_dtype(self, input_dtype: str) -> str:
        return input_dtype


#: how the messages name a value computed across the batch
_ACROSS = "an op that reduced, moved or mixed the batch axis 0"


def check_across_batch(layer: Layer, tensors: list[SymbolicTensor]) -> bool:
    """Whether ``layer``'s call on ``tensors`` computes across the batch: an op that reduced the batch
    axis (allowed while a ``call()`` is traced, for ``add_loss``), or one on such a value alone.
    Raises where such a value would mix with batched values or reach another layer."""
    across = [t for t in tensors if t.across_batch]
    if across and not layer.takes_across_batch:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) reads a value computed across the batch "
                         f"(from {across[0].layer.name!r}, {_ACROSS}); inside a model such a value can only go to "
                         "add_loss(): reduce over the other axes instead")
    if isinstance(layer, AddLoss):  # its output is its first input
        return tensors[0].across_batch
    if across and any(t.batched for t in tensors):
        raise ValueError(f"ops ({layer.name!r}) mixes a value computed across the batch (from "
                         f"{across[0].layer.name!r}, {_ACROSS}) with batched tensors; inside a model such a value "
                         "can only go to add_loss(), and ops keep axis 0 as the batch axis")
    return bool(across)


def check_outputs(what: str, outputs) -> None:
    """Refuse outputs computed across the batch (a layer's or a model's)."""
    from polykeras.layers.custom import flatten

    for t in flatten(outputs):
        if isinstance(t, SymbolicTensor) and t.across_batch:
            raise ValueError(f"{what} returns a value computed across the batch (from {t.layer.name!r}, {_ACROSS}); "
                             "inside a model such a value can only go to add_loss(), and outputs keep axis 0 as the "
                             "batch axis")


def add_loss(owner, loss) -> None:
    """``owner.add_loss(loss)``: record ``loss`` (a tensor, or a list of them) for the call of
    ``owner`` being traced."""
    entry = next((e for e in reversed(COLLECTING) if e[0] is owner), None)
    if entry is None:
        raise RuntimeError(f"{getattr(owner, 'name', owner)!r}: add_loss() can only be called inside call() (polykeras "
                           "traces call() once and adds the recorded term to every step's loss); a loss that does not "
                           "depend on the inputs belongs in compile(loss=...) or a regularizer")
    from polykeras import ops
    from polykeras.layers.custom import flatten

    for value in flatten(loss):
        if not isinstance(value, SymbolicTensor):
            raise ValueError(f"{getattr(owner, 'name', owner)!r}: add_loss() takes a tensor computed in call() with "
                             f"polykeras.ops; got {type(value).__name__} {value!r}")
        if np.dtype(value.dtype).kind not in "f":
            raise ValueError(f"{getattr(owner, 'name', owner)!r}: add_loss() takes a float tensor; got dtype "
                             f"{value.dtype} (cast it with ops.cast)")
        entry[1].append((owner, value if value.ndim == 0 else ops.sum(value)))


def attach(outputs, recorded: list):
    """``outputs`` with an :class:`AddLoss` node of the ``recorded`` ``(layer, loss)`` pairs on
    the first tensor (unchanged without any)."""
    if not recorded:
        return outputs
    from polykeras.layers.custom import flatten

    first = flatten(outputs)[0]
    node = AddLoss()([first] + [value for _, value in recorded])
    node.layer.adders = [layer for layer, _ in recorded]
    node.mask = first.mask
    return _replace(outputs, first, node)


def _replace(structure, old, new):
    if structure is old:
        return new
    if isinstance(structure, dict):
        return {k: _replace(v, old, new) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_replace(v, old, new) for v in structure)
    return structure


def loss_nodes(outputs) -> list[SymbolicTensor]:
    """The :class:`AddLoss` nodes ``outputs`` depend on, in the order they were traced."""
    from polykeras.layers.custom import flatten

    found, seen, stack = [], set(), list(flatten(outputs))
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t.layer, AddLoss):
            found.append(t)
        stack.extend(t.sources)
    return sorted(found, key=lambda t: t.serial)


def eager_call(layer: Layer, inp: SymbolicTensor, x: np.ndarray):
    """``layer(x)`` as a one-layer model; the values of the losses its ``call()`` added become
    ``layer.losses`` (and each adding layer's own ``losses``)."""
    from polykeras import ops
    from polykeras.models.model import Model

    out = layer(inp)
    nodes = loss_nodes(out)
    terms = [(adder, value) for node in nodes
             for adder, value in zip(node.layer.adders or [layer] * len(node.inputs), node.inputs[1:])]
    # each term broadcast along the batch (a model's outputs have one); entry 0 is its value
    for _, value in terms:
        value.across_batch = False  # allowed here: this model only reads the value back
    extra = [ops.add(ops.zeros_like(inp), value) for _, value in terms]
    results = Model(inp, [out] + extra if extra else out).predict_on_batch(x)
    if not extra:
        layer._losses = []
        return results
    values = [float(np.reshape(r, -1)[0]) if np.size(r) else 0.0 for r in results[1:]]
    for adder, _ in terms:
        adder._losses = []
    for (adder, _), value in zip(terms, values):
        if adder is not layer:
            adder._losses.append(value)
    layer._losses = values
    return results[0]


def regularization_losses(layer: Layer) -> list[float]:
    """The penalty of each regularized trainable weight of ``layer`` (its sublayers' too), at its current
    value: what Keras's ``layer.losses`` lists after the added losses."""
    from polykeras.layers.weight import Weight

    out = []
    for w in layer.weights:
        spec = w._layer._weight_specs[w._index] if isinstance(w, Weight) else w._weight_specs[0]  # (a Variable)
        if spec.regularizer and spec.trainable and w.trainable:
            value = np.asarray(w.numpy(), dtype=np.float64)
            out.append(float(spec.regularizer.get("l1", 0.0) * np.abs(value).sum()
                             + spec.regularizer.get("l2", 0.0) * np.square(value).sum()))
    return out

