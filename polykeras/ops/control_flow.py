"""Control flow on tensor values: Keras 3's ``ops.cond``, ``ops.while_loop`` and ``ops.fori_loop``.

On concrete arrays they run as Python control flow, as Keras's NumPy backend does. On
symbolic tensors (a functional model, a custom layer's traced ``call()``) the branches or the
loop body are traced once, on symbolic stand-ins, into sub-graphs (:mod:`.subgraph`) that one
``Operation`` node per used output carries; every backend runs them with its own control flow
(``lax.cond``/``lax.fori_loop`` in JAX, Python in torch's step, ``keras.ops`` on Keras).

The reference (the registry entries below): forward by evaluating the sub-graphs, and a
hand-written VJP -- for ``cond`` the taken branch's (the predicate gets none); for
``fori_loop`` (static ``lower``/``upper``) and ``while_loop`` with ``maximum_iterations``,
reverse mode through the recorded iterations. A ``while_loop`` without ``maximum_iterations``
runs forward only: differentiating through it is an error, as in JAX.

Structures: one tensor, or a flat tuple/list of tensors (Keras also takes nested ones).
A node computes the whole control flow and returns its ``output``-th tensor; a model that
uses several outputs of one call has one node per output.
"""

from __future__ import annotations

import numpy as np

from . import subgraph
from .registry import register


def _symbolic(value) -> bool:
    from polykeras.layers.symbolic import SymbolicTensor

    return isinstance(value, SymbolicTensor)


def _tracing() -> bool:
    from polykeras.layers.symbolic import TRACING

    return bool(TRACING)


def _as_symbolic(values: list) -> list:
    """Loop variables as symbolic tensors (a concrete one becomes a constant node)."""
    from polykeras.layers.operation import constant

    return [v if _symbolic(v) else constant(v) for v in values]


def _nodes(op_name: str, operands: list, params: dict, specs: list, several: bool):
    """One ``Operation`` node per output (a list/tuple when the function returned one)."""
    from polykeras.layers.operation import record
    from polykeras.ops import registry

    outs = [record(registry.get(op_name), list(operands), {**params, "output": k}) for k in range(len(specs))]
    return outs if several else outs[0]


# -- public functions ---------------------------------------------------------------------------------------------

def cond(pred, true_fn, false_fn):
    """ops.cond(pred, true_fn, false_fn): ``true_fn()`` if the scalar ``pred`` is true, else ``false_fn()``.
    On a symbolic ``pred`` both branches are traced; they must return the same structure of tensors of
    the same shapes and dtypes. In a model ``pred`` cannot depend on the batch (a scalar of a custom
    layer's variables, a constant): choose per sample with ``ops.where``."""
    if not _symbolic(pred):
        return true_fn() if bool(np.asarray(pred)) else false_fn()
    if pred.shape != () and tuple(pred.shape) != (1,):
        raise ValueError(f"ops.cond: pred must be a scalar, got a tensor of shape {pred.shape}; for a choice per "
                         "entry use ops.where(condition, x, y)")
    captures: list = []
    true_graph, several = subgraph.trace(true_fn, [], "ops.cond's true_fn", captures)
    false_graph, several_false = subgraph.trace(false_fn, [], "ops.cond's false_fn", captures)
    if several != several_false:
        raise ValueError("ops.cond: one branch returns a tuple/list and the other a single tensor; they must "
                         "have the same structure")
    subgraph.check_same("ops.cond", true_graph["output_specs"], false_graph["output_specs"], ("true_fn", "false_fn"))
    params = {"true_fn": subgraph.finish(true_graph, captures), "false_fn": subgraph.finish(false_graph, captures)}
    return _nodes("cond", [pred] + captures, params, true_graph["output_specs"], several)


def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """ops.while_loop(cond, body, loop_vars, maximum_iterations=None): while ``cond(*loop_vars)``
    (and fewer than ``maximum_iterations`` steps), ``loop_vars = body(*loop_vars)``; returns the
    final loop variables in ``loop_vars``'s structure (a tuple for a list/tuple). Traced, it is
    differentiable only with ``maximum_iterations`` (reverse mode needs a bound, as in JAX)."""
    flat, several = subgraph.flatten(loop_vars, "ops.while_loop's loop_vars")
    if maximum_iterations is not None:
        maximum_iterations = int(maximum_iterations)
    if not (_tracing() or any(_symbolic(v) for v in flat)):
        values, step = tuple(np.asarray(v) for v in flat), 0
        while cond(*values) and (maximum_iterations is None or step < maximum_iterations):
            values, step = tuple(subgraph.flatten(body(*values), "ops.while_loop's body")[0]), step + 1
        return values if several else values[0]
    flat = _as_symbolic(flat)
    specs = [subgraph.spec_of(v) for v in flat]
    args = [subgraph.placeholder(s, f"loop variable {k}") for k, s in enumerate(specs)]
    captures: list = []
    cond_graph, _ = subgraph.trace(cond, args, "ops.while_loop's cond", captures)
    if len(cond_graph["output_specs"]) != 1 or cond_graph["output_specs"][0]["shape"] not in ([], [1]):
        raise ValueError("ops.while_loop: cond must return one scalar (a boolean tensor of shape ()), got "
                         + ", ".join(subgraph.describe(s) for s in cond_graph["output_specs"]))
    body_graph, _ = subgraph.trace(body, args, "ops.while_loop's body", captures)
    subgraph.check_same("ops.while_loop", body_graph["output_specs"], specs, ("body's result", "loop_vars"))
    params = {"cond": subgraph.finish(cond_graph, captures), "body": subgraph.finish(body_graph, captures),
              "maximum_iterations": maximum_iterations}
    outs = _nodes("while_loop", flat + captures, params, specs, True)
    return tuple(outs) if several else outs[0]


def fori_loop(lower, upper, body_fun, init_val):
    """ops.fori_loop(lower, upper, body_fun, init_val): ``val = body_fun(i, val)`` for ``i`` in
    ``range(lower, upper)``; ``init_val`` one tensor or a flat tuple/list. Traced with Python
    ints ``lower``/``upper`` (a static trip count) it is differentiable; with tensor bounds it is a
    ``while_loop`` without a bound (forward only)."""
    flat, several = subgraph.flatten(init_val, "ops.fori_loop's init_val")
    bounds_symbolic = _symbolic(lower) or _symbolic(upper)
    if not (_tracing() or bounds_symbolic or any(_symbolic(v) for v in flat)):
        val = init_val
        for i in range(int(lower), int(upper)):
            val = body_fun(i, val)
        return val

    def rebuild(values):
        return type(init_val)(values) if several else values[0]

    if bounds_symbolic:
        from polykeras import ops

        out = while_loop(lambda i, *v: ops.less(i, upper), lambda i, *v: (i + 1,) + _flat(body_fun(i, rebuild(v))),
                         (lower,) + tuple(flat))
        return rebuild(list(out[1:]))
    flat = _as_symbolic(flat)
    specs = [subgraph.spec_of(v) for v in flat]
    index = subgraph.placeholder({"shape": [], "dtype": "int32", "batched": False}, "loop index")
    args = [subgraph.placeholder(s, f"loop variable {k}") for k, s in enumerate(specs)]
    captures: list = []
    body_graph, _ = subgraph.trace(lambda i, *v: body_fun(i, rebuild(list(v))), [index] + args,
                                   "ops.fori_loop's body_fun", captures)
    subgraph.check_same("ops.fori_loop", body_graph["output_specs"], specs, ("body_fun's result", "init_val"))
    params = {"lower": int(lower), "upper": int(upper), "body": subgraph.finish(body_graph, captures)}
    return rebuild(_nodes("fori_loop", flat + captures, params, specs, True))


def _flat(value) -> tuple:
    return tuple(subgraph.flatten(value, "ops.fori_loop's body_fun")[0])


# -- the reference: forward and hand-written VJP ------------------------------------------------------------------

def _cond_forward(pred, *captures, true_fn=None, false_fn=None, output=0):
    outs, _ = subgraph.evaluate(true_fn if bool(np.asarray(pred)) else false_fn, list(captures))
    return outs[output]


def _cond_vjp(g, y, arrays, true_fn=None, false_fn=None, output=0):
    graph = true_fn if bool(np.asarray(arrays[0])) else false_fn
    outs, cache = subgraph.evaluate(graph, list(arrays[1:]))
    d = [None] * len(outs)
    d[output] = g
    return [None] + subgraph.backprop(graph, cache, d)


def _n_vars(graph: dict) -> int:
    return len(graph["outputs"])


def _while(operands, cond, body, maximum_iterations, record: bool):
    n = _n_vars(body)
    values, captures = list(operands[:n]), list(operands[n:])
    caches, step = [], 0
    while maximum_iterations is None or step < maximum_iterations:
        if not bool(np.asarray(subgraph.evaluate(cond, values + captures)[0][0])):
            break
        new, cache = subgraph.evaluate(body, values + captures)
        if record:
            caches.append(cache)
        values, step = new, step + 1
    return values, caches


def _while_forward(*operands, cond=None, body=None, maximum_iterations=None, output=0):
    return _while(operands, cond, body, maximum_iterations, record=False)[0][output]


def _reverse(body: dict, caches: list, n: int, n_captures: int, g, output: int, operands) -> list:
    """Reverse mode through recorded body iterations: the loop variables' cotangents flow back
    step by step, the captures' add up over the steps."""
    d_vars = [None] * n
    d_vars[output] = g
    d_caps = [None] * n_captures
    for cache in reversed(caches):
        d_in = subgraph.backprop(body, cache, d_vars)
        d_vars = d_in[-(n + n_captures):len(d_in) - n_captures]
        for k, d in enumerate(d_in[len(d_in) - n_captures:] if n_captures else []):
            if d is not None:
                d_caps[k] = d if d_caps[k] is None else d_caps[k] + d
    return [None if d is None or np.asarray(v).dtype.kind != "f" else d
            for d, v in zip(d_vars + d_caps, operands)]


def _while_vjp(g, y, arrays, cond=None, body=None, maximum_iterations=None, output=0):
    if maximum_iterations is None:
        raise ValueError("ops.while_loop without maximum_iterations cannot be differentiated (reverse mode needs a "
                         "bound on the number of steps, as in JAX): give maximum_iterations=..., use ops.fori_loop "
                         "with Python int bounds, or ops.stop_gradient on what flows into the loop")
    _, caches = _while(arrays, cond, body, maximum_iterations, record=True)
    n = _n_vars(body)
    return _reverse(body, caches, n, len(arrays) - n, g, output, arrays)


def _fori(operands, lower, upper, body, record: bool):
    n = _n_vars(body)
    values, captures = list(operands[:n]), list(operands[n:])
    caches = []
    for i in range(lower, upper):
        values, cache = subgraph.evaluate(body, [i] + values + captures)
        if record:
            caches.append(cache)
    return values, caches


def _fori_forward(*operands, lower=0, upper=0, body=None, output=0):
    return _fori(operands, lower, upper, body, record=False)[0][output]


def _fori_vjp(g, y, arrays, lower=0, upper=0, body=None, output=0):
    _, caches = _fori(arrays, lower, upper, body, record=True)
    n = _n_vars(body)
    return _reverse(body, caches, n, len(arrays) - n, g, output, arrays)


def _infer(params: dict) -> tuple[tuple, str, bool]:
    """``(shape, dtype, batched)`` of the node's output from the traced sub-graph: evaluating a loop on
    example arrays (the other ops' shape rule) might never end."""
    graph = params.get("true_fn") or params["body"]
    spec = graph["output_specs"][params.get("output", 0)]
    return tuple(spec["shape"]), spec["dtype"], spec["batched"]


register("cond", ("operands*",), _cond_forward, _cond_vjp,
         "``true_fn`` if ``pred`` (operand 0) else ``false_fn``, each a sub-graph of the captured operands; "
         "output ``output`` of the taken branch", infer=_infer, true_fn=None, false_fn=None, output=0)
register("while_loop", ("operands*",), _while_forward, _while_vjp,
         "loop variables then captures; ``body`` while ``cond`` (sub-graphs), at most ``maximum_iterations`` "
         "steps; final loop variable ``output``", infer=_infer, cond=None, body=None, maximum_iterations=None,
         output=0)
register("fori_loop", ("operands*",), _fori_forward, _fori_vjp,
         "loop variables then captures; ``body(i, *vars, *captures)`` for i in range(lower, upper); final loop "
         "variable ``output``", infer=_infer, lower=0, upper=0, body=None, output=0)
