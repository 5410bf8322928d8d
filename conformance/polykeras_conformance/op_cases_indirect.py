"""L0 cases for the ops whose result reaches the loss only through another op: comparisons and logic
(a boolean mask read by ``where``), ``argmax``/``argmin``/``one_hot`` (indices), ``cast``, the
``*_like`` ops and ``convert_to_tensor`` (constants), and ``broadcast_to``/``slice`` on a weight.

Each case computes a float from the op's output whose value and gradients the suite already compares:
``where(greater(x, t), x, y)``, ``x * one_hot(argmax(x, axis), n, axis=axis)``,
``x + cast(cast(x * k, "int32"), "float32")``, ``x + full_like(t, v)``, ``x * broadcast_to(w + c, shape)``.
A comparison or an argmax on the wrong axis, with the wrong broadcasting, off by one, or a cast
that rounds instead of truncating changes the output, and the gradients show which entries were picked.

Ties, where these ops jump: the inputs are the suite's seeded normal data, identical floats on every
backend (float64 or float32), and every comparison reads inputs, Python constants, or ``clip`` of an
input -- exact in every framework, since it returns the entry or a bound. So no backend can flip a
comparison by rounding, in either dtype, and the ties that tell ``greater`` from ``greater_equal`` (x
against ``clip(x, lo, hi)``: equal inside the bounds, above or below outside) are exact by construction;
the first, minimal draw (quick mode's) is that one.
``argmax`` reads the normal data directly, whose entries are distinct in float64 and in float32.
``cast`` to an integer truncates ``x * k``, one correctly rounded product, the same everywhere.
``tests/test_op_cases_indirect.py`` checks that every drawn case's masks and indices take more than one
value and are the same in float64 and float32, and that swapping an op for its partner (``greater`` for
``greater_equal``, ``any`` for ``all``, ...) changes the output.

``broadcast_to`` and ``slice`` take a static target shape, so in a model they apply to a tensor without
batch axis: a custom layer's weight (a ``Variable`` node, which a rebuilt graph initialises to zeros;
the case adds a constant of distinct values so that the forward shows where each entry lands).
"""

from __future__ import annotations

from hypothesis import strategies as st

from polykeras_conformance.op_graph import SHAPE, axes, axis, graph, inp, nest, node, op

COMPARISONS = ["equal", "not_equal", "greater", "greater_equal", "less", "less_equal"]
LOGIC = ["logical_and", "logical_or", "logical_not", "any", "all"]
INDICES = ["argmax", "argmin", "one_hot", "cast"]
CONSTANTS = ["zeros_like", "ones_like", "full_like", "convert_to_tensor"]
ON_WEIGHTS = ["broadcast_to", "slice"]  # part of the "shapes" group

GROUPS = {"comparisons": COMPARISONS + LOGIC, "indices and casts": INDICES, "constants": CONSTANTS}


def _other(draw, shape: list, whole_first: bool = False) -> list:
    """A second input's shape: ``shape`` with drawn axes of size 1 (broadcasting); ``whole_first``: the
    first, minimal draw keeps every axis (more pairs of entries where a few are too few)."""
    return [(1 if draw(st.booleans()) else d) if whole_first else (d if draw(st.booleans()) else 1) for d in shape]


def _where(mask: str, nodes: list, shapes: list) -> dict:
    """``where(mask, x, y)``: the mask picks each output entry and which input gets its gradient."""
    return graph(shapes, nodes + [node(op("where", [inp(0), inp(1), inp(2)]), mask, "in0", "in1")])


@st.composite
def comparison(draw, name: str):
    shape = draw(SHAPE)
    other = _other(draw, shape, whole_first=name in LOGIC)
    if name in COMPARISONS:
        # x against clip(x, lo, hi) (exact ties inside [lo, hi], either side outside it), the second input
        # (broadcasting) or a constant; equality is only ever true at a tie, so equal/not_equal read clip
        against = draw(st.sampled_from(["clipped"] + (["input", "constant"] if name not in ("equal", "not_equal")
                                                      else [])))
        nodes, swap = [], draw(st.booleans())  # swap: x on the right
        if against == "constant":
            args = [inp(), {"constant": draw(st.sampled_from([0.0, -0.4, 0.7]))}]
            nodes.append(node(op(name, args[::-1] if swap else args), "in0"))
        else:
            if against == "clipped":
                nodes.append(node(op("clip", [inp()], x_min=draw(st.sampled_from([-0.3, -0.6])),
                                     x_max=draw(st.sampled_from([0.4, 0.8]))), "in0"))
            pair = ["in0", "n0" if nodes else "in1"]
            nodes.append(node(op(name, [inp(0), inp(1)]), *(pair[::-1] if swap else pair)))
        return _where(f"n{len(nodes) - 1}", nodes, [shape, other])
    if name in ("any", "all"):  # over drawn axes of x > c; the row's sum where true, its negative where not
        c = draw(st.sampled_from([0.0, 0.5] if name == "any" else [0.0, -0.5]))  # mixed rows, where any != all
        reduce_axes, keepdims = axes(draw, len(shape))
        nodes = [node(op("greater", [inp(), {"constant": c}]), "in0"),
                 node(op(name, [inp()], axis=reduce_axes, keepdims=keepdims), "n0"),
                 node(op("sum", [inp()], axis=reduce_axes, keepdims=keepdims), "in0"),
                 node(op("negative", [inp()]), "n2"),
                 node(op("where", [inp(0), inp(1), inp(2)]), "n1", "n2", "n3")]
        return graph([shape], nodes)
    # a = x > c, b = y < -c: for `and` both true for about 4 pairs in 9, for `or` both false as often
    c = draw(st.sampled_from([0.4, 0.6] if name == "logical_or" else [-0.4, -0.6] if name == "logical_and"
                             else [0.0, 0.7]))
    a = node(op("greater", [inp(), {"constant": c}]), "in0")
    if name == "logical_not":
        return _where("n1", [a, node(op(name, [inp()]), "n0")], [shape, other])
    b = node(op("less", [inp(), {"constant": -c}]), "in1")
    return _where("n2", [a, b, node(op(name, [inp(0), inp(1)]), "n0", "n1")], [shape, other])


def _moved(rank: int, source: int, destination: int) -> list[int]:
    """``transpose``'s axes moving non-batch axis ``source`` to ``destination`` (positive, 1..rank)."""
    order = [a for a in range(1, rank + 1) if a != source]
    order.insert(destination - 1, source)
    return [0] + order


@st.composite
def index(draw, name: str):
    shape = draw(SHAPE)
    rank = len(shape)
    a = axis(draw, rank)
    size = shape[a % (rank + 1) - 1]
    if name in ("argmax", "argmin"):
        if draw(st.booleans()):  # keepdims: the picked entries, as take_along_axis reads them
            return graph([shape], [node(op(name, [inp()], axis=a, keepdims=True), "in0"),
                                   node(op("take_along_axis", [inp(0), inp(1)], axis=a), "in0", "n0")])
        return graph([shape], [node(op(name, [inp()], axis=a), "in0"),
                               node(op("one_hot", [inp()], num_classes=size, axis=a), "n0"),
                               node(op("multiply", [inp(0), inp(1)]), "in0", "n1")])
    if name == "one_hot":  # argmax along a, one-hot along a drawn axis b; x's axis a moved to b to match
        b = axis(draw, rank)
        nodes = [node(op(draw(st.sampled_from(["argmax", "argmin"])), [inp()], axis=a), "in0"),
                 node(op(name, [inp()], num_classes=size, axis=b, dtype=draw(st.sampled_from([None, "float32"]))),
                      "n0"),
                 node(op("transpose", [inp()], axes=_moved(rank, a % (rank + 1), b % (rank + 1))), "in0"),
                 node(op("multiply", [inp(0), inp(1)]), "n1", "n2")]
        return graph([shape], nodes)
    kind = draw(st.sampled_from(["int", "bool", "float"]))
    if kind == "int":  # truncation towards zero of x * k (negative products too), back to a float
        nodes = [node(op("multiply", [inp(), {"constant": draw(st.sampled_from([2.5, -3.0]))}]), "in0"),
                 node(op(name, [inp()], dtype="int32"), "n0"),
                 node(op(name, [inp()], dtype="float32"), "n1"),
                 node(op("add", [inp(0), inp(1)]), "in0", "n2")]
    elif kind == "bool":  # a mask as 0/1
        nodes = [node(op("greater", [inp(), {"constant": draw(st.sampled_from([0.0, 0.7]))}]), "in0"),
                 node(op(name, [inp()], dtype="float32"), "n0"),
                 node(op("multiply", [inp(0), inp(1)]), "in0", "n1")]
    else:  # float to float (the model's dtype): the gradient passes
        nodes = [node(op(name, [inp()], dtype="float32"), "in0"), node(op("multiply", [inp(0), inp(1)]), "in0", "n0")]
    return graph([shape], nodes)


def _count(shape: list) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def _distinct(shape: list) -> list:
    """A constant of ``shape`` whose entries all differ (so a misplaced entry shows)."""
    return nest([round(0.05 * i - 1.0, 2) for i in range(_count(shape))], shape)


@st.composite
def constant(draw, name: str):
    shape = draw(SHAPE)
    rank = len(shape)
    if name == "convert_to_tensor":  # a constant node without inputs (a traced call() on an array), broadcast
        tail = shape[draw(st.integers(0, rank - 1)):]
        c_shape = _other(draw, tail) if draw(st.booleans()) else tail
        if draw(st.booleans()):
            arg, params = {"constant": _distinct(c_shape), "dtype": "float64"}, {}
        else:  # integers converted to the model's float dtype
            arg, params = {"constant": nest(list(range(-2, _count(c_shape) - 2)), c_shape), "dtype": "int64"}, \
                {"dtype": "float32"}
        return graph([shape], [node(op(name, [arg], **params)), node(op("add", [inp(0), inp(1)]), "in0", "n0")])
    # x + like(t): t is x or its max along an axis (a size-1 axis, which the result must keep)
    nodes = []
    if draw(st.booleans()):
        nodes.append(node(op("max", [inp()], axis=axis(draw, rank), keepdims=True), "in0"))
    params = {"dtype": draw(st.sampled_from([None, "float32"]))}
    if name == "full_like":
        params["fill_value"] = draw(st.sampled_from([2.5, -1.0, 3]))
    nodes.append(node(op(name, [inp()], **params), f"n{len(nodes) - 1}" if nodes else "in0"))
    nodes.append(node(op("add", [inp(0), inp(1)]), "in0", f"n{len(nodes) - 1}"))
    return graph([shape], nodes)


def _weight(shape: list) -> list[dict]:
    """Nodes ``n0`` (a weight of ``shape``, zeros) and ``n1`` (it plus a constant of distinct entries)."""
    return [node({"class_name": "Variable", "config": {"name": "w", "shape": shape, "trainable": True}}),
            node(op("add", [inp(), {"constant": _distinct(shape), "dtype": "float64"}]), "n0")]


@st.composite
def on_weight(draw, name: str):
    """``x * broadcast_to(w + c, shape)`` (w of x's trailing axes, some of size 1) or ``x * slice(w + c, start,
    shape)`` (w larger than x along every axis): x's gradient shows the forward, w's the VJP."""
    shape = draw(SHAPE)
    if name == "broadcast_to":
        tail = shape[draw(st.integers(0, len(shape) - 1)):]
        w_shape = _other(draw, tail)
        nodes = _weight(w_shape) + [node(op(name, [inp()], shape=shape), "n1")]
    else:
        w_shape = [d + draw(st.integers(1, 2)) for d in shape]  # larger, so that the start matters
        start = [w - d - draw(st.integers(0, w - d)) for w, d in zip(w_shape, shape)]  # first draw: the end
        nodes = _weight(w_shape) + [node(op(name, [inp()], start_indices=start, shape=shape), "n1")]
    return graph([shape], nodes + [node(op("multiply", [inp(0), inp(1)]), "in0", "n2")])


STRATEGIES = {"comparisons": comparison, "indices and casts": index, "constants": constant}


def name_weights(graph_: dict, case_id: str) -> dict:
    """The graph with its weights named after the case (``w_slice_1``): unique in a merged case, and how
    :func:`weight_quantities` pins a weight's gradient on its op."""
    stem = "w_" + case_id.replace("#", "_")
    nodes = [node({**n["layer"], "config": {**n["layer"]["config"], "name": stem}}, *n["inbound"])
             if n["layer"].get("class_name") == "Variable" else n for n in graph_["nodes"]]
    return {**graph_, "nodes": nodes}


def weight_quantities(graph_: dict) -> list[str]:
    """The measured quantities of the graph's weights' gradients (:func:`.measure.layer_case`'s names)."""
    names = [n["layer"]["config"]["name"] for n in graph_["nodes"] if n["layer"].get("class_name") == "Variable"]
    return [f"grad {name}.{name}" for name in names]
