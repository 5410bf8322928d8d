"""Where dataset files are looked for, and whether they are the official ones.

Search order for a file ``name`` (e.g. ``mnist.npz``, ``fashion-mnist/t10k-labels-idx1-ubyte.gz``):

1. every folder in ``$POLYKERAS_DATA_DIR`` (one folder, or several joined by ``os.pathsep``);
2. the Keras cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets`` (where Keras itself keeps them);
3. a download (see :mod:`polykeras.datasets._fetch`) into the first ``POLYKERAS_DATA_DIR`` folder,
   else into the Keras cache.

Local files that do not match the official checksum are used, but the loaders say so with a
:class:`DatasetSubsetWarning`. A local file is hashed at most once per process (cached by path, mtime
and size); a file that was just downloaded and verified is not hashed again.

:data:`CHECKSUMS` is the table of official digests; tests (or a mirror) may replace entries. An entry
is a tuple of ``"algorithm:hexdigest"`` strings, any one of which identifies the official file;
``gunzip-md5`` is the md5 of a gzip file's decompressed content (so a re-compressed but identical
file is still recognised).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from pathlib import Path

CHECKSUMS: dict[str, tuple[str, ...]] = {
    "mnist.npz": ("sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
    "imdb.npz": ("sha256:69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",),
    "imdb_word_index.json": ("md5:bfafd718b763782e994055a2d397834f",),
    # Fashion-MNIST: sha256 and md5 of the official gzip files, and md5 of their decompressed content.
    "fashion-mnist/train-images-idx3-ubyte.gz": (
        "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d", "gunzip-md5:f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "fashion-mnist/train-labels-idx1-ubyte.gz": (
        "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "md5:25c81989df183df01b3e8a0aad5dffbe", "gunzip-md5:9018921c3c673c538a1fc5bad174d6f9"),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": (
        "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "md5:bef4ecab320f06d8554ea6380940ec79", "gunzip-md5:8181f5470baa50b63fa0f6fddb340f0a"),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": (
        "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "md5:bb300cfdad3c16e7a12a480ee83cd310", "gunzip-md5:15d484375f8d13e6eb1aabb0c3f46965"),
    "cifar-10-python.tar.gz": ("sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                               "md5:c58f30108f718f92721af3b95e74349a"),
    # the files inside the CIFAR-10 tarball (md5 as published with the dataset)
    "cifar-10-batches-py/data_batch_1": ("md5:c99cafc152244af753f735de768cd75f",),
    "cifar-10-batches-py/data_batch_2": ("md5:d4bba439e000b95fd0a9bffe97cbabec",),
    "cifar-10-batches-py/data_batch_3": ("md5:54ebc095f3ab1f0389bbae665268c751",),
    "cifar-10-batches-py/data_batch_4": ("md5:634d18415352ddfa80567beed471001a",),
    "cifar-10-batches-py/data_batch_5": ("md5:482c414d41f54cd18b22e5b47cb7c3cb",),
    "cifar-10-batches-py/test_batch": ("md5:40351d587109b95175f43aff81a1287e",),
}


class DatasetError(OSError):
    """Base class of the errors raised while finding, fetching or reading a dataset file."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The file is in none of the searched folders and could not be downloaded."""


class DatasetCorruptError(DatasetError):
    """A dataset file exists but cannot be read (truncated, not the expected format, wrong shapes)."""


class DatasetChecksumError(DatasetCorruptError):
    """A downloaded file does not match the official checksum (it was discarded)."""


class DatasetSubsetWarning(UserWarning):
    """A local dataset file is not the official one (e.g. a subset); it is used anyway."""


# ------------------------------------------------------------------ folders
def keras_cache_dir() -> Path:
    """``$KERAS_HOME/datasets``, else ``~/.keras/datasets`` (``/tmp/.keras`` if home is read-only, as Keras)."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(os.path.expanduser(home)) / "datasets"


def search_dirs() -> list[tuple[Path, str]]:
    """The folders searched, in order, each with a label saying where it comes from."""
    dirs = [(Path(os.path.expanduser(d)), "POLYKERAS_DATA_DIR")
            for d in os.environ.get("POLYKERAS_DATA_DIR", "").split(os.pathsep) if d.strip()]
    dirs.append((keras_cache_dir(), "Keras cache"))
    return dirs


def download_dir() -> Path:
    """Where downloads go: the first ``POLYKERAS_DATA_DIR`` folder if set, else the Keras cache."""
    return search_dirs()[0][0]


def find(rel_paths, *, want_dir: bool = False) -> Path | None:
    """The first existing ``folder / rel`` over the search folders (outer loop) and ``rel_paths``."""
    for folder, _ in search_dirs():
        for rel in rel_paths:
            p = folder / rel
            if (p.is_dir() if want_dir else p.is_file()):
                return p
    return None


# ------------------------------------------------------------------ checksums
_DIGESTS: dict[tuple[str, int, int], dict[str, str]] = {}


def _cache_key(path) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def _compute(path, algos: set[str]) -> dict[str, str]:
    """Digests of ``path`` for ``algos``: one pass over the raw bytes, one over the gunzipped content."""
    out = {}
    raw = {a: hashlib.new(a) for a in algos if not a.startswith("gunzip-")}
    unzipped = {a: hashlib.new(a[len("gunzip-"):]) for a in algos if a.startswith("gunzip-")}
    for opener, hashers in ((open, raw), (gzip.open, unzipped)):
        if not hashers:
            continue
        try:
            with opener(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    for h in hashers.values():
                        h.update(chunk)
        except (OSError, EOFError, ValueError):  # unreadable / not gzip: matches nothing
            out.update({a: "" for a in hashers})
        else:
            out.update({a: h.hexdigest() for a, h in hashers.items()})
    return out


def remember_digests(path, digests: dict[str, str]) -> None:
    """Record digests already known for ``path`` (e.g. computed while reading or downloading it)."""
    _DIGESTS.setdefault(_cache_key(path), {}).update(digests)


def expected_text(name: str) -> str:
    """The official checksum(s) of ``name``, for messages."""
    return " or ".join(CHECKSUMS.get(name, ("(unknown)",)))


def is_official(path, name: str) -> bool:
    """Whether ``path`` matches one of the official digests of ``name`` (hashing it at most once)."""
    expected = [e.split(":", 1) for e in CHECKSUMS.get(name, ())]
    known = _DIGESTS.setdefault(_cache_key(path), {})
    if any(known.get(a) == h.lower() for a, h in expected):
        return True
    missing = {a for a, _ in expected if a not in known}
    # raw digests are cheap; only decompress when no raw digest settles it
    for group in ({a for a in missing if not a.startswith("gunzip-")}, {a for a in missing if a.startswith("gunzip-")}):
        if group:
            known.update(_compute(path, group))
            if any(known.get(a) == h.lower() for a, h in expected):
                return True
    return False


def warn_unofficial(path, name: str, counts, official_counts, *, expected: str | None = None, note: str = "",
                    stacklevel: int = 3) -> None:
    """Emit the :class:`DatasetSubsetWarning` for a local file that is not the official ``name``.

    ``counts`` and ``official_counts`` are the (train, test) sample counts, or None for files without samples.
    """
    holds = ""
    if counts is not None:
        have = "/".join(f"{n:,}" for n in counts)
        official = "/".join(f"{n:,}" for n in official_counts)
        holds = f" It holds {have} train/test samples (official: {official})."
    warnings.warn(
        f"{path} is not the official {name} (checksum differs from {expected or expected_text(name)}).{holds}"
        f"{note} Results may differ from Keras's. (Silence with warnings.filterwarnings('ignore', "
        "category=polykeras.datasets.DatasetSubsetWarning).)",
        DatasetSubsetWarning, stacklevel=stacklevel)
