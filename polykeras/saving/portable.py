"""polykeras's own model file: one zip holding JSON and ``.npy`` arrays.

``model.save("m.polykeras")`` writes (and :func:`polykeras.saving.load_model` recognises it by
its contents, whatever its name)::

    polykeras.json   format tag, the Keras-style model config (class names and
                     get_config() of every layer), the compile config and the spec
    weights.npz      every weight in canonical Keras layout, keyed "layer/weight"
    optimizer.npz    (a model that has trained) the optimizer's state: "iterations",
                     and each slot of each trainable weight, keyed "slot/layer/weight",
                     so that training resumes exactly where it stopped, on any backend
                     whose Backend.training_features has "optimizer_state"

so a model saved under one backend loads under any other. Loading never runs
code: JSON is parsed and arrays are read with ``allow_pickle=False``. Writes
go to a temporary file in the target folder, are flushed to disk and then
renamed over the target, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

import polykeras
from polykeras.saving.atomic import atomic_write
from polykeras.saving.registration import UnknownObjectError

FORMAT = "polykeras.saved_model/1"
WEIGHTS_FORMAT = "polykeras.weights/1"
_CONFIG = "polykeras.json"
_WEIGHTS = "weights.npz"
_OPTIMIZER = "optimizer.npz"


class ModelFileError(ValueError):
    """A file that is not a readable polykeras model or weights file."""


#: What reading a damaged archive or description raises before polykeras can name the problem: zip's CRC and
#: header checks, zlib's stream checks, a compression method or zip version garbled into one zipfile lacks,
#: JSON that no longer parses, and configs whose keys or values were damaged into something invalid.
CORRUPTION = (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError, UnicodeDecodeError,
              json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError)


def _weights_npz(model) -> bytes:
    spec = model._spec()
    arrays = {f"{layer.name}/{w.name}": value
              for (layer, w), value in zip(spec.weight_specs, model.get_weights())}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _optimizer_npz(model) -> bytes | None:
    state = model._optimizer_state() if model.compiled else None
    if state is None:
        return None
    trainable = [(layer, w) for layer, w in model._spec().weight_specs if w.trainable]
    arrays = {"iterations": np.asarray(state.iterations, np.int64)}
    for slot, values in state.slots.items():
        arrays.update({f"{slot}/{layer.name}/{w.name}": v for (layer, w), v in zip(trainable, values)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_optimizer(model, data: bytes, path: Path, by_position: bool = False):
    from polykeras.program import OptimizerState

    arrays = _read_weights(data, path)
    trainable = [(layer, w) for layer, w in model._spec().weight_specs if w.trainable]
    slots: dict[str, list] = {}
    for key in arrays:
        if key != "iterations":
            slots.setdefault(key.split("/", 1)[0], []).append(arrays[key])
    try:
        for slot in slots:
            if by_position:  # saved in the trainable weights' order
                if len(slots[slot]) != len(trainable):
                    raise KeyError(f"{slot} ({len(slots[slot])} arrays for {len(trainable)} trainable weights)")
                continue
            slots[slot] = [arrays[f"{slot}/{layer.name}/{w.name}"] for layer, w in trainable]
    except KeyError as exc:
        raise ModelFileError(f"{path}: the optimizer state lacks {exc} for the model's trainable weights") from None
    return OptimizerState(int(arrays["iterations"]), slots)


def save_model(model, filepath, overwrite: bool = True, training_state: dict | None = None) -> None:
    """Write ``model`` (architecture, compile settings, weights and, once it has trained, its
    optimizer's state) as a polykeras model file; ``training_state`` (where a ``fit`` stands, for
    :class:`polykeras.callbacks.BackupAndRestore`) goes into the same file, so one atomic write
    keeps all of it consistent."""
    weights = _weights_npz(model)
    optimizer = _optimizer_npz(model)
    config = {
        "format": FORMAT,
        "polykeras_version": polykeras.__version__,
        "model_config": {"class_name": type(model).__name__, "config": model.get_config()},
        "compile_config": model.get_compile_config(),
        "spec": model._spec().to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),  # damage inside a re-zipped archive shows too
        **({"optimizer_sha256": hashlib.sha256(optimizer).hexdigest()} if optimizer is not None else {}),
        **({"training_state": training_state} if training_state is not None else {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_CONFIG, json.dumps(config, indent=1))
        zf.writestr(_WEIGHTS, weights)
        if optimizer is not None:
            zf.writestr(_OPTIMIZER, optimizer)
    atomic_write(Path(filepath), buffer.getvalue(), overwrite)


def model_from_config(config: dict):
    """A model from its ``{"class_name", "config"}`` (Sequential or functional)."""
    from polykeras.models import Model, Sequential

    classes = {"Sequential": Sequential, "Functional": Model, "Model": Model}
    name = config.get("class_name")
    if name not in classes:
        raise ModelFileError(f"unknown model class {name!r} in the model config; expected one of {', '.join(classes)}")
    return classes[name].from_config(config["config"])


def open_zip(path: Path) -> zipfile.ZipFile:
    """``path`` opened as a zip archive (a polykeras or a Keras 3 model file), or a clear error."""
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        raise ModelFileError(f"{path} is an HDF5 file (a Keras 2 .h5 model?); polykeras reads its own model files "
                             "only")
    try:
        return zipfile.ZipFile(path)
    except CORRUPTION:
        raise ModelFileError(f"{path} is not a polykeras model file, or it is corrupt or truncated (not a valid "
                             "zip archive); save the model again") from None


def _read_config(zf: zipfile.ZipFile, path: Path) -> dict:
    names = set(zf.namelist())
    if _CONFIG not in names:
        raise ModelFileError(f"{path} has no {_CONFIG}: it is not a polykeras model file")
    try:
        config = json.loads(zf.read(_CONFIG))
    except CORRUPTION as exc:
        raise ModelFileError(f"{path}: the model description is corrupt ({exc}); save the model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(f"{path}: unsupported format {found!r}; this polykeras reads {FORMAT!r}")
    return config


def _read_weights(data: bytes, path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except CORRUPTION as exc:
        raise ModelFileError(f"{path}: the weights are corrupt or truncated ({exc}); save them again") from None


def _assign(model, arrays: dict[str, np.ndarray], path: Path, keep_dtype: bool = False,
            by_position: bool = False) -> None:
    """Set the model's weights from ``arrays`` (checked by name and shape; ``by_position``: in the
    saved order, for a backup restored into the same architecture whose automatic layer names may
    differ). A loaded model keeps the saved values' float dtype (``keep_dtype``): float64 training
    resumes from float64 weights."""
    spec = model._spec()
    if by_position:
        shapes = [w.shape for _, w in spec.weight_specs]
        saved = list(arrays.values())
        if [tuple(a.shape) for a in saved] != [tuple(s) for s in shapes]:
            raise ModelFileError(f"{path} holds weights of shapes {[a.shape for a in saved]}, the model has "
                                 f"{shapes}: it is a backup of another model; delete it to start over")
        arrays = {f"{layer.name}/{w.name}": a for (layer, w), a in zip(spec.weight_specs, saved)}
    values = []
    for layer, w in spec.weight_specs:
        key = f"{layer.name}/{w.name}"
        if key not in arrays:
            raise ModelFileError(f"{path} has no weight {key!r} (it holds: {', '.join(sorted(arrays)) or 'nothing'}); "
                                 "was it saved from a different model?")
        if arrays[key].shape != w.shape:
            raise ModelFileError(f"{path}: weight {key!r} has shape {arrays[key].shape}, the model expects {w.shape}")
        values.append(arrays[key])
    extra = set(arrays) - {f"{l.name}/{w.name}" for l, w in spec.weight_specs}
    if extra:
        raise ModelFileError(f"{path} holds weights the model lacks: {', '.join(sorted(extra))}")
    if keep_dtype:
        values = iter(values)
        for layer in model._weighted_layers():
            layer._weight_values[:] = [np.array(next(values)) for _ in layer._weight_values]
        return
    model.set_weights(values)


def read_model(zf: zipfile.ZipFile, path: Path, compile: bool = True):
    """The model in ``zf``, an open polykeras model file (see :func:`open_zip`).

    Whatever is wrong with a damaged file -- an archive, a description or weights
    that fail their checks, or a description damaged into an invalid model -- is
    raised as :class:`ModelFileError` naming the file and the problem."""
    try:
        return _read_model(zf, path, compile)
    except ModelFileError as exc:
        if str(path) in str(exc):
            raise
        raise ModelFileError(f"{path}: {exc}") from None
    except UnknownObjectError:  # a function or class of the user's, not given: not damage
        raise
    except CORRUPTION as exc:
        raise ModelFileError(f"{path}: corrupt or truncated model file ({type(exc).__name__}: {exc}); save the "
                             "model again") from None


def _read_model(zf: zipfile.ZipFile, path: Path, compile: bool):
    config = _read_config(zf, path)
    try:
        weights = zf.read(_WEIGHTS)
    except KeyError:
        raise ModelFileError(f"{path} has no {_WEIGHTS}; the file is incomplete") from None
    expected = config.get("weights_sha256")
    if expected is not None and hashlib.sha256(weights).hexdigest() != expected:
        raise ModelFileError(f"{path}: the weights do not match their checksum (the file was damaged after it "
                             "was written); save the model again")
    model = model_from_config(config["model_config"])
    _assign(model, _read_weights(weights, path), path, keep_dtype=True)
    if compile and config.get("compile_config"):
        model.compile_from_config(config["compile_config"])
        model._pending_optimizer_state = _optimizer_state(zf, config, model, path)
    return model


def _optimizer_state(zf: zipfile.ZipFile, config: dict, model, path: Path, by_position: bool = False):
    if "optimizer_sha256" not in config:
        return None
    optimizer = zf.read(_OPTIMIZER)
    if hashlib.sha256(optimizer).hexdigest() != config["optimizer_sha256"]:
        raise ModelFileError(f"{path}: the optimizer state does not match its checksum (the file was damaged "
                             "after it was written); save the model again")
    return _read_optimizer(model, optimizer, path, by_position)


def restore_training(model, filepath) -> dict | None:
    """Put a backup's weights and optimizer state into ``model`` (compiled, the same architecture)
    and return the ``training_state`` saved with them (``None`` if there is none)."""
    path = Path(filepath)
    with open_zip(path) as zf:
        try:
            config = _read_config(zf, path)
            weights = zf.read(_WEIGHTS)
            if hashlib.sha256(weights).hexdigest() != config.get("weights_sha256"):
                raise ModelFileError(f"{path}: the weights do not match their checksum; delete the backup to "
                                     "start over")
            _assign(model, _read_weights(weights, path), path, keep_dtype=True, by_position=True)
            state = _optimizer_state(zf, config, model, path, by_position=True)
        except ModelFileError:
            raise
        except CORRUPTION as exc:
            raise ModelFileError(f"{path}: corrupt backup ({type(exc).__name__}: {exc}); delete it to start "
                                 "over") from None
    model._push_weights()
    model._pending_optimizer_state = state
    return config.get("training_state")


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Weights only: an ``.npz`` archive keyed ``layer/weight`` (any file name)."""
    atomic_write(Path(filepath), _weights_npz(model), overwrite)


def load_weights(model, filepath) -> None:
    """Set ``model``'s weights from a weights file, or from a whole polykeras model file."""
    path = Path(filepath)
    if not path.exists():
        raise FileNotFoundError(f"no such weights file: {path}")
    data = path.read_bytes()
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if _CONFIG in zf.namelist():  # a whole-model file: take its weights
                    data = zf.read(_WEIGHTS)
    except CORRUPTION as exc:
        raise ModelFileError(f"{path}: corrupt or truncated ({type(exc).__name__}: {exc}); save it again") from None
    _assign(model, _read_weights(data, path), path)
