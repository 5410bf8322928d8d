"""Reading a Keras 3 ``.keras`` file (:mod:`.keras_format`) into a polykeras model.

Keras's layer configs pass to polykeras's layers after :func:`_plain` drops
what polykeras has no use for (``module``, ``registered_name``, the keys in
:data:`IGNORABLE` at their harmless values); a layer polykeras lacks, or an
option it does not support, is refused by name. Needs ``h5py``, imported
when a file is read.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from polykeras.saving.keras_format import RECURRENT, KerasFileError, weight_paths

#: Keras config keys polykeras has no use for, and the values under which dropping them changes nothing.
IGNORABLE = {"quantization_config": (None,), "synchronized": (False,), "renorm": (False,), "renorm_clipping": (None,),
             "renorm_momentum": None, "zero_output_for_mask": None, "seed": None, "activity_regularizer": (None,),
             "kernel_constraint": (None,), "bias_constraint": (None,), "recurrent_constraint": (None,),
             "embeddings_constraint": (None,), "beta_constraint": (None,), "gamma_constraint": (None,),
             "optional": (False,), "sparse": (False,), "ragged": (False,), "lora_rank": (None,),
             "lora_alpha": (None,), "groups": (1,), "dilation_rate": (1, [1], [1, 1], (1, 1)), "unroll": (False,),
             "use_cudnn": None, "implementation": None, "input_axes": (None,), "output_axes": (None,)}


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
        for (class_name, layer), group in zip(saved, weight_paths([c for c, _ in saved])):
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
