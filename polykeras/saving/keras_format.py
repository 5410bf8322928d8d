"""Keras 3's ``.keras`` model file, as polykeras reads (:mod:`.keras_read`) and
writes (:mod:`.keras_write`) it -- with ``h5py`` and NumPy, without Keras.

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

import re
import zipfile

#: The members that make a zip a Keras 3 model file.
MEMBERS = frozenset({"config.json", "model.weights.h5"})
#: Layers whose variables Keras keeps under ``layers/<name>/cell/vars``.
RECURRENT = ("SimpleRNN", "LSTM", "GRU")


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
