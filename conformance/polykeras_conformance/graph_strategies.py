"""Hypothesis strategies that draw one L0 graph case per group (:data:`GRAPH_STRATEGIES`): merge layers
on drawn shapes and small functional graphs (residual, shared, nested, branches, recurrent states). Each
returns a graph ``{"inputs": [shapes], "nodes": [...], "outputs": [...]}``, the form
:func:`polykeras_conformance.case_models.build_graph` builds; :func:`polykeras_conformance.cases.graph_cases`
draws them."""

from __future__ import annotations

from hypothesis import strategies as st

from polykeras_conformance.layer_strategies import layer_config as _layer


def _node(layer, *inbound) -> dict:
    """A graph node: a layer config (or ``"n<i>"``: call node ``i``'s layer again) on ``inbound``
    (``"in<k>"`` for input ``k``, ``"n<i>"`` for node ``i``'s output)."""
    return {"layer": layer, "inbound": list(inbound)}


@st.composite
def _elementwise_merge(draw, kind: str):
    """One merge over 2-3 inputs whose shapes broadcast under Keras's rule (lower ranks
    expanded at axis 1, sizes equal or 1)."""
    n = 2 if kind == "Subtract" else draw(st.integers(2, 3))
    rank = draw(st.integers(1, 3))
    full = [draw(st.integers(1, 4)) for _ in range(rank)]
    shapes = [full] + [[d if draw(st.booleans()) else 1 for d in full[rank - draw(st.integers(1, rank)):]]
                       for _ in range(n - 1)]
    shapes = draw(st.permutations(shapes))
    return _merge_graph(_layer(kind), shapes)


def _merge_graph(layer: dict, shapes: list) -> dict:
    """One merge layer over one input per shape."""
    return {"inputs": shapes, "nodes": [_node(layer, *[f"in{k}" for k in range(len(shapes))])], "outputs": ["n0"]}


@st.composite
def _concatenate(draw):
    """2-3 inputs of one rank, sizes differing only along a drawn (never the batch) axis."""
    rank = draw(st.integers(1, 3))
    base = [draw(st.integers(1, 3)) for _ in range(rank)]
    axis = draw(st.integers(-rank, rank).filter(lambda a: a % (rank + 1) != 0))
    shapes = [[draw(st.integers(1, 3)) if i == axis % (rank + 1) - 1 else d for i, d in enumerate(base)]
              for _ in range(draw(st.integers(2, 3)))]
    return _merge_graph(_layer("Concatenate", axis=axis), shapes)


@st.composite
def _dot(draw):
    """Rank 2 or 3 inputs (batch included), contracted along drawn axes, normalised or not."""
    ranks = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = draw(st.integers(1, 4))
    axes = [draw(st.integers(1, r)) for r in ranks]
    shapes = [[size if i + 1 == a else draw(st.integers(1, 3)) for i in range(r)] for r, a in zip(ranks, axes)]
    same = axes[0] == axes[1] and draw(st.booleans())  # Keras's int form, axes=k
    return _merge_graph(_layer("Dot", axes=axes[0] if same else axes, normalize=draw(st.booleans())), shapes)


@st.composite
def _graph_structure(draw, kind: str):
    """A residual block, a layer shared by two inputs, a nested Sequential, or dropout on two branches."""
    d, u = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    act = draw(st.sampled_from(["relu", "tanh", "linear"]))
    if kind == "residual":
        nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node(_layer("Dense", units=u), "n0"),
                 _node(_layer("Add"), "n0", "n1"), _node(_layer("Dense", units=2), "n2")]
        return {"inputs": [[d]], "nodes": nodes, "outputs": ["n3"]}
    if kind == "shared":
        merge = draw(st.sampled_from(["Concatenate", "Average", "Subtract"]))
        nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node("n0", "in1"),
                 _node(_layer(merge), "n0", "n1"), _node(_layer("Dense", units=2), "n2")]
        return {"inputs": [[d], [d]], "nodes": nodes, "outputs": ["n3"]}
    if kind == "nested":
        inner = _layer("Sequential", name="inner", layers=[_layer("Dense", units=u, activation=act),
                                                           _layer("Dense", units=d)])
        nodes = [_node(inner, "in0"), _node(_layer("Multiply"), "n0", "in0"), _node(_layer("Dense", units=2), "n1")]
        return {"inputs": [[d]], "nodes": nodes, "outputs": ["n2"]}
    rates = (draw(st.sampled_from([0.2, 0.5])), draw(st.sampled_from([0.1, 0.4])))
    nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node(_layer("Dropout", rate=rates[0]), "n0"),
             _node(_layer("Dropout", rate=rates[1]), "n0"), _node(_layer("Concatenate"), "n1", "n2")]
    return {"inputs": [[d]], "nodes": nodes, "outputs": ["n3"]}


@st.composite
def _recurrent_states(draw):
    """keras.io's sequence-to-sequence shape: an encoder's ``return_state`` states (a recurrent layer's, or
    one direction's of a Bidirectional) start a decoder (``initial_state``, a node's ``"initial_state"``
    refs; ``"n<i>:<j>"`` is node ``i``'s tensor ``j``), the decoder's own returned state (or its output)
    into a Dense; drawn kind, sizes, directions, dropout. Now and then the decoder is a Bidirectional,
    started from both directions' states (the list split in half, as Keras splits it)."""
    kind = draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
    units, n = draw(st.integers(1, 4)), 2 if kind == "LSTM" else 1

    def rnn(**config):
        extra = {"reset_after": draw(st.booleans())} if kind == "GRU" else {}
        return _layer(kind, units=units, go_backwards=draw(st.booleans()), dropout=draw(st.sampled_from([0.0, 0.3])),
                      recurrent_dropout=draw(st.sampled_from([0.0, 0.25])), **extra, **config)

    decoder_states = draw(st.booleans())
    encoder, first = rnn(return_state=True), 1
    if draw(st.booleans()):  # a Bidirectional encoder: [output, *forward states, *backward states]
        encoder["config"]["go_backwards"] = False  # (the wrapper makes the backward copy)
        encoder = _layer("Bidirectional", layer=encoder, merge_mode=draw(st.sampled_from(["concat", "sum", "mul"])))
        first += n * draw(st.integers(0, 1))  # the decoder starts from one direction's states
    decoder, states = rnn(return_sequences=draw(st.booleans()), return_state=decoder_states), \
        [f"n0:{first + j}" for j in range(n)]
    if draw(st.booleans()):  # a Bidirectional decoder: forward states, then backward ones
        decoder["config"]["go_backwards"] = False
        decoder = _layer("Bidirectional", layer=decoder, merge_mode=draw(st.sampled_from(["concat", "sum", "ave"])))
        backward = 1 + n if encoder["class_name"] == "Bidirectional" and draw(st.booleans()) else first
        states += [f"n0:{backward + j}" for j in range(n)]
    nodes = [_node(encoder, "in0"), {**_node(decoder, "in1"), "initial_state": states},
             _node(_layer("Dense", units=2), f"n1:{n}" if decoder_states else "n1")]
    shapes = [[draw(st.integers(1, 4)), draw(st.integers(1, 3))] for _ in range(2)]
    return {"inputs": shapes, "nodes": nodes, "outputs": ["n2"]}


#: group: (strategy, share of ``examples_per_group`` drawn): one group per merge kind, so that
#: every kind is drawn even in quick mode; Dot has the most regimes (ranks, axes, normalize).
GRAPH_STRATEGIES = {
    **{kind: (lambda kind=kind: _elementwise_merge(kind), 0.5)
       for kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")},
    "Concatenate": (_concatenate, 0.5), "Dot": (_dot, 1.0),
    **{f"Graph:{kind}": (lambda kind=kind: _graph_structure(kind), 0.5)
       for kind in ("residual", "shared", "nested", "branches")},
    "Graph:states": (_recurrent_states, 0.5),
}
