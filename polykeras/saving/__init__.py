"""Saving and loading models: Keras 3's ``.keras`` file, and polykeras's own ``.polykeras`` file.

``model.save(path)`` / :func:`save_model` choose the format by the file name's suffix:

* ``.keras``: Keras 3's format (:mod:`.keras_format`, written by :mod:`.keras_write`,
  read by :mod:`.keras_read`): ``config.json`` with the model and, once compiled,
  its ``compile_config`` (optimizer with any learning-rate schedule, losses, loss
  weights, metrics); ``model.weights.h5`` with the weights and the optimizer's
  variables where Keras keeps them (:mod:`.keras_training`); ``metadata.json``.
  ``keras.saving.load_model`` opens it with the same predictions and optimizer
  state, and polykeras resumes training from it exactly. Needs ``h5py`` (a
  dependency of polykeras, imported only when such a file is read or written),
  not Keras.
* ``.polykeras``: polykeras's own format (:mod:`.portable`: JSON and ``.npy``
  arrays in a zip, with checksums), which needs NumPy alone; BackupAndRestore
  keeps its backups in it.
* anything else (``.h5``, no suffix) is refused with a ValueError, as Keras refuses it.

:func:`load_model` reads either format, told apart by contents, not name (so an
own-format file saved as ``model.keras`` by an older polykeras still loads).
:func:`export_keras` is :func:`save_model` in Keras's format whatever the name.
:func:`restore_training` puts a saved run (weights, optimizer state, and the
``training_state`` -- where a ``fit`` stood -- that ``save_model`` was given; in a
``.keras`` file it sits in ``metadata.json``, which Keras does not read) into a
model of the same architecture, from either format.
:func:`save_weights` and :func:`load_weights` handle weights alone. Every write
is atomic (:mod:`.atomic`); every damaged file raises :class:`ModelFileError`
naming it.
"""

from __future__ import annotations

from pathlib import Path

from polykeras.saving import keras_read, keras_training, keras_write, portable
from polykeras.saving.keras_format import MEMBERS as _KERAS_MEMBERS
from polykeras.saving.keras_format import KerasFileError
from polykeras.saving.registration import (UnknownObjectError, custom_object_scope, get_registered_name,
                                          get_registered_object, register_keras_serializable, safe_mode_scope)
from polykeras.saving.portable import FORMAT, WEIGHTS_FORMAT, ModelFileError, load_weights, model_from_config, save_weights
from polykeras.saving.serialization import deserialize_keras_object, serialize_keras_object

#: The file name suffixes ``save_model`` writes, and their formats.
SUFFIXES = {".keras": "Keras 3's .keras format", ".polykeras": "polykeras's own format"}

__all__ = ["FORMAT", "SUFFIXES", "WEIGHTS_FORMAT", "KerasFileError", "ModelFileError", "custom_object_scope",
           "export_keras", "safe_mode_scope",
           "get_registered_name", "get_registered_object", "load_model", "load_weights", "model_from_config",
           "register_keras_serializable", "restore_training", "save_model", "save_weights",
           "serialize_keras_object", "deserialize_keras_object"]


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True, safe_mode: bool = True):
    """A model from a polykeras model file or a Keras 3 ``.keras`` file (told
    apart by their contents, not their names). ``custom_objects`` and
    ``safe_mode`` are Keras's arguments: a polykeras file keeps custom layers as
    their traced graph, so it needs no classes to load; a Keras file names its
    custom layers' classes and functions (found registered or in ``custom_objects``),
    and a ``Lambda``'s Python lambda in it is bytecode, loaded with ``safe_mode=False`` only."""
    path = Path(filepath)
    with custom_object_scope(custom_objects), safe_mode_scope(safe_mode):
        with portable.open_zip(path) as zf:
            if not _KERAS_MEMBERS <= set(zf.namelist()):
                return portable.read_model(zf, path, compile)
        return _read_keras_file(path, compile)


def _read_keras_file(path: Path, compile: bool):
    _require_h5py()
    try:
        return keras_read.read_model(path, compile=compile)
    except KerasFileError as exc:
        raise ModelFileError(str(exc)) from None
    except UnknownObjectError:  # a function or class of the user's, not given: not damage
        raise
    except portable.CORRUPTION + (RuntimeError,) as exc:  # zip, zlib, json, a damaged config; h5py reports a
        # damaged HDF5 structure as RuntimeError
        raise ModelFileError(f"{path} looks like a Keras 3 .keras file but could not be read ({type(exc).__name__}: "
                             f"{exc}); it may be truncated or corrupt, or from a Keras version polykeras does not "
                             "know; re-save it with keras.saving.save_model") from None


def save_model(model, filepath, overwrite: bool = True, training_state: dict | None = None) -> None:
    """Write ``model`` in the format its suffix names: ``.keras`` (Keras 3's) or ``.polykeras``
    (polykeras's own); see the module docstring. ``training_state`` (where a ``fit`` stands, for
    :class:`polykeras.callbacks.BackupAndRestore`) goes into the same file."""
    suffix = Path(filepath).suffix.lower()
    if suffix == ".keras":
        export_keras(model, filepath, overwrite=overwrite, training_state=training_state)
    elif suffix == ".polykeras":
        portable.save_model(model, filepath, overwrite=overwrite, training_state=training_state)
    elif suffix in (".h5", ".hdf5"):
        raise ValueError(f"cannot save to {str(filepath)!r}: Keras's legacy HDF5 (.h5) model format is not supported "
                         "by polykeras; save to a .keras file (Keras 3's format, which Keras opens) or a .polykeras "
                         "file (polykeras's own)")
    else:
        raise ValueError(f"invalid file name extension for saving: {str(filepath)!r}; add .keras (Keras 3's format, "
                         "which Keras opens; recommended) or .polykeras (polykeras's own format, NumPy only)")


def export_keras(model, filepath, overwrite: bool = True, training_state: dict | None = None) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file (whatever its name) that ``keras.saving.load_model``
    opens: architecture, weights and, once compiled, compile settings and optimizer state; needs
    ``h5py``, not Keras."""
    _require_h5py()
    keras_write.write_model(model, filepath, overwrite=overwrite, training_state=training_state)


def restore_training(model, filepath) -> dict | None:
    """Put a saved run's weights and optimizer state into ``model`` (compiled, the same architecture,
    by position) and return the ``training_state`` saved with them; either format (by contents)."""
    path = Path(filepath)
    with portable.open_zip(path) as zf:
        keras_file = _KERAS_MEMBERS <= set(zf.namelist())
    if not keras_file:
        return portable.restore_training(model, path)
    _require_h5py()
    try:
        return keras_training.restore_training(model, path)
    except KerasFileError as exc:
        raise ModelFileError(str(exc)) from None
    except UnknownObjectError:  # a function or class of the user's, not given: not damage
        raise
    except portable.CORRUPTION + (RuntimeError,) as exc:
        raise ModelFileError(f"{path}: corrupt backup ({type(exc).__name__}: {exc}); delete it to start over") from None


def _require_h5py() -> None:
    try:
        import h5py  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"reading and writing Keras .keras files needs h5py ({exc}); install it with: "
                          "pip install h5py (or save to a .polykeras file, which needs NumPy alone)") from None
