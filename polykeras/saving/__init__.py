"""Saving and loading models: polykeras's own file, and Keras 3's ``.keras`` file.

* ``model.save(path)`` / :func:`save_model` writes polykeras's own model file
  (:mod:`.portable`: JSON and ``.npy`` arrays in a zip), which loads under any
  backend; :func:`save_weights` and :func:`load_weights` handle weights alone.
* :func:`load_model` reads either that file or a Keras 3 ``.keras`` file.
* :func:`export_keras` writes a Keras 3 ``.keras`` file that
  ``keras.saving.load_model`` opens.

The Keras 3 format (:mod:`.keras_format`, read by :mod:`.keras_read`, written
by :mod:`.keras_write`) needs ``h5py`` but not Keras; ``h5py`` is imported only
when such a file is read or written. Every write is atomic (:mod:`.atomic`).
"""

from __future__ import annotations

from pathlib import Path

from polykeras.saving import keras_read, keras_write, portable
from polykeras.saving.keras_format import MEMBERS as _KERAS_MEMBERS
from polykeras.saving.keras_format import KerasFileError
from polykeras.saving.portable import (FORMAT, WEIGHTS_FORMAT, ModelFileError, load_weights, model_from_config,
                                       save_model, save_weights)

__all__ = ["FORMAT", "WEIGHTS_FORMAT", "KerasFileError", "ModelFileError", "export_keras", "load_model",
           "load_weights", "model_from_config", "save_model", "save_weights"]


def load_model(filepath, compile: bool = True):
    """A model from a polykeras model file or a Keras 3 ``.keras`` file (told
    apart by their contents, not their names)."""
    path = Path(filepath)
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
    except portable.CORRUPTION + (RuntimeError,) as exc:  # zip, zlib, json, a damaged config; h5py reports a
        # damaged HDF5 structure as RuntimeError
        raise ModelFileError(f"{path} looks like a Keras 3 .keras file but could not be read ({type(exc).__name__}: "
                             f"{exc}); it may be truncated or corrupt, or from a Keras version polykeras does not "
                             "know; re-save it with keras.saving.save_model") from None


def export_keras(model, filepath) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file (architecture and weights)
    that ``keras.saving.load_model`` opens; needs ``h5py``, not Keras."""
    _require_h5py()
    keras_write.write_model(model, filepath)


def _require_h5py() -> None:
    try:
        import h5py  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"reading and writing Keras .keras files needs h5py ({exc}); install it with: "
                          "pip install h5py (or pip install 'polykeras[keras]')") from None
