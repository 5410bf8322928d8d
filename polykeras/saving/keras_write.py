"""Writing a polykeras model as a Keras 3 ``.keras`` file (:mod:`.keras_format`)
that ``keras.saving.load_model`` opens. Needs ``h5py``, imported when a file is
written.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from polykeras.saving import keras_custom, keras_ops
from polykeras.saving.atomic import atomic_write
from polykeras.saving.keras_traced import keras_view, traced_owners
from polykeras.saving.keras_format import (WRAPPED, KerasFileError, functional_layer_order, to_snake_case,
                                          variable_groups, weight_paths)


def _keras_object(value, module: str):
    if isinstance(value, dict) and "class_name" in value:
        return {"module": module, "class_name": value["class_name"], "config": value.get("config", {}),
                "registered_name": None}
    return value


#: Keras layers whose constructor takes no ``trainable`` (their get_config leaves it out, so Keras's own
#: files never carry it and its loader passes the config to __init__ as is)
NO_TRAINABLE_ARGUMENT = ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")


def _keras_layer_config(class_name: str, config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key == "batch_input_shape" or (key == "trainable" and class_name in NO_TRAINABLE_ARGUMENT):
            continue
        if key.endswith("_initializer"):
            value = _keras_object(value, "keras.initializers")
        elif key.endswith("_regularizer"):
            value = _keras_object(value, "keras.regularizers")
        out[key] = value
    wrapped_keys = {"Bidirectional": ("layer", "backward_layer"), "TimeDistributed": ("layer",)}
    for key in wrapped_keys.get(class_name, ()):
        wrapped = config[key]
        out[key] = {"module": "keras.layers", "class_name": wrapped["class_name"],
                    "config": _keras_layer_config(wrapped["class_name"], wrapped["config"]), "registered_name": None}
    if class_name == "Lambda":
        for key in ("function", "mask"):
            if isinstance(config.get(key), dict):
                out[key] = _keras_function(config[key], config.get("name"), key)
    if class_name == "InputLayer" and out.get("dtype") is None:
        out["dtype"] = "float32"
    return out


def _keras_function(value: dict, layer: str, what: str) -> dict:
    """A ``Lambda``'s function as Keras names one (by its registered name); a Python lambda is refused:
    Keras would store its bytecode, which polykeras does not write."""
    if value.get("class_name") == "__lambda__":
        raise KerasFileError(f"Lambda layer {layer!r}: its {what} is a Python lambda, which a .keras file can only hold "
                             "as bytecode (Keras reopens that with safe_mode=False alone, and a lambda written with "
                             "polykeras.ops names polykeras); define it as a named function, register it with "
                             "@polykeras.saving.register_keras_serializable() (and its keras.ops twin under the same "
                             "name in Keras), or save as .polykeras")
    return {"module": "builtins", "class_name": "function", "config": value["config"], "registered_name": "function"}


def _keras_tensor(ref, shapes: dict) -> dict:
    """Keras's serialised symbolic tensor for call ``ref = [layer, call index(, tensor index)]`` (a tensor
    index for one of the tensors a call of several outputs returned: a recurrent layer's states)."""
    name, call = str(ref[0]), int(ref[1]) if len(ref) > 1 else 0
    index = int(ref[2]) if len(ref) > 2 else 0
    key = (name, call, index) if len(ref) > 2 else name if call == 0 else f"{name}@{call}"  # spec node names
    shape, dtype = shapes[key]
    return {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": dtype,
                                                         "keras_history": [name, call, index]}}


def _part_shapes(model) -> dict:
    """``(layer, call, tensor index) -> (shape, dtype)`` of the tensors calls of several outputs returned
    (``return_state``: :attr:`~polykeras.layers.symbolic.SymbolicTensor.part_of`)."""
    graph = model._graph
    out = {}
    for node in graph.nodes if graph is not None else ():
        if node.part_of is not None:
            call, index = node.part_of
            out[(call.layer.name, graph.call_index.get(id(call), 0), index)] = (list(node.shape), "float32")
    return out


def _tensors_in(value, shapes: dict):
    """A traced call's ``{"args", "kwargs"}`` with Keras's serialised tensors for its references."""
    if isinstance(value, dict) and set(value) == {"ref"}:
        return _keras_tensor(value["ref"], shapes)
    if isinstance(value, dict):
        return {k: _tensors_in(v, shapes) for k, v in value.items()}
    if isinstance(value, list):
        return [_tensors_in(v, shapes) for v in value]
    return value


def _refs(value) -> list[list]:
    """``output_layers`` entries as ``[layer, call index]`` (a bare name is call 0)."""
    return [[ref, 0] if isinstance(ref, str) else list(ref) for ref in value]


def _one_or_list(triples: list[list]):
    """Keras writes a lone input or output as one triple, several as a list."""
    return triples[0] if len(triples) == 1 else triples


def _functional_config(model, config: dict) -> tuple[dict, list[dict]]:
    """Keras's functional config of a polykeras graph (several inputs and
    outputs, merge layers, shared layers: one inbound node per call; built-in
    layers traced into ops as the Keras layers they are, :mod:`.keras_traced`),
    its layers in Keras's own order; and those entries, for the weights file."""
    from polykeras.layers import layer_class

    spec = model._spec()
    config, traced_shapes = keras_view(model, config)
    shapes = {i.name: (list(i.shape), i.dtype) for i in spec.inputs}
    shapes.update({layer.name: (list(layer.output_shape), "float32") for layer in spec.layers})
    shapes.update(traced_shapes)
    shapes.update(_part_shapes(model))
    entries = {entry["config"]["name"]: entry for entry in config["layers"]}
    inputs = [str(n) for n in config["input_layers"]]
    outputs = _refs(config["output_layers"])
    calls = {name: [[(str(r[0]), int(r[1])) for r in refs] for refs in entry.get("inbound_nodes", [])]
             for name, entry in entries.items()}
    order = functional_layer_order(calls, inputs, [(str(r[0]), int(r[1])) for r in outputs])
    layers_json = []
    for name in order:
        entry = entries[name]
        item = {"module": entry.get("module", "keras.layers"), "class_name": entry["class_name"],
                "config": _keras_layer_config(entry["class_name"], entry["config"]),
                "registered_name": entry.get("registered_name"), "name": name, "inbound_nodes": []}
        if entry["class_name"] == "Operation":  # an op on the model's tensors: a Keras operation (keras_ops)
            layers_json.append(keras_ops.keras_entry(entry["config"], [[_keras_tensor(r, shapes) for r in refs]
                                                                       for refs in entry.get("inbound_nodes", [])]))
            continue
        if entry["class_name"] == "InputLayer":
            item["config"]["dtype"] = shapes[name][1]  # int32 for ids read by an Embedding
        elif "keras_nodes" in entry:  # a traced built-in layer: its calls' own arguments and options
            item["inbound_nodes"] = [_tensors_in(node, shapes) for node in entry["keras_nodes"]]
        else:
            several = layer_class(entry["class_name"]).multiple_inputs
            for refs in entry["inbound_nodes"]:
                tensors = [_keras_tensor(r, shapes) for r in refs]
                if len(tensors) > 1 and not several:  # a recurrent layer's sequence, then its initial states
                    item["inbound_nodes"].append({"args": tensors[:1], "kwargs": {"initial_state": tensors[1:]}})
                    continue
                item["inbound_nodes"].append({"args": [tensors] if several else tensors, "kwargs": {}})
        layers_json.append(item)
    keras_config = {"module": "keras.src.models.functional", "class_name": "Functional",
                    "registered_name": "Functional",
                    "config": {"name": model.name, "trainable": True, "layers": layers_json,
                               "input_layers": _one_or_list([[n, 0, 0] for n in inputs]),
                               "output_layers": _one_or_list([[r[0], r[1], r[2] if len(r) > 2 else 0]
                                                              for r in outputs])}}
    return keras_config, [entries[name] for name in order if entries[name]["class_name"] != "Operation"]


def keras_layout(model) -> tuple[dict, list[dict]]:
    """Keras's config of ``model`` (without ``compile_config``) and the layer entries whose
    weights the file holds, in Keras's layer order (which numbers ``layers/<name>``)."""
    from polykeras.models import Model, Sequential

    sequential = isinstance(model, Sequential) and not any(isinstance(l, Model) or keras_custom.is_custom(l)
                                                           for l in model.layers)  # else written as functional
    if sequential:
        config = model.get_config()
        entries = list(config["layers"])
        if not entries or entries[0]["class_name"] != "InputLayer":
            first = entries[0]["config"] if entries else {}
            if first.get("batch_input_shape") is None:
                raise KerasFileError(f"model {model.name!r} is not built: give it an input shape before exporting it")
            entries.insert(0, {"class_name": "InputLayer",
                               "config": {"name": f"{model.name}_input",
                                          "batch_shape": list(first["batch_input_shape"]),
                                          "dtype": model._spec().inputs[0].dtype}})
        layers_json = [{"module": "keras.layers", "class_name": entry["class_name"],
                        "config": _keras_layer_config(entry["class_name"], entry["config"]), "registered_name": None}
                       for entry in entries]
        keras_config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                        "config": {"name": model.name, "trainable": True, "layers": layers_json}}
        saved = [e for e in entries if e["class_name"] != "InputLayer"]
    else:
        if not model.built:
            raise KerasFileError(f"model {model.name!r} is not built: give it an input shape before exporting it")
        keras_config, saved = _functional_config(model, Model.get_config(model))
    return keras_config, saved


def write_model(model, path, overwrite: bool = True, training_state: dict | None = None) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file that ``keras.saving.load_model`` opens:
    architecture and weights, and for a compiled model its ``compile_config`` and the optimizer's
    variables (:mod:`.keras_training`). ``training_state`` (where a ``fit`` stands) goes into
    ``metadata.json`` under ``"polykeras"``, which Keras does not read.

    A ``Sequential`` of layers stays a Keras ``Sequential``; any other model
    (functional, or a ``Sequential`` holding a model) is written as a Keras
    functional model of its layers, a nested model's layers flattened into it.
    Float64 weights and optimizer slots are written as float64 (Keras casts them
    to its variables' dtype when it loads them), so a polykeras round trip is exact."""
    import h5py

    import polykeras
    from polykeras.saving import keras_training

    spec = model._spec()
    masks = model._graph.mask_node_names if model._graph is not None else set()  # Keras recomputes them
    graph_names = model._graph.names if model._graph is not None else {}
    known = masks | {graph_names[i] for i in traced_owners(model)}  # and a traced built-in layer is itself
    known |= model._graph.part_node_names if model._graph is not None else set()  # [layer, call, index] in Keras
    free = [layer for layer in spec.layers if layer.name not in known]
    for layer in free:  # ops on the model's tensors go as Keras operations (keras_ops), where Keras has them
        if layer.kind == "Operation" and not keras_ops.is_exchanged(layer.config["op"]):
            raise KerasFileError(f"model {model.name!r}: " + keras_ops.refusal(layer.config["op"], layer.name))
    if any(layer.kind == "Variable" for layer in free):
        raise NotImplementedError(
            f"model {model.name!r} reads a layer's variable outside that layer, which a Keras 3 .keras file cannot "
            "express; save it as .polykeras (polykeras's own format, which keeps it)")
    keras_config, saved = keras_layout(model)
    customs = {owner.name: owner for owner in traced_owners(model).values() if keras_custom.is_custom(owner)}
    weights = iter(model.get_weights())
    per_layer: dict[str, list] = {}
    for layer in spec.layers:  # a traced layer's variables ("<layer>/<name>", in Keras's order) are its weights
        name = layer.name.rsplit("/", 1)[0] if layer.kind == "Variable" else layer.name
        per_layer.setdefault(name, []).extend(next(weights) for _ in layer.weights)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for entry, group in zip(saved, weight_paths([e["class_name"] for e in saved])):
            name = entry["config"]["name"]
            if name in customs:  # where Keras's saving_lib puts a custom layer's variables and layers
                keras_custom.write_weights(h5, customs[name], group)
                continue
            h5.create_group(f"{group}/vars").attrs["name"] = name
            values = per_layer.get(name, [])
            for where, count in variable_groups(entry["class_name"], entry["config"]):
                owner = where.split("/")[0] if where.startswith(WRAPPED) else None
                if owner is not None:  # a Bidirectional's wrapped layer: its own vars group, then its cell's
                    wrapped = entry["config"]["layer" if owner == "forward_layer" else "backward_layer"]
                    h5.create_group(f"{group}/{owner}/vars").attrs["name"] = wrapped["config"]["name"]
                    h5.create_group(f"{group}/{where}").attrs["name"] = f"{to_snake_case(wrapped['class_name'])}_cell"
                elif where == "layer/vars":  # a TimeDistributed's wrapped layer
                    h5.create_group(f"{group}/{where}").attrs["name"] = entry["config"]["layer"]["config"]["name"]
                elif where != "vars":
                    h5.create_group(f"{group}/{where}").attrs["name"] = f"{name}_cell"
                for i, value in enumerate(values[:count]):
                    h5[f"{group}/{where}"].create_dataset(str(i), data=np.asarray(value))
                values = values[len(values) if count is None else count:]
        h5.create_group("vars").attrs["name"] = model.name
        if model.compiled:
            keras_config["compile_config"] = keras_training.keras_compile_config(model)
            order = keras_training.trainable_order(model, [e["config"]["name"] for e in saved])
            group = h5.create_group("optimizer/vars")
            group.attrs["name"] = model.optimizer.name
            for i, value in enumerate(keras_training.optimizer_variables(model, order)):
                group.create_dataset(str(i), data=value)
    try:
        keras_version = metadata.version("keras")
    except metadata.PackageNotFoundError:
        keras_version = "3.5.0"
    meta = {"keras_version": keras_version, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "polykeras": {"version": polykeras.__version__,  # Keras does not read metadata.json
                          "weights_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                          **({"training_state": training_state} if training_state is not None else {})}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("config.json", json.dumps(keras_config))
        zf.writestr("model.weights.h5", buffer.getvalue())
    atomic_write(Path(path), out.getvalue(), overwrite)

