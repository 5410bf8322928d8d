"""Sub-graphs of control-flow ops (:mod:`.control_flow`): a branch or a loop body traced once
on symbolic tensors into plain data that an ``Operation`` node carries in its ``params``.

A sub-graph is a dict (JSON data, like the rest of a spec)::

    {"inputs": ["v0", "v1", "c0"],          # the loop variables / index, then the captures
     "nodes": [{"name": "n0", "op": "add", "args": [...], "params": {...}, "inbound": ["v0", "c0"]}, ...],
     "outputs": ["n3", "v1"],               # node or input names, in the returned structure's order
     "output_specs": [{"shape": [null, 4], "dtype": "float32", "batched": true}, ...]}

Each node is an ``Operation`` node's config (:mod:`polykeras.layers.operation`) with the
names it reads. *Captures* are the symbolic tensors from outside the function that it uses
(the layer's input, a custom layer's variables): they become the control-flow node's inputs
and the sub-graph's inputs ``c0, c1, ...``. Only ops may be recorded inside (``a + b`` between
two tensors, which records an ``Add`` layer elsewhere, is the op ``add`` here); a layer called
inside is refused, since its weights would live in a branch.

:func:`evaluate` and :func:`backprop` run a sub-graph with the op registry's NumPy forwards and
hand-written VJPs: the reference of the control-flow ops. Backends run the same data with
their own ops (``graph["compute_dtype"]``, set by ``op_params``, is the model's float dtype).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_MERGE_OPS = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply"}


def flatten(value, what: str) -> tuple[list, bool]:
    """``(the tensors of value, whether it was a list/tuple)``: a control-flow function takes and returns
    one tensor or a flat list/tuple of them."""
    if isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, (list, tuple, dict)):
                raise TypeError(f"{what}: nested structures are not supported; use one tensor or a flat tuple/list "
                                f"of tensors (got an element of type {type(v).__name__})")
        return list(value), True
    if isinstance(value, dict):
        raise TypeError(f"{what}: dicts are not supported; use one tensor or a flat tuple/list of tensors")
    if value is None:
        raise TypeError(f"{what}: the function returned None; return a tensor or a tuple/list of tensors")
    return [value], False


def spec_of(t) -> dict:
    return {"shape": list(t.shape), "dtype": str(t.dtype), "batched": bool(t.batched)}


def describe(spec: dict) -> str:
    from polykeras.layers.symbolic import format_shape

    return f"{format_shape(spec['shape'])} {spec['dtype']}{'' if spec['batched'] else ' (no batch axis)'}"


def placeholder(like, name: str):
    """A symbolic stand-in of ``like`` (shape, dtype, batch axis) for a loop variable or index."""
    from types import SimpleNamespace

    from polykeras.layers.symbolic import SymbolicTensor

    t = SymbolicTensor(like["shape"], like["dtype"], SimpleNamespace(name=name, kind="LoopVariable"))
    t.batched = like["batched"]
    return t


def trace(fn: Callable, args: list, what: str, captures: list) -> tuple[dict, bool]:
    """``fn(*args)`` traced (``args``: placeholders from :func:`placeholder`) into a sub-graph
    and whether it returned a list/tuple. ``captures`` is the list of outer tensors, shared by the
    sub-graphs of one op (appended to as new ones are found)."""
    from polykeras.layers.operation import constant
    from polykeras.layers.symbolic import _SERIALS, SymbolicTensor

    start = next(_SERIALS)
    flat, several = flatten(fn(*args), what)
    outs = [t if isinstance(t, SymbolicTensor) else constant(t) for t in flat]
    names = {id(p): f"v{k}" for k, p in enumerate(args)}
    inner, stack = {}, list(outs)
    while stack:
        t = stack.pop()
        if id(t) in names or id(t) in inner:
            continue
        if t.serial < start or t.layer.kind == "Variable":  # from outside: a capture
            if not any(c is t for c in captures):
                captures.append(t)
            continue
        inner[id(t)] = t
        stack.extend(t.inputs)
    nodes = []
    for t in sorted(inner.values(), key=lambda t: t.serial):  # creation order is a topological order
        kind = t.layer.kind
        if kind == "Operation":
            config = {k: v for k, v in t.layer.get_config().items() if k != "name"}
        elif kind in _MERGE_OPS and len(t.inputs) == 2:
            if len(t.inputs[0].shape) != len(t.inputs[1].shape):  # the layer expands at axis 1, the op would not
                raise ValueError(f"{what}: {kind.lower()} ({'+-*'[list(_MERGE_OPS).index(kind)]}) between tensors of "
                                 f"ranks {len(t.inputs[0].shape)} and {len(t.inputs[1].shape)}; outside it the lower "
                                 "rank is expanded at axis 1 (the merge layer's rule), inside it would broadcast as "
                                 "NumPy: make the ranks agree first (ops.expand_dims(x, 1) gives the layer's rule)")
            config = {"op": _MERGE_OPS[kind], "args": [{"input": 0}, {"input": 1}], "params": {}}
        else:
            raise TypeError(f"{what}: the function calls layer {t.layer.name!r} ({kind}); a branch or loop body may "
                            "use polykeras.ops only -- call layers outside it and use their outputs inside")
        names[id(t)] = f"n{len(nodes)}"
        nodes.append({"name": names[id(t)], **config, "inbound": [_name(s, names, captures) for s in t.inputs]})
    graph = {"inputs": [f"v{k}" for k in range(len(args))], "nodes": nodes,
             "outputs": [_name(t, names, captures) for t in outs], "output_specs": [spec_of(t) for t in outs]}
    return graph, several


def _name(t, names: dict, captures: list) -> str:
    if id(t) in names:
        return names[id(t)]
    return f"c{next(k for k, c in enumerate(captures) if c is t)}"


def finish(graph: dict, captures: list) -> dict:
    """The sub-graph's input list once every capture of the op is known."""
    return {**graph, "inputs": graph["inputs"] + [f"c{k}" for k in range(len(captures))]}


def check_same(what: str, first: list[dict], second: list[dict], names: tuple[str, str]) -> None:
    """A clear error where two lists of output specs (two branches, a body and its loop variables) differ."""
    if len(first) != len(second):
        raise ValueError(f"{what}: {names[0]} has {len(first)} tensor(s), {names[1]} {len(second)}; they must have "
                         "the same structure")
    for k, (a, b) in enumerate(zip(first, second)):
        if a != b:
            raise ValueError(f"{what}: tensor {k} of {names[0]} is {describe(a)}, of {names[1]} {describe(b)}; they "
                             "must have the same shape, dtype and batch axis (ops.cast or ops.reshape one of them)")


# -- the reference: NumPy forward and backward ----------------------------------------------------------------------

def _run_node(node: dict, inputs: list, dtype):
    from polykeras.layers.operation import op_params, resolve_args
    from polykeras.ops import registry

    op = registry.get(node["op"])
    arrays = resolve_args(node["args"], inputs)
    if dtype is not None:
        arrays = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and "input" not in arg else a
                  for a, arg in zip(arrays, node["args"])]
    params = op_params(node.get("params", {}), dtype) if dtype is not None else _tuples(node.get("params", {}))
    return op, arrays, params


def _tuples(params: dict) -> dict:
    from polykeras.layers.operation import tuples

    return {k: tuples(v) for k, v in params.items()}


def evaluate(graph: dict, inputs: list) -> tuple[list, list]:
    """The sub-graph's outputs on ``inputs`` and what :func:`backprop` needs (each node's arrays and output)."""
    dtype = graph.get("compute_dtype")
    values = dict(zip(graph["inputs"], inputs))
    cache = []
    for node in graph["nodes"]:
        op, arrays, params = _run_node(node, [values[n] for n in node["inbound"]], dtype)
        y = np.asarray(op.forward(*arrays, **params))
        values[node["name"]] = y
        cache.append((op, arrays, params, y))
    return [values[n] for n in graph["outputs"]], (cache, values)


def backprop(graph: dict, cache, d_outputs: list) -> list:
    """Each input's cotangent (``None`` where none reaches it, or for an integer input) given the
    outputs' (``None`` for an output that gets none)."""
    nodes, values = cache
    grads: dict[str, np.ndarray] = {}
    for name, d in zip(graph["outputs"], d_outputs):
        if d is not None:
            grads[name] = d if name not in grads else grads[name] + d
    for node, (op, arrays, params, y) in reversed(list(zip(graph["nodes"], nodes))):
        dy = grads.pop(node["name"], None)
        if dy is None or not op.differentiable:
            continue
        d_arrays = op.vjp(dy, y, tuple(arrays), **params)
        inputs = [node["inbound"][a["input"]] for a in node["args"] if "input" in a]
        for source, d in zip(inputs, [d for d, a in zip(d_arrays, node["args"]) if "input" in a]):
            if d is not None:
                grads[source] = d if source not in grads else grads[source] + d
    out = []
    for name in graph["inputs"]:
        d, value = grads.get(name), values.get(name)
        if d is None or np.asarray(value).dtype.kind not in "fc":
            out.append(None)
        else:
            out.append(np.broadcast_to(d, np.shape(value)).astype(np.asarray(value).dtype))
    return out
