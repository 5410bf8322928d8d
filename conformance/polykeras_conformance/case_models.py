"""A case as something to run: its model (:func:`build_model`, :func:`build_graph`) and its inputs and
targets (:func:`case_data`). :mod:`polykeras_conformance.cases` re-exports all three."""

from __future__ import annotations

from typing import Any

import numpy as np

Case = dict[str, Any]


def build_model(case: Case):
    """The case's model: ``Input(input_shape)`` followed by its layers, or its graph."""
    from polykeras.models import Sequential

    if "graph" in case:
        return build_graph(case["graph"])
    dtype = "int32" if case["vocab"] else None
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, *case["input_shape"]], "dtype": dtype}}]
    return Sequential.from_config({"name": "case", "layers": layers + case["layers"]})


def build_graph(graph: dict):
    """A functional model from a graph case: ``Input`` per shape, each node's layer
    (deserialised, or an earlier node's layer called again) on its inbound."""
    from polykeras.layers import Input, deserialize
    from polykeras.models import Model

    values = {f"in{k}": Input(shape=tuple(shape), name=f"in{k}") for k, shape in enumerate(graph["inputs"])}

    def value(ref: str):  # "n<i>:<j>": tensor j of a call of several outputs (return_state)
        name, _, index = ref.partition(":")
        return values[name][int(index)] if index else values[name]

    layers = []
    for i, node in enumerate(graph["nodes"]):
        layer = layers[int(node["layer"][1:])] if isinstance(node["layer"], str) else deserialize(node["layer"])
        layers.append(layer)
        args = [value(name) for name in node["inbound"]]
        if not args:  # a node without inputs (a constant, a weight's read), as a saved model's graph rebuilds it
            values[f"n{i}"] = layer._call_symbolically([], several=True)
            continue
        if node.get("initial_state"):
            values[f"n{i}"] = layer(args[0], initial_state=[value(r) for r in node["initial_state"]])
            continue
        values[f"n{i}"] = layer(args if getattr(layer, "multiple_inputs", False) else args[0])
    inputs = [values[f"in{k}"] for k in range(len(graph["inputs"]))]
    return Model(inputs, [values[name] for name in graph["outputs"]], name="case")


def case_data(case: Case, output_shape: tuple, batch: int = 4, seed: int = 0):
    """Inputs and targets for a case (float64; the worker casts them); ``x`` is a list
    of arrays for a graph of several inputs."""
    rng = np.random.default_rng(seed)
    if "graph" in case:
        shapes = case["graph"]["inputs"]
        x = [rng.normal(size=(batch, *shape)) for shape in shapes]
        x = x if len(x) > 1 else x[0]
    else:
        shape = (batch, *case["input_shape"])
        x = (rng.integers(0, case["vocab"], shape) if case["vocab"]
             else rng.normal(size=shape) * case.get("input_scale", 1) + case.get("input_offset", 0))
        if case.get("padded"):
            x = _padded(x, rng)
    if isinstance(output_shape, list):  # several outputs: one target each
        return x, [_target(case["target"], (batch, *shape[1:]), rng) for shape in output_shape]
    return x, _target(case["target"], (batch, *output_shape[1:]), rng)


def _padded(ids: np.ndarray, rng) -> np.ndarray:
    """Ids with id 0 (padding, masked) on the right of even rows, the left of odd rows and between real ids
    of the first row; every row keeps at least one real id."""
    ids = np.where(ids == 0, 1, ids)
    steps = ids.shape[1]
    for i, row in enumerate(ids):
        pad = int(rng.integers(0, steps))
        if pad and i % 2 == 0:
            row[steps - pad:] = 0
        elif pad:
            row[:pad] = 0
    real = np.flatnonzero(ids[0])
    if len(real) >= 3:
        ids[0, real[len(real) // 2]] = 0
    return ids


def _target(target: str, out: tuple, rng):
    if target == "labels":
        y = rng.integers(0, out[-1], out[:-1])
    elif target == "onehot":
        y = np.eye(out[-1])[rng.integers(0, out[-1], out[:-1])]
    elif target == "binary":
        y = (rng.random(out) > 0.5).astype(float)
    elif target == "distribution":  # rows of probabilities, none zero
        e = np.exp(rng.normal(size=out))
        y = e / e.sum(axis=-1, keepdims=True)
    elif target == "counts":
        y = rng.poisson(2.0, size=out).astype(float)
    elif target == "positive":  # away from zero, where percentage errors blow up
        y = rng.uniform(0.5, 2.0, size=out)
    else:
        y = rng.normal(size=out)
    return y
