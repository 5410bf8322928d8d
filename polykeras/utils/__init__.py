"""``polykeras.utils``: Keras's data helpers and seeding."""

from __future__ import annotations

import numpy as np

from polykeras.random import set_random_seed
from polykeras.utils.py_dataset import PyDataset, Sequence
from polykeras.utils.sequence import pad_sequences


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels (Keras semantics: a trailing axis
    of size 1 is dropped first; ``num_classes`` defaults to ``max + 1``)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        if not np.all(np.mod(x, 1) == 0):
            raise ValueError("to_categorical takes integer class labels; got fractional values")
    x = x.astype(np.int64)
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x.reshape(x.shape[:-1])
    if x.size and x.min() < 0:
        raise ValueError(f"class labels must be non-negative, got {x.min()}")
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    elif x.size and x.max() >= num_classes:
        raise ValueError(f"label {int(x.max())} does not fit num_classes={num_classes}")
    out = np.zeros(x.shape + (num_classes,), dtype="float32")
    np.put_along_axis(out, x[..., None], 1.0, axis=-1)
    return out


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def _lazy_progbar():
    from polykeras.utils.progbar import Progbar

    return Progbar


def __getattr__(name):
    if name == "Progbar":
        return _lazy_progbar()
    raise AttributeError(f"module 'polykeras.utils' has no attribute {name!r}")


__all__ = ["to_categorical", "pad_sequences", "set_random_seed", "normalize", "Progbar", "PyDataset", "Sequence"]
