"""Writing a polykeras model as a Keras 3 ``.keras`` file (:mod:`.keras_format`)
that ``keras.saving.load_model`` opens. Needs ``h5py``, imported when a file is
written.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from polykeras.saving.atomic import atomic_write
from polykeras.saving.keras_format import RECURRENT, KerasFileError, weight_paths


def _keras_object(value, module: str):
    if isinstance(value, dict) and "class_name" in value:
        return {"module": module, "class_name": value["class_name"], "config": value.get("config", {}),
                "registered_name": None}
    return value


def _keras_layer_config(class_name: str, config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key == "batch_input_shape":
            continue
        if key.endswith("_initializer"):
            value = _keras_object(value, "keras.initializers")
        elif key.endswith("_regularizer"):
            value = _keras_object(value, "keras.regularizers")
        out[key] = value
    if class_name == "InputLayer" and out.get("dtype") is None:
        out["dtype"] = "float32"
    return out


def write_model(model, path) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file (architecture and weights;
    ``keras.saving.load_model`` opens it without a compile configuration)."""
    import h5py

    from polykeras.models import Sequential

    config = model.get_config()
    entries = list(config["layers"])
    sequential = isinstance(model, Sequential)
    if sequential and (not entries or entries[0]["class_name"] != "InputLayer"):
        first = entries[0]["config"] if entries else {}
        if first.get("batch_input_shape") is None:
            raise KerasFileError(f"model {model.name!r} is not built: give it an input shape before exporting it")
        entries.insert(0, {"class_name": "InputLayer",
                           "config": {"name": f"{model.name}_input", "batch_shape": list(first["batch_input_shape"]),
                                      "dtype": model._spec().inputs[0].dtype}})
    spec = model._spec()
    shapes = {i.name: (list(i.shape), i.dtype) for i in spec.inputs}
    shapes.update({layer.name: (list(layer.output_shape), "float32") for layer in spec.layers})
    layers_json = []
    for entry in entries:
        item = {"module": "keras.layers", "class_name": entry["class_name"],
                "config": _keras_layer_config(entry["class_name"], entry["config"]), "registered_name": None}
        if not sequential:
            name = entry["config"]["name"]
            item["name"] = name
            item["inbound_nodes"] = [] if entry["class_name"] == "InputLayer" else [{
                "args": [{"class_name": "__keras_tensor__",
                          "config": {"shape": shapes[source][0], "dtype": shapes[source][1],
                                     "keras_history": [source, 0, 0]}}
                         for source in entry["inbound"]], "kwargs": {}}]
        layers_json.append(item)
    if sequential:
        keras_config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                        "config": {"name": model.name, "trainable": True, "layers": layers_json}}
        saved = [e for e in entries if e["class_name"] != "InputLayer"]
    else:
        keras_config = {"module": "keras.src.models.functional", "class_name": "Functional",
                        "registered_name": "Functional",
                        "config": {"name": model.name, "trainable": True, "layers": layers_json,
                                   "input_layers": [[n, 0, 0] for n in config["input_layers"]],
                                   "output_layers": [[n, 0, 0] for n in config["output_layers"]]}}
        saved = entries
    weights = iter(model.get_weights())
    per_layer = {layer.name: [next(weights) for _ in layer.weights] for layer in spec.layers}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for entry, group in zip(saved, weight_paths([e["class_name"] for e in saved])):
            name = entry["config"]["name"]
            h5.create_group(f"{group}/vars").attrs["name"] = name
            where = f"{group}/vars"
            if entry["class_name"] in RECURRENT:
                where = f"{group}/cell/vars"
                h5.create_group(where).attrs["name"] = f"{name}_cell"
            for i, value in enumerate(per_layer.get(name, [])):
                h5[where].create_dataset(str(i), data=np.asarray(value))
        h5.create_group("vars").attrs["name"] = model.name
    try:
        keras_version = metadata.version("keras")
    except metadata.PackageNotFoundError:
        keras_version = "3.5.0"
    meta = {"keras_version": keras_version, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "written_by": "polykeras"}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("config.json", json.dumps(keras_config))
        zf.writestr("model.weights.h5", buffer.getvalue())
    atomic_write(Path(path), out.getvalue(), overwrite=True)
