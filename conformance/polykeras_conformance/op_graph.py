"""Building blocks of the L0 op cases' graphs (:mod:`.op_cases`, :mod:`.op_cases_indirect`): an op node's
layer config and tensor arguments, the drawn shapes and axes, and a graph whose last node is its output.

A graph is ``{"inputs": [shapes], "nodes": [{"layer", "inbound"}], "outputs": ["n<i>"]}``
(:func:`polykeras_conformance.cases.build_graph`): inputs ``in<k>`` of the given shapes after the batch
axis, node ``i``'s output ``n<i>``."""

from __future__ import annotations

from hypothesis import strategies as st


def op(name: str, args: list, **params) -> dict:
    """An ``Operation`` layer config: the op, its tensor arguments (:func:`inp`, constants), its static ones."""
    return {"class_name": "Operation", "config": {"op": name, "args": args, "params": params}}


def inp(k: int = 0) -> dict:
    """The node's ``k``-th inbound tensor as an op argument."""
    return {"input": k}


def node(layer: dict, *inbound: str) -> dict:
    return {"layer": layer, "inbound": list(inbound)}


# sizes >= 2 (size 1 only where a case draws broadcasting): hypothesis's first, minimal draw -- the one
# quick mode uses -- must not be a degenerate case where a softmax is 1 and a transpose does nothing
SHAPE = st.lists(st.integers(2, 4), min_size=1, max_size=3)


def axis(draw, rank: int) -> int:
    """A non-batch axis of a tensor of ``rank`` dims after the batch axis, negative or positive."""
    a = draw(st.integers(1, rank))
    return a - rank - 1 if draw(st.booleans()) else a


def axes(draw, rank: int):
    """One or more non-batch axes (an int or a list, each negative or positive) and ``keepdims``; an
    all-axes reduction keeps its dims, since a node must keep the batch axis and the loss a trailing one."""
    chosen = sorted(set(draw(st.lists(st.integers(1, rank), min_size=1, max_size=rank))))
    keepdims = draw(st.booleans()) or len(chosen) == rank
    if len(chosen) == 1 and draw(st.booleans()):
        return chosen[0], keepdims
    return [a - rank - 1 if draw(st.booleans()) else a for a in chosen], keepdims


def graph(shapes, nodes, extra_inputs=()) -> dict:
    return {"inputs": list(shapes) + list(extra_inputs), "nodes": nodes, "outputs": [f"n{len(nodes) - 1}"]}


def nest(flat: list, shape: list):
    """``flat`` as nested lists of ``shape`` (a constant argument)."""
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
