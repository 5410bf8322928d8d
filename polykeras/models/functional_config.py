"""A functional model's layers and graph from its config (``Model.get_config``'s, or Keras's)."""

from __future__ import annotations

from typing import Any

from polykeras.layers.base import Layer, SymbolicTensor
from polykeras.layers.input_layer import InputLayer
from polykeras.models.graph import replay


def rebuild(config: dict[str, Any]) -> tuple[list[SymbolicTensor], Any, str | None]:
    """New layers (new weights) called as ``config`` records: ``(inputs, outputs, name)``, the
    outputs a dict by output name where the config names them."""
    from polykeras.layers import deserialize

    name = config.get("name")
    layers: dict[str, Layer] = {}
    tensors: dict[tuple[str, int], SymbolicTensor] = {}
    entries, masks = [], {}
    for entry in config["layers"]:
        layer = deserialize(entry)
        layers[layer.name] = layer
        if isinstance(layer, InputLayer):
            tensors[(layer.name, 0)] = layer.output
        else:  # "inbound": [names] is the format of polykeras 0.1's single-input chains
            nodes = entry.get("inbound_nodes") or [[[n, 0] for n in entry.get("inbound", [])]]
            entries.append((layer.name, nodes))
            if entry.get("output_masks"):
                masks[layer.name] = entry["output_masks"]
    replay(layers, entries, tensors, name or "model", masks)
    outputs = [tensors[(ref, 0)] if isinstance(ref, str) else _part(tensors[(ref[0], int(ref[1]))], ref)
               for ref in config["output_layers"]]
    names = config.get("output_names")
    return [tensors[(n, 0)] for n in config["input_layers"]], dict(zip(names, outputs)) if names else outputs, name


def _part(value, ref: list):
    """The tensor ``[layer, call(, tensor index)]`` names: one of a call's several outputs (return_state)."""
    return value[int(ref[2]) if len(ref) > 2 else 0] if isinstance(value, list) else value
