"""``polykeras.datasets``: Keras's small datasets, loaded as ``keras.datasets`` loads them.

``mnist``, ``fashion_mnist``, ``cifar10`` and ``imdb`` each have a ``load_data()`` with Keras 3's
signature and return values. Files are looked up in ``$POLYKERAS_DATA_DIR`` (one folder or several
joined by ``os.pathsep``), then in the Keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``),
then downloaded from the origin Keras uses (or ``$POLYKERAS_DATASETS_URL``) and checked against the
official checksums. Local files that are not the official ones (e.g. subsets) are used with a
:class:`DatasetSubsetWarning`. Without a file and without network, a :class:`DatasetNotFoundError`
says which file to place where -- except for MNIST, which falls back to a bundled real subset.
Loading never unpickles anything but plain arrays, lists and dicts.
"""

from polykeras.datasets import cifar10, fashion_mnist, imdb, mnist
from polykeras.datasets._files import (DatasetChecksumError, DatasetCorruptError, DatasetError,
                                       DatasetNotFoundError, DatasetSubsetWarning)

__all__ = ["DatasetChecksumError", "DatasetCorruptError", "DatasetError", "DatasetNotFoundError",
           "DatasetSubsetWarning", "cifar10", "fashion_mnist", "imdb", "mnist"]

BUILTIN = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10, "imdb": imdb}


def load(name: str, **kwargs):
    """``load_data()`` of a dataset by name: built in, or added by a plugin's
    ``polykeras_datasets`` hook."""
    from polykeras.plugins import plugin_datasets

    if name in BUILTIN:
        return BUILTIN[name].load_data(**kwargs)
    extra = plugin_datasets()
    if name not in extra:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join([*BUILTIN, *extra])}")
    return extra[name](**kwargs)


__all__ += ["BUILTIN", "load"]
