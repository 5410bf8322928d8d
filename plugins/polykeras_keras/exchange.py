"""Model files shared with Keras 3: read a ``.keras`` file into a polykeras
model, write a polykeras model as a ``.keras`` file -- without importing Keras.

A Keras 3 ``.keras`` file is a zip of three members:

``config.json``        the model's ``{"module", "class_name", "config"}``
                       (``Sequential`` or ``Functional``; every layer as Keras
                       serialises it) and ``compile_config``;
``model.weights.h5``   HDF5: ``layers/<name>/vars/<i>`` per layer, where
                       ``<name>`` is the *class* name in snake_case, numbered
                       ``_1``, ``_2``... among the model's layers (recurrent
                       layers keep theirs under ``layers/<name>/cell/vars``),
                       and ``vars/<i>`` follow the layer's variable order --
                       the canonical order;
``metadata.json``      the Keras version and the date.

The canonical weight layout *is* Keras's, so arrays pass through unchanged.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RECURRENT = ("SimpleRNN", "LSTM", "GRU")
#: Keras config keys polykeras has no use for, and the values under which dropping them changes nothing.
IGNORABLE = {"quantization_config": (None,), "synchronized": (False,), "renorm": (False,), "renorm_clipping": (None,),
             "renorm_momentum": None, "zero_output_for_mask": None, "seed": None, "activity_regularizer": (None,),
             "kernel_constraint": (None,), "bias_constraint": (None,), "recurrent_constraint": (None,),
             "embeddings_constraint": (None,), "beta_constraint": (None,), "gamma_constraint": (None,),
             "optional": (False,), "sparse": (False,), "ragged": (False,), "lora_rank": (None,),
             "lora_alpha": (None,), "groups": (1,), "dilation_rate": (1, [1], [1, 1], (1, 1)), "unroll": (False,),
             "use_cudnn": None, "implementation": None, "input_axes": (None,), "output_axes": (None,)}


class KerasFileError(ValueError):
    """A ``.keras`` file polykeras cannot read (or a model it cannot write as one)."""


def is_keras_file(path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return {"config.json", "model.weights.h5"} <= names


def to_snake_case(name: str) -> str:
    """Keras's own rule (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def _weight_paths(class_names: list[str]) -> list[str]:
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


# -- reading ------------------------------------------------------------------------------------
def _plain(value):
    """Keras's serialised objects as polykeras reads them: ``{"class_name",
    "config"}`` dicts without ``module``/``registered_name``, dtype policies as names."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value.get("config", {}).get("name")
        if "class_name" in value and "config" in value:
            config = value["config"]
            if isinstance(config, dict):
                config = {k: _plain(v) for k, v in config.items()
                          if not (k in IGNORABLE and (IGNORABLE[k] is None or v in IGNORABLE[k]))}
            return {"class_name": value["class_name"], "config": config}
        return {k: _plain(v) for k, v in value.items() if k not in ("module", "registered_name", "shared_object_id")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _layer_config(entry: dict) -> tuple[str, dict]:
    config = {k: _plain(v) for k, v in entry["config"].items()
              if not (k in IGNORABLE and (IGNORABLE[k] is None or v in IGNORABLE[k]))}
    return entry["class_name"], config


def _inbound(entry: dict) -> list[str]:
    names = []
    for node in entry.get("inbound_nodes", []):
        for arg in node.get("args", []):
            for item in arg if isinstance(arg, list) else [arg]:
                if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
                    names.append(item["config"]["keras_history"][0])
    return names


def _io_names(value) -> list[str]:
    if value and isinstance(value[0], str):
        return [value[0]]
    return [v[0] for v in value]


def read_model(path, compile: bool = True):
    """A polykeras model from a Keras 3 ``.keras`` file (architecture, weights
    and, where polykeras has them, the optimizer, loss and metrics)."""
    import h5py

    from polykeras import layers as pk_layers
    from polykeras.models import Model, Sequential

    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        weights_bytes = zf.read("model.weights.h5")
    model_class = config.get("class_name")
    if model_class not in ("Sequential", "Functional", "Model"):
        raise KerasFileError(f"{path}: a Keras {model_class!r} model; polykeras reads Sequential and functional models")
    entries = config["config"]["layers"]
    unsupported = sorted({e["class_name"] for e in entries if e["class_name"] != "InputLayer"
                          and not _has_layer(pk_layers, e["class_name"])})
    if unsupported:
        raise KerasFileError(f"{path} uses layer(s) polykeras does not support: {', '.join(unsupported)}")
    built = []
    for entry in entries:
        class_name, layer_config = _layer_config(entry)
        built.append((class_name, _make_layer(pk_layers, class_name, layer_config, path), entry))
    if model_class == "Sequential":
        model = Sequential([layer for _, layer, _ in built], name=config["config"].get("name"))
        saved = [(c, layer) for c, layer, _ in built if c != "InputLayer"]
    else:
        tensors = {}
        for class_name, layer, entry in built:
            if class_name == "InputLayer":
                tensors[layer.name] = layer.output
                continue
            inbound = _inbound(entry)
            if len(inbound) != 1:
                raise KerasFileError(f"{path}: layer {layer.name!r} has {len(inbound)} inputs; polykeras reads models "
                                     "whose layers each take one input")
            tensors[layer.name] = layer(tensors[inbound[0]])
        inputs, outputs = _io_names(config["config"]["input_layers"]), _io_names(config["config"]["output_layers"])
        model = Model([tensors[n] for n in inputs], [tensors[n] for n in outputs], name=config["config"].get("name"))
        saved = [(c, layer) for c, layer, _ in built]
    arrays: dict[str, list[np.ndarray]] = {}
    with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
        for (class_name, layer), group in zip(saved, _weight_paths([c for c, _ in saved])):
            arrays[layer.name] = _read_vars(h5, group, class_name, path)
    flat = []
    for layer_spec in model._spec().layers:
        values = arrays.get(layer_spec.name, [])
        if len(values) != len(layer_spec.weights):
            raise KerasFileError(f"{path}: layer {layer_spec.name!r} has {len(values)} weight arrays in the file, "
                                 f"polykeras expects {len(layer_spec.weights)}")
        flat += values
    model.set_weights(flat)
    if compile and config.get("compile_config"):
        _compile(model, config["compile_config"], path)
    return model


def _has_layer(pk_layers, class_name: str) -> bool:
    try:
        pk_layers.layer_class(class_name)
        return True
    except (ValueError, KeyError, AttributeError):
        return False


def _make_layer(pk_layers, class_name: str, config: dict, path):
    config = dict(config)
    while True:
        try:
            return pk_layers.deserialize({"class_name": class_name, "config": config})
        except TypeError as exc:
            match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if not match or match.group(1) not in config:
                raise
            key = match.group(1)
            if config[key] not in (None, False):
                raise KerasFileError(f"{path}: layer {config.get('name')!r} ({class_name}) sets {key}="
                                     f"{config[key]!r}, which polykeras does not support") from None
            del config[key]


def _read_vars(h5, group: str, class_name: str, path) -> list[np.ndarray]:
    where = f"{group}/cell/vars" if class_name in RECURRENT else f"{group}/vars"
    if where not in h5:
        if class_name == "InputLayer" or f"{group}/vars" in h5:
            return []
        raise KerasFileError(f"{path}: no weights at {where!r} for a {class_name} layer")
    vars_ = h5[where]
    return [np.asarray(vars_[str(i)]) for i in range(len(vars_))]


def _compile(model, compile_config: dict, path) -> None:
    import warnings

    from polykeras import losses, optimizers

    try:
        optimizer = optimizers.get(_plain(compile_config["optimizer"]))
        loss = _plain(compile_config["loss"])
        if isinstance(loss, dict):
            loss = {"class_name": loss["class_name"],
                    "config": {k: v for k, v in loss["config"].items() if k not in ("dtype", "name", "reduction")}}
        loss = losses.get(loss)
        metrics = [m for m in (compile_config.get("metrics") or []) if isinstance(m, str)]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
        warnings.warn(f"{path}: the model's compile settings are not supported by polykeras ({exc}); the model "
                      "is loaded uncompiled", stacklevel=3)


# -- writing ------------------------------------------------------------------------------------
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
        for entry, group in zip(saved, _weight_paths([e["class_name"] for e in saved])):
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
    from polykeras.saving import _atomic_write

    _atomic_write(Path(path), out.getvalue(), overwrite=True)
