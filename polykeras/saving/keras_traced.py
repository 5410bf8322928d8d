"""Keras's view of a graph in which layers were traced into ops (the built-in
:data:`polykeras.layers.TRACED_LAYERS`: MultiHeadAttention, Attention,
AdditiveAttention, Masking, CategoryEncoding; ``Lambda``; registered custom
layers, :mod:`.keras_custom`), for writing a ``.keras`` file.

polykeras's own config lists such a layer's ops one by one; Keras's lists the
layer: each call one inbound node with the call's arguments (their structure:
``MultiHeadAttention(query, value)``, ``Attention([query, value])``) and its
options (``use_causal_mask=True``), and later layers read ``[layer, call]``.
Masks are left out: Keras's layers make them again when the file is loaded.
"""

from __future__ import annotations

from polykeras.layers.symbolic import SymbolicTensor
from polykeras.saving import keras_custom
from polykeras.saving.keras_format import KerasFileError


def traced_owners(model) -> dict[int, object]:
    """``id(node) -> layer`` for the graph nodes that a traced layer's calls made: a built-in one's, a
    ``Lambda``'s, or a custom layer's (:mod:`.keras_custom`)."""
    graph = model._graph
    if graph is None:
        return {}
    return {id(n): n.owner for n in graph.nodes if n.owner is not None}


def keras_view(model, config: dict) -> tuple[dict, dict[str, tuple]]:
    """``config`` (:meth:`Model.get_config`) with each traced built-in layer in place of its ops, its
    entry carrying ``keras_nodes`` (per call: ``{"args", "kwargs"}`` with ``[layer, call]``
    references where Keras writes tensors); and each such call's output ``(shape, dtype)`` by node
    name (``layer``, ``layer@k``)."""
    graph = model._graph
    owners = traced_owners(model)
    if not owners:
        return config, {}
    outputs = {id(out): (layer, k) for layer in {id(o): o for o in owners.values()}.values()
               for k, (_, _, out) in enumerate(layer._traced_calls)}
    by_ref = {(n.layer.name, graph.call_index[id(n)]): n for n in graph.nodes}

    def ref(tensor: SymbolicTensor) -> list:
        if id(tensor) in outputs:
            layer, k = outputs[id(tensor)]
            return [layer.name, k]
        if id(tensor) in owners:
            raise KerasFileError(f"model {model.name!r}: a value inside layer {owners[id(tensor)].name!r} is read "
                                 "outside it, which a Keras file cannot express; save it as .polykeras")
        return [tensor.layer.name, graph.call_index.get(id(tensor), 0)]

    def structure(value):
        if isinstance(value, SymbolicTensor):
            return {"ref": ref(value)}
        if isinstance(value, (list, tuple)):
            return [structure(v) for v in value]
        return value

    def remap(r: list) -> list:
        node = by_ref.get((str(r[0]), int(r[1]) if len(r) > 1 else 0))
        return ref(node) + list(r[2:]) if node is not None else list(r)  # (a tensor index kept: return_state)

    layers, placed, shapes = [], set(), {}
    for entry in config["layers"]:
        nodes = [n for n in graph.nodes if n.layer.name == entry["config"]["name"]]
        owner = owners.get(id(nodes[0])) if nodes else None
        if owner is None:
            layers.append({**entry, "inbound_nodes": [[remap(r) for r in refs]
                                                       for refs in entry.get("inbound_nodes", [])]}
                          if "inbound_nodes" in entry else entry)
            continue
        if id(owner) in placed:
            continue
        placed.add(id(owner))
        keras_nodes = []
        for k, (args, kwargs, out) in enumerate(owner._traced_calls):
            options = {key: structure(v) for key, v in kwargs.items() if _keras_option(key, v)}
            keras_nodes.append({"args": structure(list(args)), "kwargs": options})
            shapes[owner.name if k == 0 else f"{owner.name}@{k}"] = (list(out.shape), "float32")
        entry = keras_custom.keras_entry(owner) if keras_custom.is_custom(owner) else {
            "class_name": type(owner).__name__}
        layers.append({**entry, "config": owner.get_config(),
                       "inbound_nodes": [_leaf_refs(node) for node in keras_nodes], "keras_nodes": keras_nodes})
    out_refs = [remap(r if isinstance(r, list) else [r, 0]) for r in config["output_layers"]]
    return {**config, "layers": layers, "output_layers": out_refs}, shapes


def _keras_option(key: str, value) -> bool:
    """Whether a traced call's keyword argument goes into the file: not the training flag, not the
    masks the inputs carried (``mask``, ``query_mask``, ...: Keras makes them again), not an
    option left at ``None``/``False``."""
    if key in ("training", "mask") or (key.endswith("_mask") and key not in ("attention_mask", "use_causal_mask")):
        return False
    return value is not None and value is not False


def _leaf_refs(node: dict) -> list[list]:
    """The ``[layer, call]`` references a call reads, in order (for the layer order)."""
    found = []

    def visit(value):
        if isinstance(value, dict) and "ref" in value:
            found.append(value["ref"])
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit(node)
    return found
