"""Fashion-MNIST, as ``keras.datasets.fashion_mnist``.

The four original IDX gzip files, in a ``fashion-mnist/`` folder of ``$POLYKERAS_DATA_DIR`` or of
the Keras cache (where Keras keeps them: ``~/.keras/datasets/fashion-mnist/``), else downloaded from
Keras's origin. A file counts as official when its gzip bytes match the official checksum or, for a
re-compressed copy, when its decompressed content does (that digest is computed while reading).

Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
9 Ankle boot.
"""

from __future__ import annotations

from polykeras.datasets import _fetch, _files
from polykeras.datasets._formats import corrupt, read_idx_gz

OFFICIAL_COUNTS = (60_000, 10_000)
FILES = {  # (split, part): file name; Keras's download order
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
}


def load_data():
    """Load Fashion-MNIST (60,000 training and 10,000 test 28x28 grayscale images of 10 kinds of clothing).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape ``(N, 28, 28)`` with values 0-255,
        ``y`` uint8 of shape ``(N,)`` with classes 0-9 -- as Keras returns them (but writable).

    Raises:
        DatasetNotFoundError: a file is in none of the searched folders and could not be downloaded.
        DatasetCorruptError: a file cannot be read, or images and labels disagree in number.
    """
    arrays, unofficial = {}, []
    for (split, part), fname in FILES.items():
        name = f"fashion-mnist/{fname}"
        path, verified = _fetch.locate(name, remote=fname, what="Fashion-MNIST")
        if part == "labels":
            array, content_md5 = read_idx_gz(path, magic=2049, item_shape=())
        else:
            array, content_md5 = read_idx_gz(path, magic=2051, item_shape=(28, 28))
        arrays[split, part] = array
        if not verified:
            _files.remember_digests(path, {"gunzip-md5": content_md5})
            if not _files.is_official(path, name):
                unofficial.append(path)
        if part == "images" and len(array) != len(arrays[split, "labels"]):
            raise corrupt(path, f"{len(array):,} images but {len(arrays[split, 'labels']):,} labels")
    if unofficial:
        counts = (len(arrays["train", "labels"]), len(arrays["test", "labels"]))
        others = "" if len(unofficial) == 1 else " Also not official: " + ", ".join(map(str, unofficial[1:])) + "."
        _files.warn_unofficial(unofficial[0], f"fashion-mnist/{unofficial[0].name}", counts, OFFICIAL_COUNTS,
                               note=others)
    return ((arrays["train", "images"], arrays["train", "labels"]),
            (arrays["test", "images"], arrays["test", "labels"]))
