"""IMDB movie-review sentiment, as ``keras.datasets.imdb``.

The file is Keras's ``imdb.npz``: ``x_train``/``x_test`` are object arrays of Python lists of word
indices (1 = most frequent word), ``y_train``/``y_test`` int arrays of 0/1 labels. NumPy can store
such ragged object arrays only as pickles; ``np.load(allow_pickle=True)`` would run whatever code a
tampered file carries, so this module reads them with the restricted unpickler of
:mod:`polykeras.datasets._formats`, which rebuilds arrays and lists and refuses every other global
(as Keras 3.15 does). Only this file is read that way; every other member must be a plain array.

:func:`load_data` reproduces Keras's algorithm step by step, including its quirks:
``num_words=None`` means ``max index`` and, because the test is ``w < num_words``, the single
highest index then becomes ``oov_char``; ``maxlen`` keeps sequences *shorter* than ``maxlen``
(the start character counts); ``skip_top`` applies after the ``index_from`` shift and so also
replaces ``start_char`` when ``skip_top > start_char``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from polykeras.datasets import _fetch, _files
from polykeras.datasets._formats import corrupt, read_npz

OFFICIAL_COUNTS = (25_000, 25_000)
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path):
    arrays = read_npz(path, _KEYS, allow_object=True)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != object or x.ndim != 1 or not all(isinstance(s, list) for s in x):
            raise corrupt(path, f"x_{split} is not a 1-D object array of lists of word indices")
        if y.dtype.kind not in "ui" or y.shape != x.shape:
            raise corrupt(path, f"y_{split} is {y.dtype} {y.shape}, expected {len(x)} integer labels")
    return arrays


def _remove_long_seq(maxlen, seq, label):
    """Keras's ``remove_long_seq``: keep the sequences with ``len < maxlen``."""
    new_seq, new_label = [], []
    for x, y in zip(seq, label):
        if len(x) < maxlen:
            new_seq.append(x)
            new_label.append(y)
    return new_seq, new_label


def _object_array(seqs) -> np.ndarray:
    out = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        out[i] = s
    return out


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
              index_from=3, **kwargs):
    """Load the IMDB reviews (25,000 training and 25,000 test), each a list of word indices.

    Args:
        path: the file's name in the searched folders (default ``imdb.npz``), or a path to it.
        num_words: keep the ``num_words`` most frequent words (indices below ``num_words`` after the
            shift); others become ``oov_char``. None: the largest index present.
        skip_top: indices below ``skip_top`` (after the shift) become ``oov_char`` too.
        maxlen: drop (not truncate) sequences whose length, start character included, is ``>= maxlen``.
        seed: the seed of the shuffle of the training and then the test set.
        start_char: prepended to every sequence (None: nothing prepended).
        oov_char: replaces dropped words (None: dropped words are removed).
        index_from: added to every word index.
        **kwargs: accepted and ignored, as by Keras.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` 1-D object arrays of lists of ints, ``y`` int
        arrays of 0/1 labels -- Keras's values and types. (Keras makes ``x`` 2-D in the corner case where
        every kept sequence has the same length; here it is always 1-D.)

    Raises:
        ValueError: ``maxlen`` left no training or no test sequence (as Keras).
        DatasetNotFoundError, DatasetCorruptError, DatasetChecksumError: see ``polykeras.datasets``.
    """
    file, verified = _fetch.locate("imdb.npz", local=os.fspath(path), what="IMDB")
    arrays = _read(file)
    x_train, labels_train = arrays["x_train"], arrays["y_train"]
    x_test, labels_test = arrays["x_test"], arrays["y_test"]
    if not verified and not _files.is_official(file, "imdb.npz"):
        _files.warn_unofficial(file, "imdb.npz", (len(x_train), len(x_test)), OFFICIAL_COUNTS)

    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train = x_train[indices]
    labels_train = labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test = x_test[indices]
    labels_test = labels_test[indices]

    if start_char is not None:
        x_train = [[start_char] + [w + index_from for w in x] for x in x_train]
        x_test = [[start_char] + [w + index_from for w in x] for x in x_test]
    elif index_from:
        x_train = [[w + index_from for w in x] for x in x_train]
        x_test = [[w + index_from for w in x] for x in x_test]
    else:
        x_train = [list(x) for x in x_train]
        x_test = [list(x) for x in x_test]

    if maxlen:
        x_train, labels_train = _remove_long_seq(maxlen, x_train, labels_train)
        x_test, labels_test = _remove_long_seq(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, no sequence was kept. "
                             "Increase maxlen.")

    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs)
    # 0 is padding, and by default 1 marks the start and 2 an out-of-vocabulary word
    if oov_char is not None:
        xs = [[w if (skip_top <= w < num_words) else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]

    idx = len(x_train)
    return (_object_array(xs[:idx]), labels[:idx]), (_object_array(xs[idx:]), labels[idx:])


def get_word_index(path="imdb_word_index.json"):
    """The dict mapping each word to its index in the IMDB data (before the ``index_from`` shift).

    Read from ``imdb_word_index.json`` in the searched folders, else downloaded from Keras's origin.
    """
    file, verified = _fetch.locate("imdb_word_index.json", local=os.fspath(path), what="IMDB word index")
    try:
        with open(file, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise corrupt(file, f"{type(e).__name__}: {e}") from e
    if not isinstance(index, dict):
        raise corrupt(file, "not a JSON object mapping words to indices")
    if not verified and not _files.is_official(file, "imdb_word_index.json"):
        _files.warn_unofficial(file, "imdb_word_index.json", None, None)
    return index
