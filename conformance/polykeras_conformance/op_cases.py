"""L0 op cases: every op of :mod:`polykeras.ops` that takes a tensor, forward and
gradients against the reference, in the spirit of the array-api test suite.

Each case is a small functional graph around one op under test, on
hypothesis-drawn shapes (rank 1-3 after the batch axis, sizes 2-4) and
arguments: negative and positive axes, ``keepdims``, tuples of axes,
broadcasting between inputs of one rank with drawn size-1 axes, a Python
constant instead of a second tensor. Ops defined on part of the line (``log``,
``sqrt``, ``reciprocal``, ``power``'s base, ``divide``'s divisor) read
``softplus(x) + 0.5`` instead of ``x``, so every draw is inside their domain.
Ops whose result reaches the loss only through another op (comparisons and
logic, ``argmax``, ``one_hot``, ``cast``, the ``*_like`` ops, ``convert_to_tensor``,
``broadcast_to``/``slice`` on a weight) are in :mod:`.op_cases_indirect`; the
creation ops that take no tensor (``arange``, ``zeros``, ...) are never model nodes
(:func:`without_case` says why; the report's op matrix lists them).

Quick mode merges several ops into one case; :func:`attributed` names each
measured quantity's op, so the report gives every op its own verdict.
"""

from __future__ import annotations

from hypothesis import strategies as st

from polykeras_conformance import op_cases_indirect as indirect
from polykeras_conformance.op_graph import SHAPE as _shape
from polykeras_conformance.op_graph import axis as _axis
from polykeras_conformance.op_graph import graph as _graph
from polykeras_conformance.op_graph import inp as _inp
from polykeras_conformance.op_graph import nest as _nest
from polykeras_conformance.op_graph import op as _op

UNARY = ["negative", "abs", "exp", "square", "sin", "cos", "tanh", "sigmoid", "relu", "softplus", "silu", "sign"]
POSITIVE_UNARY = ["log", "log1p", "sqrt", "reciprocal"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]
POSITIVE_BINARY = ["divide", "power"]  # the second (divide) or first (power) operand made positive
REDUCTIONS = ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp"]

GROUPS = {"element-wise": UNARY + POSITIVE_UNARY + BINARY + POSITIVE_BINARY
          + ["gelu", "softmax", "log_softmax", "clip", "where", "stop_gradient"],
          "reductions": REDUCTIONS + ["cumsum"],
          "shapes": ["reshape", "expand_dims", "squeeze", "transpose", "concatenate", "stack", "flip", "tile", "repeat",
                     "pad", "take", "take_along_axis", "tril", "triu", "getitem", "top_k_indices",
                     *indirect.ON_WEIGHTS],
          "contractions": ["matmul", "einsum", "tensordot", "normalize", "dot_product_attention"],
          "control flow": ["cond", "while_loop", "fori_loop"], **indirect.GROUPS}


def _positive(node_index_base: int, inbound: str) -> list[dict]:
    """Nodes making ``softplus(inbound) + 0.5`` (strictly positive, gradient nowhere zero)."""
    return [{"layer": _op("softplus", [_inp()]), "inbound": [inbound]},
            {"layer": _op("add", [_inp(), {"constant": 0.5}]), "inbound": [f"n{node_index_base}"]}]


@st.composite
def _elementwise(draw, name: str):
    shape = draw(_shape)
    if name in UNARY or name in ("gelu",):
        params = {"approximate": draw(st.booleans())} if name == "gelu" else {}
        return _graph([shape], [{"layer": _op(name, [_inp()], **params), "inbound": ["in0"]}])
    if name == "stop_gradient":  # x * stop_gradient(x): the gradient is x, not 2x
        return _graph([shape], [{"layer": _op(name, [_inp()]), "inbound": ["in0"]},
                                {"layer": _op("multiply", [_inp(0), _inp(1)]), "inbound": ["in0", "n0"]}])
    if name in POSITIVE_UNARY:
        return _graph([shape], _positive(0, "in0") + [{"layer": _op(name, [_inp()]), "inbound": ["n1"]}])
    if name in ("softmax", "log_softmax"):
        return _graph([shape], [{"layer": _op(name, [_inp()], axis=_axis(draw, len(shape))), "inbound": ["in0"]}])
    if name == "clip":
        lo = draw(st.sampled_from([-1.0, -0.5, 0.0]))
        return _graph([shape], [{"layer": _op(name, [_inp()], x_min=lo, x_max=lo + draw(st.sampled_from([0.5, 1.5]))),
                                 "inbound": ["in0"]}])
    other = [d if draw(st.booleans()) else 1 for d in shape]
    first, second = draw(st.permutations([shape, other]))
    if name == "where":  # where(x > c, x, y): the comparison is recorded, not differentiated
        nodes = [{"layer": _op("greater", [_inp(), {"constant": draw(st.sampled_from([-0.3, 0.0, 0.4]))}]),
                  "inbound": ["in0"]},
                 {"layer": _op("where", [_inp(0), _inp(1), _inp(2)]), "inbound": ["n0", "in0", "in1"]}]
        return _graph([shape, other], nodes)
    if draw(st.booleans()) and name in BINARY:  # a Python constant on either side
        constant = {"constant": draw(st.sampled_from([-1.5, 0.25, 2.0]))}
        args = [_inp(), constant] if draw(st.booleans()) else [constant, _inp()]
        return _graph([shape], [{"layer": _op(name, args), "inbound": ["in0"]}])
    if name in POSITIVE_BINARY:
        positive_first = name == "power"
        nodes = _positive(0, "in0" if positive_first else "in1")
        inbound = ["n1", "in1"] if positive_first else ["in0", "n1"]
        return _graph([first, second], nodes + [{"layer": _op(name, [_inp(0), _inp(1)]), "inbound": inbound}])
    return _graph([first, second], [{"layer": _op(name, [_inp(0), _inp(1)]), "inbound": ["in0", "in1"]}])


@st.composite
def _reduction(draw, name: str):
    # sizes >= 2: the standard deviation of one entry is 0, where its gradient is infinite in every framework
    shape = draw(st.lists(st.integers(2, 4), min_size=2, max_size=3)) if name != "cumsum" else draw(_shape)
    if name == "cumsum":
        return _graph([shape], [{"layer": _op(name, [_inp()], axis=_axis(draw, len(shape))), "inbound": ["in0"]}])
    axes = sorted(set(draw(st.lists(st.integers(1, len(shape)), min_size=1, max_size=len(shape)))))
    keepdims = draw(st.booleans())
    # a reduction over every non-batch axis without keepdims leaves (batch,): keep a trailing axis for the loss
    if len(axes) == len(shape) and not keepdims:
        keepdims = True
    axis = axes[0] if len(axes) == 1 and draw(st.booleans()) else [a - len(shape) - 1 if draw(st.booleans()) else a
                                                                  for a in axes]
    return _graph([shape], [{"layer": _op(name, [_inp()], axis=axis, keepdims=keepdims), "inbound": ["in0"]}])


@st.composite
def _shapes(draw, name: str):
    if name in indirect.ON_WEIGHTS:
        return draw(indirect.on_weight(name))
    shape = draw(_shape)
    rank = len(shape)
    one = lambda **params: _graph([shape], [{"layer": _op(name, [_inp()], **params), "inbound": ["in0"]}])  # noqa: E731
    if name == "reshape":
        size = 1
        for d in shape:
            size *= d
        factor = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
        return one(newshape=[-1, factor, size // factor] if draw(st.booleans()) else [-1, size])
    if name == "expand_dims":
        return one(axis=draw(st.sampled_from([1, rank + 1, -1, -2])))
    if name == "squeeze":
        shape.insert(draw(st.integers(0, rank)), 1)
        return _graph([shape], [{"layer": _op(name, [_inp()], axis=shape.index(1) + 1), "inbound": ["in0"]}])
    if name == "transpose":
        return one(axes=[0] + [a + 1 for a in draw(st.permutations(list(range(rank))))])
    if name in ("concatenate", "stack"):
        axis = _axis(draw, rank) if name == "concatenate" else draw(st.integers(1, rank + 1))
        other = list(shape)
        if name == "concatenate":
            other[axis % (rank + 1) - 1] = draw(st.integers(1, 3))
        return _graph([shape, other], [{"layer": _op(name, [_inp(0), _inp(1)], axis=axis), "inbound": ["in0", "in1"]}])
    if name == "flip":
        return one(axis=_axis(draw, rank))
    if name == "tile":
        return one(repeats=[1] + [draw(st.integers(2, 3)) if i == 0 else draw(st.integers(1, 2)) for i in range(rank)])
    if name == "repeat":
        return one(repeats=draw(st.integers(2, 3)), axis=_axis(draw, rank))
    if name == "pad":
        return one(pad_width=[[0, 0]] + [[draw(st.integers(1, 2)), draw(st.integers(0, 2))] for _ in range(rank)])
    if name == "take":  # repeated and negative indices: their gradients add up
        axis = _axis(draw, rank)
        size = shape[axis % (rank + 1) - 1]
        indices = draw(st.lists(st.integers(-size, size - 1), min_size=1, max_size=4))
        return _graph([shape], [{"layer": _op(name, [_inp(), {"constant": indices, "dtype": "int64"}], axis=axis),
                                 "inbound": ["in0"]}])
    if name == "take_along_axis":
        axis = _axis(draw, rank)
        k = axis % (rank + 1)
        size = shape[k - 1]
        idx_shape = [1] + [draw(st.integers(1, 3)) if i == k - 1 else d for i, d in enumerate(shape)]
        count = 1
        for d in idx_shape:
            count *= d
        flat = draw(st.lists(st.integers(0, size - 1), min_size=count, max_size=count))
        indices = _nest(flat, idx_shape)
        return _graph([shape], [{"layer": _op(name, [_inp(), {"constant": indices, "dtype": "int64"}], axis=axis),
                                 "inbound": ["in0"]}])
    if name == "top_k_indices":  # ops.top_k: the values are take_along_axis(x, indices), the gradient's path
        k = draw(st.integers(1, shape[-1]))
        return _graph([shape], [{"layer": _op(name, [_inp()], k=k, sorted=True), "inbound": ["in0"]},
                                {"layer": _op("take_along_axis", [_inp(0), _inp(1)], axis=-1),
                                 "inbound": ["in0", "n0"]}])
    if name == "getitem":  # x[:, ...]: a slice with a drawn step, an int, a new axis
        size = shape[-1]
        start = draw(st.integers(-size, size - 1))
        last = {"slice": [start, None, draw(st.sampled_from([None, 2, -1]))]} if draw(st.booleans()) else start
        key = [{"slice": [None, None, None]}] + (["..."] if rank > 1 else []) + (
            ["newaxis"] if draw(st.booleans()) else []) + [last]
        return one(key=key)
    # tril / triu: on the last two axes, which never include the batch axis
    shape = draw(st.lists(st.integers(2, 4), min_size=2, max_size=3))
    return _graph([shape], [{"layer": _op(name, [_inp()], k=draw(st.integers(-1, 1))), "inbound": ["in0"]}])


@st.composite
def _contraction(draw, name: str):
    m, k, n = (draw(st.integers(2, 4)) for _ in range(3))
    if name == "matmul":  # two batched inputs, or an input times a constant matrix
        if draw(st.booleans()):
            return _graph([[m, k], [k, n]], [{"layer": _op(name, [_inp(0), _inp(1)]), "inbound": ["in0", "in1"]}])
        w = [[round(0.1 * (i - j), 2) for j in range(n)] for i in range(k)]
        return _graph([[m, k]], [{"layer": _op(name, [_inp(), {"constant": w, "dtype": "float64"}]),
                                  "inbound": ["in0"]}])
    if name == "einsum":
        subscripts, shapes = draw(st.sampled_from([("bij,bjk->bik", [[m, k], [k, n]]), ("bi,bi->bi", [[k], [k]]),
                                                   ("bij,bkj->bki", [[m, k], [n, k]]), ("bij->bji", [[m, k]]),
                                                   ("...ij,...j->...i", [[m, k], [k]])]))
        args = [_inp(i) for i in range(len(shapes))]
        return _graph(shapes, [{"layer": _op(name, args, subscripts=subscripts),
                                "inbound": [f"in{i}" for i in range(len(shapes))]}])
    if name == "tensordot":  # contract the input's last axis with a constant's first
        w = [[round(0.2 * (i + 1) - 0.1 * j, 2) for j in range(n)] for i in range(k)]
        return _graph([[m, k]], [{"layer": _op(name, [_inp(), {"constant": w, "dtype": "float64"}], axes=1),
                                  "inbound": ["in0"]}])
    if name == "dot_product_attention":  # query (T, N, H), key (S, N, H), value (S, N, Hv), a constant mask
        t, s, heads, h, hv = (draw(st.integers(lo, 3)) for lo in (2, 2, 1, 2, 2))
        rows = [draw(st.lists(st.booleans(), min_size=s, max_size=s)) for _ in range(t)]  # a row may hide every key
        return _graph([[t, heads, h], [s, heads, h], [s, heads, hv]],
                      [{"layer": _op(name, [_inp(0), _inp(1), _inp(2), {"constant": [[rows]], "dtype": "bool"}],
                                     scale=draw(st.sampled_from([None, 0.5])), is_causal=draw(st.booleans())),
                        "inbound": ["in0", "in1", "in2"]}])
    shape = draw(_shape)
    return _graph([shape], [{"layer": _op(name, [_inp()], axis=_axis(draw, len(shape))), "inbound": ["in0"]}])


def _sub(n_inputs: int, nodes: list[tuple], outputs: list[str], specs: list[dict]) -> dict:
    """A control-flow op's sub-graph (:mod:`polykeras.ops.subgraph`): inputs ``v0..`` (loop index and
    variables) then ``c0..`` (captures); ``nodes`` as ``(op, args, inbound, params)``."""
    return {"inputs": [f"v{k}" for k in range(n_inputs[0])] + [f"c{k}" for k in range(n_inputs[1])],
            "nodes": [{"name": f"n{i}", "op": op, "args": args, "params": params, "inbound": inbound}
                      for i, (op, args, inbound, params) in enumerate(nodes)],
            "outputs": outputs, "output_specs": specs}


@st.composite
def _control_flow(draw, name: str):
    """Two inputs ``x`` and ``c`` of one drawn shape, captured by the branches or the loop body:
    ``cond`` on a drawn constant predicate (``square(x) * c``, or ``x - c``); ``fori_loop`` of 1-4
    residual steps ``h + 0.5 * (h * c + i)``; ``while_loop`` over ``(counter, h)`` with
    ``h = h * c + 0.5`` while the counter is below 3, bounded by a drawn ``maximum_iterations``
    (below or above 3, so either stops it). Polynomials only: Keras's own ``sin``/``tanh`` on its
    JAX and torch backends differ from NumPy's by ~3e-8 in float64 (their element-wise cells show
    it), which would hide what these cases judge -- the branch taken and the iterations run."""
    shape = draw(_shape)
    spec = {"shape": [None] + shape, "dtype": "float32", "batched": True}
    two = [_inp(0), _inp(1)]
    if name == "cond":
        true_fn = _sub((0, 2), [("square", [_inp()], ["c0"], {}), ("multiply", two, ["n0", "c1"], {})], ["n1"], [spec])
        false_fn = _sub((0, 2), [("subtract", two, ["c0", "c1"], {})], ["n0"], [spec])
        node = _op(name, [{"constant": draw(st.booleans())}, _inp(0), _inp(1)], true_fn=true_fn, false_fn=false_fn,
                   output=0)
    elif name == "fori_loop":  # body(i, h, c)
        body = _sub((2, 1), [("cast", [_inp()], ["v0"], {"dtype": "float32"}), ("multiply", two, ["v1", "c0"], {}),
                             ("add", two, ["n1", "n0"], {}), ("multiply", [_inp(), {"constant": 0.5}], ["n2"], {}),
                             ("add", two, ["v1", "n3"], {})],
                    ["n4"], [spec])
        node = _op(name, [_inp(0), _inp(1)], lower=0, upper=draw(st.integers(1, 4)), body=body, output=0)
    else:  # while_loop over (counter, h) with the capture c
        counter = {"shape": [], "dtype": "int32", "batched": False}
        cond = _sub((2, 1), [("less", [_inp(), {"constant": 3}], ["v0"], {})], ["n0"],
                    [{"shape": [], "dtype": "bool", "batched": False}])
        body = _sub((2, 1), [("add", [_inp(), {"constant": 1}], ["v0"], {}), ("multiply", two, ["v1", "c0"], {}),
                             ("add", [_inp(), {"constant": 0.5}], ["n1"], {})], ["n0", "n2"], [counter, spec])
        node = _op(name, [{"constant": 0, "dtype": "int32"}, _inp(0), _inp(1)], cond=cond, body=body,
                   maximum_iterations=draw(st.sampled_from([2, 5])), output=1)
    return _graph([shape, shape], [{"layer": node, "inbound": ["in0", "in1"]}])


STRATEGIES = {"element-wise": _elementwise, "reductions": _reduction, "shapes": _shapes,
              "contractions": _contraction, "control flow": _control_flow, **indirect.STRATEGIES}


def _merged(graphs: list[dict]) -> dict:
    """Several graphs side by side as one model of several inputs and outputs (its loss is the
    sum of theirs, so every output's gradients are those of its own graph)."""
    inputs, nodes, outputs = [], [], []
    for graph in graphs:
        rename = {f"in{k}": f"in{k + len(inputs)}" for k in range(len(graph["inputs"]))}
        rename.update({f"n{i}": f"n{i + len(nodes)}" for i in range(len(graph["nodes"]))})
        nodes += [{"layer": node["layer"], "inbound": [rename[name] for name in node["inbound"]]}
                  for node in graph["nodes"]]
        inputs += graph["inputs"]
        outputs += [rename[name] for name in graph["outputs"]]
    return {"inputs": inputs, "nodes": nodes, "outputs": outputs}


def op_cases(examples_per_op: int, draw, per_case: int = 1) -> list[dict]:
    """``examples_per_op`` derandomised draws per op; ``draw(strategy, n)`` is the suite's sampler.
    ``per_case`` > 1 puts that many ops of a group into one model (quick mode: fewer models to
    build, which is most of a Keras backend's time per case); the case id lists its ops."""
    cases = []
    for group, names in GROUPS.items():
        drawn = []
        for name in names:
            seen = set()
            for graph in draw(lambda name=name, group=group: STRATEGIES[group](name), examples_per_op):
                key = repr(graph)
                if key not in seen:
                    seen.add(key)
                    drawn.append((f"{name}#{len(seen)}", indirect.name_weights(graph, f"{name}#{len(seen)}")))
        for start in range(0, len(drawn), per_case):
            chunk = drawn[start:start + per_case]
            graph = chunk[0][1] if len(chunk) == 1 else _merged([g for _, g in chunk])
            cases.append({"id": "op:" + ",".join(case_id for case_id, _ in chunk), "group": f"Ops: {group}",
                          "graph": graph, "vocab": None, "loss": "mse", "target": "real", "training": True,
                          **({"parts": _parts(chunk)} if len(chunk) > 1 else {})})
    return cases


def _parts(chunk: list[tuple[str, dict]]) -> dict[str, str]:
    """Which op of a merged case each of its measured quantities belongs to: output ``i`` is the
    ``i``-th op's, the gradient of input ``in<k>`` or of a weight that of the op whose graph has it."""
    parts, k = {}, 0
    for i, (case_id, graph) in enumerate(chunk):
        parts[f"output {i}"] = case_id
        parts.update({quantity: case_id for quantity in indirect.weight_quantities(graph)})
        for _ in graph["inputs"]:
            parts[f"grad input in{k}"] = case_id
            k += 1
    return parts


def attributed(result: dict, case: dict) -> dict:
    """A merged case's measurements with each quantity naming its op (``"output 2 [sin#1]"``), so that a
    failure is pinned on one op (the coverage matrix, :func:`op_of`)."""
    parts = case.get("parts")
    if not parts:
        return result
    return {f"{q} [{parts[q]}]" if q in parts else q: v for q, v in result.items()}


def op_of(case: str, quantity: str) -> list[str]:
    """The op(s) a check of an op case is about: the one its quantity names (a merged case); every op of
    the case for a check of the case as a whole (quantity ``"-"``: it did not run) or of a one-op case
    (``"op:relu#1"`` -> ``["relu"]``); none for a merged case's shared loss, which its ops' outputs and
    gradients already judge one by one."""
    if quantity.endswith("]") and " [" in quantity:
        return [quantity.rsplit(" [", 1)[1][:-1].split("#")[0]]
    ops = [part.split("#")[0] for part in case.removeprefix("op:").split(",")]
    return ops if len(ops) == 1 or quantity == "-" else []


#: the ops that take no tensor (creation from static arguments): never a node of a model
HOST_ONLY = ["arange", "eye", "full", "ones", "zeros"]


def without_case(name: str, differentiable: bool) -> str:
    """Why an op of :mod:`polykeras.ops` has no L0 case of its own."""
    if name in HOST_ONLY:
        return ("takes no tensor, so never a model node: NumPy computes it when traced and a model holds its "
                "value as a constant (the reading op's constant argument, or a `convert_to_tensor` node)")
    return "not written yet" if differentiable else "not written yet (no gradient: read it through a float op)"
