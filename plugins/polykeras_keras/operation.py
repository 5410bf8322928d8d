"""``Operation`` nodes on the Keras backends: a Keras layer that calls the op of
the same name in ``keras.ops`` (polykeras's ops have Keras's names and
arguments), so the op runs on whichever backend Keras uses."""

from __future__ import annotations

import keras
import numpy as np

from polykeras.functions import Y_PRED, Y_TRUE
from polykeras.layers.operation import op_params, resolve_args, tuples
from polykeras.ops import registry
from polykeras.ops.shapes import decode_key
from polykeras.spec import ModelSpec


def _dot_product_attention(query, key, value, mask, scale=None, is_causal=False):
    """polykeras's definition (:mod:`polykeras.ops.attention`) in ``keras.ops``: Keras's own op differs
    on the torch backend, which *adds* -1e9 to masked logits (a query with every key masked then keeps
    its unmasked softmax instead of attending uniformly)."""
    ops = keras.ops
    scale = 1.0 / np.sqrt(ops.shape(key)[-1]) if scale is None else scale
    logits = ops.einsum("btnh,bsnh->bnts", query, key) * scale
    mask = ops.cast(mask, "bool")
    if is_causal:
        mask = ops.logical_and(mask, ops.cast(ops.tril(ops.ones_like(logits)), "bool"))
    return ops.einsum("bnts,bsnh->btnh", ops.softmax(ops.where(mask, logits, -1e9), axis=-1), value)


def _one_hot(x, num_classes=None, axis=-1, dtype=None, sparse=False):
    """``keras.ops.one_hot`` with an axis below -1 made positive (counted in the output's dims, as the reference's
    ``moveaxis``): Keras 3.15's TensorFlow backend refuses it (``tf.one_hot`` takes -1 or more) and its torch
    backend misplaces the classes (axis=-2 on ids of shape (2, 3) gives shape (3, 3, 2), not (2, 3, 3))."""
    axis = axis % (len(x.shape) + 1) if axis < -1 else axis
    return keras.ops.one_hot(x, int(num_classes), axis=axis, dtype=dtype, sparse=sparse)


#: polykeras's ops that are not one ``keras.ops`` function of the same name
SPECIAL = {
    "one_hot": _one_hot,
    "dot_product_attention": _dot_product_attention,
    "getitem": lambda x, key=(): x[decode_key(key)],
    "top_k_indices": lambda x, k=None, sorted=True: keras.ops.top_k(x, int(k), sorted=True)[1],
}


def _run_graph(graph: dict, inputs: list) -> list:
    """A control-flow op's sub-graph (:mod:`polykeras.ops.subgraph`) with ``keras.ops``."""
    dtype = graph.get("compute_dtype") or "float32"
    values = dict(zip(graph["inputs"], inputs))
    for node in graph["nodes"]:
        op = node["op"]
        values[node["name"]] = _apply(SPECIAL.get(op) or getattr(keras.ops, op), op, registry.get(op).variadic,
                                      node["args"], op_params(node.get("params", {}), dtype),
                                      [values[n] for n in node["inbound"]], dtype)
    return [values[n] for n in graph["outputs"]]


def _cond(operands, true_fn=None, false_fn=None, output=0):
    pred, captures = keras.ops.reshape(keras.ops.cast(operands[0], "bool"), ()), list(operands[1:])
    return keras.ops.cond(pred, lambda: _run_graph(true_fn, captures)[output],
                          lambda: _run_graph(false_fn, captures)[output])


def _while_loop(operands, cond=None, body=None, maximum_iterations=None, output=0):
    """With ``maximum_iterations``: Keras's ``fori_loop`` over that many steps, each a ``cond`` that keeps
    the variables once ``cond`` is false (JAX's ``while_loop``, which Keras uses, has no reverse mode)."""
    n = len(body["outputs"])
    start, captures = tuple(keras.ops.convert_to_tensor(v) for v in operands[:n]), list(operands[n:])

    def go_on(*values):
        return keras.ops.reshape(keras.ops.cast(_run_graph(cond, list(values) + captures)[0], "bool"), ())

    def step(*values):
        return tuple(_run_graph(body, list(values) + captures))

    if maximum_iterations is None:
        return keras.ops.while_loop(go_on, step, start)[output]

    def bounded(i, carry):
        values, done = carry[:-1], carry[-1]
        active = keras.ops.logical_and(keras.ops.logical_not(done), go_on(*values))
        return tuple(keras.ops.cond(active, lambda: step(*values), lambda: tuple(values))) + (
            keras.ops.logical_not(active),)

    return keras.ops.fori_loop(0, int(maximum_iterations), bounded, start + (keras.ops.convert_to_tensor(False),))[
        output]


def _fori_loop(operands, lower=0, upper=0, body=None, output=0):
    n = len(body["outputs"])
    start, captures = tuple(keras.ops.convert_to_tensor(v) for v in operands[:n]), list(operands[n:])
    return keras.ops.fori_loop(int(lower), int(upper),
                               lambda i, values: tuple(_run_graph(body, [i, *values, *captures])), start)[output]


SPECIAL.update({"cond": _cond, "while_loop": _while_loop, "fori_loop": _fori_loop})


class KerasOperation(keras.layers.Layer):
    def __init__(self, op: str, args: list, params: dict, **kwargs):
        super().__init__(**kwargs)
        if op not in SPECIAL and not hasattr(keras.ops, op):
            raise NotImplementedError(f"keras.ops has no op {op!r} (layer {self.name!r})")
        self.op, self.args, self.params = op, args, tuples(params)
        self.fn = SPECIAL.get(op) or getattr(keras.ops, op)
        self.variadic = registry.get(op).variadic

    def call(self, inputs):
        return _apply(self.fn, self.op, self.variadic, self.args, op_params(self.params, self.compute_dtype),
                      list(inputs), self.compute_dtype)


def _apply(fn, op: str, variadic: bool, args: list, params: dict, inputs: list, dtype: str):
    """``fn`` (the op in ``keras.ops``) on the node's inbound values and constants (floats in ``dtype``)."""
    arrays = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in resolve_args(args, inputs)]
    if op == "einsum":
        return fn(params["subscripts"], *arrays)
    if variadic:
        return fn(arrays, **params)
    return fn(*arrays, **params)


def graph_function(graph: dict, dtype: str):
    """A traced loss or metric function (:mod:`polykeras.functions`) as a Python function of
    ``keras.ops`` calls, for ``keras.losses.LossFunctionWrapper`` / ``keras.metrics.MeanMetricWrapper``;
    ``y_true`` converted to ``y_pred``'s dtype, as polykeras's losses and metrics see it."""
    spec = ModelSpec.from_dict(graph)
    nodes = [(layer, KerasOperation(layer.config["op"], layer.config["args"], layer.config.get("params", {})))
             for layer in spec.layers]

    def fn(y_true, y_pred):
        values = {Y_TRUE: keras.ops.cast(y_true, y_pred.dtype), Y_PRED: y_pred}
        for layer, node in nodes:
            values[layer.name] = _apply(node.fn, node.op, node.variadic, node.args, node.params,
                                        [values[name] for name in layer.inbound], dtype)
        return values[spec.outputs[0]]

    fn.__name__ = spec.name
    return fn


class KerasVariable(keras.layers.Layer):
    """A custom layer's weight read in its traced ``call()``: a Keras layer holding the
    weight, called on the model's first input (which it ignores, since a Keras functional
    node needs an input) and returning the weight's value."""

    def __init__(self, weight_name: str, shape, trainable_weight: bool = True, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.value = self.add_weight(shape=tuple(shape), initializer="zeros", name=weight_name,
                                     trainable=trainable_weight, regularizer=regularizer)

    def call(self, anchor):
        return keras.ops.convert_to_tensor(self.value)

    def compute_output_spec(self, anchor):
        return keras.KerasTensor(self.value.shape, dtype=self.compute_dtype)


class KerasAddLoss(keras.layers.Layer):
    """A traced ``add_loss`` (spec kind ``AddLoss``): ``[x, loss_1, ...] -> x``, each loss handed to
    Keras's own ``add_loss``, which the engines sum into the step's loss (``model.losses``)."""

    def call(self, inputs):
        for value in inputs[1:]:
            self.add_loss(value)
        return inputs[0]

