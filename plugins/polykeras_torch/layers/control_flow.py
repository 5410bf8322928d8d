"""``ops.cond``, ``ops.while_loop`` and ``ops.fori_loop`` nodes in torch: Python control flow on
the tensors inside the step (``bool(pred)``), differentiated by autograd through the branch taken
and every iteration run (a ``while_loop`` without ``maximum_iterations`` on values that need a
gradient is refused, as the reference and JAX refuse it). The branches and bodies are the node's sub-graphs
(:mod:`polykeras.ops.subgraph`), run with the same op functions as every ``Operation`` node; a
loop index is a Python int, as on Keras's NumPy backend."""

from __future__ import annotations

import numpy as np
import torch

from polykeras.layers.operation import op_params, resolve_args
from polykeras.ops import registry


def constant_tensor(value, name: str, dtype, device, int_dtype=None):
    """A constant argument of an op (the ``Operation`` node's and a sub-graph's): indices int64, bools
    bool, numbers in the compute ``dtype`` -- except, with ``int_dtype``, an integer next to an integer
    tensor (``i + 1`` on a loop counter), which takes that tensor's dtype, as NumPy's weak scalars do
    in the reference (in the compute dtype the counter would turn float after one step)."""
    array = np.asarray(value)
    if name == "indices" or array.dtype.kind == "b":
        return torch.as_tensor(array, dtype=torch.int64 if name == "indices" else None, device=device)
    if int_dtype is not None and array.dtype.kind in "iu":
        return torch.as_tensor(array, dtype=int_dtype, device=device)
    return torch.as_tensor(array, dtype=dtype, device=device)


def _int_dtype(tensors: list):
    """The dtype of the first integer (not bool) tensor among a node's inputs, or ``None``."""
    return next((t.dtype for t in tensors if isinstance(t, torch.Tensor) and not t.is_floating_point()
                 and not t.is_complex() and t.dtype != torch.bool), None)


def run_graph(graph: dict, inputs: list) -> list:
    from .operation import OPS

    dtype = getattr(torch, graph.get("compute_dtype") or "float32")
    device = next((v.device for v in inputs if isinstance(v, torch.Tensor)), torch.device("cpu"))
    values = dict(zip(graph["inputs"], inputs))
    for node in graph["nodes"]:
        op = registry.get(node["op"])
        names = [t.rstrip("*") for t in op.tensors]
        names = names * len(node["args"]) if op.variadic else names
        inbound = [values[n] for n in node["inbound"]]
        int_dtype = _int_dtype(inbound)
        arrays = [a if isinstance(a, torch.Tensor) else constant_tensor(a, name, dtype, device, int_dtype)
                  for a, name in zip(resolve_args(node["args"], inbound), names)]
        values[node["name"]] = OPS[node["op"]](*arrays, **op_params(node.get("params", {}), dtype))
    return [values[n] for n in graph["outputs"]]


def _traced_dtypes(values: list, specs: list) -> list:
    """Loop variables in the integer or bool dtypes they were traced with: a counter's start (``0``) is a
    constant operand, which the ``Operation`` node makes in the compute dtype."""
    out = []
    for v, spec in zip(values, specs):
        if np.dtype(spec["dtype"]).kind in "iub" and isinstance(v, torch.Tensor):
            v = v.to(getattr(torch, np.dtype(spec["dtype"]).name))
        out.append(v)
    return out


def _cond(pred, *captures, true_fn=None, false_fn=None, output=0):
    return run_graph(true_fn if bool(pred) else false_fn, list(captures))[output]


def _while_loop(*operands, cond=None, body=None, maximum_iterations=None, output=0):
    n = len(body["outputs"])
    values, captures, step = _traced_dtypes(list(operands[:n]), body["output_specs"]), list(operands[n:]), 0
    if maximum_iterations is None and torch.is_grad_enabled() and any(
            isinstance(v, torch.Tensor) and v.requires_grad for v in operands):
        raise ValueError("ops.while_loop without maximum_iterations cannot be differentiated (reverse mode needs a "
                         "bound on the number of steps; the reference and JAX refuse it too): give "
                         "maximum_iterations=..., or use ops.fori_loop with Python int bounds")
    while maximum_iterations is None or step < maximum_iterations:
        if not bool(run_graph(cond, values + captures)[0]):
            break
        values, step = run_graph(body, values + captures), step + 1
    return values[output]


def _fori_loop(*operands, lower=0, upper=0, body=None, output=0):
    n = len(body["outputs"])
    values, captures = _traced_dtypes(list(operands[:n]), body["output_specs"]), list(operands[n:])
    for i in range(int(lower), int(upper)):
        values = run_graph(body, [i] + values + captures)
    return values[output]


OPS = {"cond": _cond, "while_loop": _while_loop, "fori_loop": _fori_loop}
