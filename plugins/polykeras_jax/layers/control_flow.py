"""``ops.cond``, ``ops.while_loop`` and ``ops.fori_loop`` nodes in JAX, inside the one jitted step:
``lax.cond``; ``lax.fori_loop`` with the node's static bounds (a scan, so reverse mode works);
``while_loop`` with ``maximum_iterations`` as a scan of that many steps that stop changing once
``cond`` is false (differentiable), without it ``lax.while_loop`` (forward only, as in JAX). The
branches and bodies are the node's sub-graphs (:mod:`polykeras.ops.subgraph`) run with the same
op functions as every ``Operation`` node."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from polykeras.layers.operation import op_params, resolve_args


def run_graph(graph: dict, inputs: list) -> list:
    from .operation import function

    dtype = graph.get("compute_dtype")
    values = dict(zip(graph["inputs"], inputs))
    for node in graph["nodes"]:
        arrays = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and dtype else a
                  for a in resolve_args(node["args"], [values[n] for n in node["inbound"]])]
        values[node["name"]] = function(node["op"])(*arrays, **op_params(node.get("params", {}), dtype))
    return [values[n] for n in graph["outputs"]]


def _scalar(pred):
    return jnp.asarray(pred).reshape(()).astype(bool)


def _cond(pred, *captures, true_fn=None, false_fn=None, output=0):
    return jax.lax.cond(_scalar(pred), lambda c: run_graph(true_fn, list(c))[output],
                        lambda c: run_graph(false_fn, list(c))[output], tuple(captures))


def _while_loop(*operands, cond=None, body=None, maximum_iterations=None, output=0):
    n = len(body["outputs"])
    start, captures = tuple(jnp.asarray(v) for v in operands[:n]), list(operands[n:])

    def go_on(values):
        return _scalar(run_graph(cond, list(values) + captures)[0])

    def step(values):
        return tuple(run_graph(body, list(values) + captures))

    if maximum_iterations is None:
        return jax.lax.while_loop(go_on, step, start)[output]

    def scan_step(carry, _):
        values, done = carry
        active = jnp.logical_and(jnp.logical_not(done), go_on(values))
        return (jax.lax.cond(active, step, lambda v: v, values), jnp.logical_not(active)), None

    (values, _), _ = jax.lax.scan(scan_step, (start, jnp.asarray(False)), None, length=maximum_iterations)
    return values[output]


def _fori_loop(*operands, lower=0, upper=0, body=None, output=0):
    n = len(body["outputs"])
    start, captures = tuple(jnp.asarray(v) for v in operands[:n]), list(operands[n:])
    return jax.lax.fori_loop(int(lower), int(upper), lambda i, values: tuple(run_graph(body, [i, *values, *captures])),
                             start)[output]


OPS = {"cond": _cond, "while_loop": _while_loop, "fori_loop": _fori_loop}
