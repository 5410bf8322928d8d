"""Keras 3's ``.keras`` model file, as polykeras reads (:mod:`.keras_read`) and
writes (:mod:`.keras_write`) it -- with ``h5py`` and NumPy, without Keras.

A Keras 3 ``.keras`` file is a zip of three members:

``config.json``        the model's ``{"module", "class_name", "config"}``
                       (``Sequential`` or ``Functional``; every layer as Keras
                       serialises it) and ``compile_config``;
``model.weights.h5``   HDF5: ``layers/<name>/vars/<i>`` per layer, where
                       ``<name>`` is the *class* name in snake_case, numbered
                       ``_1``, ``_2``... among the model's layers (recurrent
                       layers keep theirs under ``layers/<name>/cell/vars``,
                       ``Bidirectional`` under ``.../forward_layer/cell/vars``
                       and ``.../backward_layer/cell/vars``, ``TimeDistributed``
                       under ``.../layer/vars``),
                       and ``vars/<i>`` follow the layer's variable order --
                       the canonical order;
``metadata.json``      the Keras version and the date.

A functional model's config lists its layers in the order of Keras's
``model.layers`` (:func:`functional_layer_order`), each with its
``inbound_nodes``: one ``{"args", "kwargs"}`` per call, whose tensors are
``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer,
node_index, tensor_index], ...}}`` (``node_index``: the call of that layer;
a merge layer's args hold one list of tensors). ``input_layers`` and
``output_layers`` are such ``[layer, node_index, tensor_index]`` triples, one
alone or a list. A model used as a layer is an entry of its own, with its
weights under ``layers/<sequential|functional>/layers/...``; the ``node_index``
of a nested *functional* model in ``output_layers`` counts from 1 (Keras
counts the node linking its own inputs to outputs), elsewhere from 0. A Keras
*operation* (``x + y`` on Keras tensors) is an entry too (``module``
``keras.src.ops...``), but is no layer: it has no weights and takes no part in
the ``layers/<name>`` numbering.

The canonical weight layout *is* Keras's, so arrays pass through unchanged.
"""

from __future__ import annotations

import re
import zipfile

#: The members that make a zip a Keras 3 model file.
MEMBERS = frozenset({"config.json", "model.weights.h5"})
#: Layers whose variables Keras keeps under ``layers/<name>/cell/vars``.
RECURRENT = ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D")
#: Keras's ``Bidirectional`` keeps its wrapped layers' variables under ``layers/<name>/<these>/cell/vars``.
WRAPPED = ("forward_layer", "backward_layer")


def variable_groups(class_name: str, config: dict) -> list[tuple[str, int | None]]:
    """Where a layer's variables lie below ``layers/<name>``, in order, each with how many of the layer's
    weights are there (``None``: the rest)."""
    if class_name == "Bidirectional":  # the forward layer's weights, then the backward layer's
        forward = config["layer"]["config"]
        return [("forward_layer/cell/vars", 3 if forward.get("use_bias", True) else 2),
                ("backward_layer/cell/vars", None)]
    if class_name == "TimeDistributed":  # the wrapped layer's own vars group
        return [("layer/vars", None)]
    if class_name == "MultiHeadAttention":  # its EinsumDense sublayers, each kernel then bias
        per = 2 if config.get("use_bias", True) else 1
        return [(f"{part}_dense/vars", per) for part in ("query", "key", "value", "output")]
    return [("cell/vars" if class_name in RECURRENT else "vars", None)]


class KerasFileError(ValueError):
    """A ``.keras`` file polykeras cannot read (or a model it cannot write as one)."""


def is_keras_file(path) -> bool:
    """Whether ``path`` is a zip holding a Keras 3 model's config and weights."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return MEMBERS <= names


def to_snake_case(name: str) -> str:
    """Keras's own rule (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def weight_paths(class_names: list[str]) -> list[str]:
    """The HDF5 group of each layer of a model, in Keras's numbering."""
    used: dict[str, int] = {}
    out = []
    for class_name in class_names:
        name = to_snake_case(class_name)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append(f"layers/{name}")
    return out


def functional_layer_order(calls: dict[str, list[list[tuple[str, int]]]], inputs: list[str],
                           outputs: list[tuple[str, int]]) -> list[str]:
    """The order of a functional model's layers as Keras computes it
    (``keras.src.ops.function.map_graph``), which fixes the ``layers/<name>``
    numbering of the weights file.

    ``calls`` maps each layer (inputs included, with no calls) to its calls,
    each the ``(layer, call index)`` of the tensors it reads; ``outputs`` are
    ``(layer, call index)``. A node's depth is the longest path from it to an
    output; a layer's is the largest of its nodes' (found output-side first);
    layers come by decreasing depth, ties in the order a depth-first walk from
    the outputs first reaches them.
    """
    def parents(node):
        return [] if node[0] in input_set else calls[node[0]][node[1]]

    input_set = set(inputs)
    finished: set = set()
    in_progress: set = set()
    first_seen: dict[str, int] = {}
    order: list[tuple[str, int]] = []
    for out in outputs:  # Keras's _build_map, iteratively (deep models do not hit the recursion limit)
        stack = [(tuple(out), None)]
        while stack:
            node, pending = stack[-1]
            if pending is None:
                if node in finished:
                    stack.pop()
                    continue
                if node in in_progress:
                    raise KerasFileError(f"the graph has a cycle through layer {node[0]!r}")
                first_seen.setdefault(node[0], len(first_seen))
                in_progress.add(node)
                pending = iter(parents(node))
                stack[-1] = (node, pending)
            parent = next(pending, None)
            if parent is not None:
                stack.append((tuple(parent), None))
                continue
            stack.pop()
            finished.add(node)
            in_progress.discard(node)
            order.append(node)
    node_depth: dict[tuple[str, int], int] = {}
    layer_depth: dict[str, int] = {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(node, 0), layer_depth.get(node[0], 0))
        layer_depth[node[0]] = node_depth[node] = depth
        for parent in parents(node):
            parent = tuple(parent)
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for name in inputs:  # an input not connected to the outputs
        if name not in layer_depth:
            layer_depth[name], first_seen[name] = 0, -1
    return sorted(layer_depth, key=lambda name: (-layer_depth[name], first_seen[name]))


#: Keras config keys polykeras has no use for, and the values under which dropping them changes nothing.
IGNORABLE = {"quantization_config": (None,), "synchronized": (False,), "renorm": (False,), "renorm_clipping": (None,),
             "renorm_momentum": None, "zero_output_for_mask": None, "seed": None, "activity_regularizer": (None,),
             "kernel_constraint": (None,), "bias_constraint": (None,), "recurrent_constraint": (None,),
             "embeddings_constraint": (None,), "beta_constraint": (None,), "gamma_constraint": (None,),
             "depthwise_constraint": (None,), "pointwise_constraint": (None,),
             "optional": (False,), "sparse": (False,), "ragged": (False,), "lora_rank": (None,),
             "lora_alpha": (None,), "groups": (1,), "dilation_rate": (1, [1], [1, 1], (1, 1)), "unroll": (False,),
             "use_cudnn": None, "implementation": None, "input_axes": (None,), "output_axes": (None,),
             "use_gate": (False,), "sliding_window": (None,), "autocast": (True,)}


def plain(value):
    """Keras's serialised objects as polykeras reads them: ``{"class_name",
    "config"}`` dicts without ``module``/``registered_name``, dtype policies as names."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value.get("config", {}).get("name")
        if "class_name" in value and "config" in value:
            config = value["config"]
            if isinstance(config, dict):
                config = {k: plain(v) for k, v in config.items()
                          if not (k in IGNORABLE and (IGNORABLE[k] is None or v in IGNORABLE[k]))}
            return {"class_name": value["class_name"], "config": config}
        return {k: plain(v) for k, v in value.items() if k not in ("module", "registered_name", "shared_object_id")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def keras_layer_config(entry: dict) -> tuple[str, dict]:
    config = {k: plain(v) for k, v in entry["config"].items()
              if not (k in IGNORABLE and (IGNORABLE[k] is None or v in IGNORABLE[k]))}
    return entry["class_name"], config


def read_vars(h5, group: str, class_name: str, path, config: dict | None = None) -> list:
    """A built-in layer's arrays below its group ``group`` (:func:`variable_groups`)."""
    import numpy as np

    out = []
    for where, _ in variable_groups(class_name, config or {}):
        where = f"{group}/{where}"
        if where not in h5:
            if class_name == "InputLayer" or (class_name in RECURRENT and f"{group}/vars" in h5):
                return []
            raise KerasFileError(f"{path}: no weights at {where!r} for a {class_name} layer")
        vars_ = h5[where]
        out += [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    return out
