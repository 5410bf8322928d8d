"""MNIST handwritten digits, as ``keras.datasets.mnist``.

The file is Keras's ``mnist.npz`` (keys ``x_train y_train x_test y_test``), found in
``$POLYKERAS_DATA_DIR`` or the Keras cache, or downloaded (see :mod:`polykeras.datasets._files`
and :mod:`polykeras.datasets._fetch`).
As a last resort -- nothing found and no download possible -- the copy bundled with polykeras is used:
real MNIST, but only the first 17,435 training images (the 10,000 test images are complete), so a
machine without network can still train; a :class:`DatasetSubsetWarning` says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from polykeras.datasets import _fetch, _files
from polykeras.datasets._formats import corrupt, read_npz

BUNDLED = Path(__file__).with_name("data") / "mnist.npz"
OFFICIAL_COUNTS = (60_000, 10_000)
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path):
    arrays = read_npz(path, _KEYS)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != "uint8" or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise corrupt(path, f"x_{split} is {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
        if y.dtype.kind not in "ui" or y.shape != (len(x),):
            raise corrupt(path, f"y_{split} is {y.dtype} {y.shape}, expected {len(x)} integer labels")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load_data(path="mnist.npz"):
    """Load the MNIST dataset (60,000 training and 10,000 test 28x28 grayscale digit images).

    Args:
        path: the file's name in the searched folders (default ``mnist.npz``), or a path to it.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape ``(N, 28, 28)`` with values
        0-255, ``y`` uint8 of shape ``(N,)`` with digits 0-9 -- exactly what Keras returns.

    Raises:
        DatasetNotFoundError: only when ``path`` names a file that does not exist (otherwise the
            bundled subset is the fallback).
        DatasetCorruptError: the file found cannot be read.
        DatasetChecksumError: a download arrived but is not the official file.
    """
    note = ""
    try:
        file, verified = _fetch.locate("mnist.npz", local=os.fspath(path), what="MNIST")
    except _files.DatasetNotFoundError as e:
        if os.path.isabs(path) or os.path.dirname(path):  # an explicit path that does not exist
            raise
        file, verified = BUNDLED, False
        reason = getattr(e, "reason", "")
        note = (f" It is the small copy bundled with polykeras, used because {path} was found in none of "
                f"{', '.join(str(d) for d, _ in _files.search_dirs())} and could not be downloaded ({reason}).")
    data = _read(file)
    if not verified and not _files.is_official(file, "mnist.npz"):
        counts = (len(data[0][0]), len(data[1][0]))
        _files.warn_unofficial(file, "mnist.npz", counts, OFFICIAL_COUNTS, note=note)
    return data
