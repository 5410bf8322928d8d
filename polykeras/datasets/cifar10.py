"""CIFAR-10, as ``keras.datasets.cifar10``.

Reads the python batches of the official ``cifar-10-python.tar.gz``: a ``cifar-10-batches-py/``
folder in ``$POLYKERAS_DATA_DIR`` or the Keras cache (also where Keras 3 extracts it,
``cifar-10-batches-py-target/cifar-10-batches-py/``), else a local copy of the tarball, which is
extracted next to it (or into the download folder), else the tarball is downloaded (checked against
its official sha256/md5), extracted and deleted.

Batches of any size are concatenated (Keras preallocates 10,000 rows per batch); the batch pickles
are read by a restricted unpickler that cannot run code (see :mod:`polykeras.datasets._formats`).

Classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from polykeras.datasets import _fetch, _files
from polykeras.datasets._formats import corrupt, read_cifar_batch

OFFICIAL_COUNTS = (50_000, 10_000)
DIRNAME = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
# where Keras leaves the extracted folder / the archive (older and newer Keras 3 layouts)
_LOCAL_DIRS = (DIRNAME, f"{DIRNAME}-target/{DIRNAME}")
_LOCAL_TARBALLS = (TARBALL, f"{DIRNAME}.tar.gz", f"{DIRNAME}-target_archive")


def _extract(archive: Path, parent: Path) -> Path:
    """Safely extract the ``cifar-10-batches-py/`` folder of ``archive`` into ``parent``; return it."""
    target = parent / DIRNAME
    parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{DIRNAME}.", suffix=".part", dir=parent)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if (m.name.startswith("/") or ".." in parts or not parts or parts[0] != DIRNAME
                        or not (m.isfile() or m.isdir())):
                    raise corrupt(archive, f"unexpected member {m.name!r}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(scratch, members=members, **extra)
        missing = [b for b in BATCHES if not os.path.isfile(os.path.join(scratch, DIRNAME, b))]
        if missing:
            raise corrupt(archive, f"the archive lacks {DIRNAME}/{', '.join(missing)}")
        try:
            os.replace(os.path.join(scratch, DIRNAME), target)
        except OSError:
            if not all((target / b).is_file() for b in BATCHES):  # not merely extracted concurrently
                raise
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise corrupt(archive, f"{type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _locate() -> tuple[Path, bool]:
    """The batches folder and whether it comes from a just-verified download."""
    folder = _files.find(_LOCAL_DIRS, want_dir=True)
    if folder is not None:
        return folder, False
    archive = _files.find(_LOCAL_TARBALLS)
    if archive is not None:
        parent = archive.parent if os.access(archive.parent, os.W_OK) else _files.download_dir()
        return _extract(archive, parent), False
    url = _fetch.origin(_fetch.CIFAR_ORIGIN, TARBALL)
    dest = _files.download_dir() / TARBALL
    try:
        _fetch.download(url, dest, TARBALL)
    except _fetch.DownloadFailed as e:
        raise _fetch.not_found_error(TARBALL, url, str(e), what=f"CIFAR-10, or its extracted {DIRNAME}/ folder") \
            from None
    folder = _extract(dest, dest.parent)
    dest.unlink()  # the extracted batches are what is read from now on
    return folder, True


def load_data():
    """Load CIFAR-10 (50,000 training and 10,000 test 32x32 colour images in 10 classes).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape ``(N, 32, 32, 3)`` (channels
        last; ``(N, 3, 32, 32)`` if ``polykeras.backend.image_data_format()`` is channels_first) with
        values 0-255, ``y`` uint8 of shape ``(N, 1)`` with classes 0-9 -- as Keras returns them.

    Raises:
        DatasetNotFoundError: neither the folder nor the tarball was found, and the download failed.
        DatasetCorruptError: a batch or the tarball cannot be read.
        DatasetChecksumError: a downloaded tarball is not the official one.
    """
    folder, verified = _locate()
    missing = [b for b in BATCHES if not (folder / b).is_file()]
    if missing:
        raise corrupt(folder, f"it lacks {', '.join(missing)}")
    batches = [read_cifar_batch(folder / b) for b in BATCHES]
    x_train = np.concatenate([x for x, _ in batches[:5]])
    y_train = np.concatenate([y for _, y in batches[:5]]).astype(np.uint8).reshape(-1, 1)
    x_test, y_test = batches[5][0], batches[5][1].astype(np.uint8).reshape(-1, 1)

    from polykeras.backend import image_data_format

    if image_data_format() == "channels_last":
        x_train = np.ascontiguousarray(x_train.transpose(0, 2, 3, 1))
        x_test = np.ascontiguousarray(x_test.transpose(0, 2, 3, 1))
    if not verified:
        unofficial = [b for b in BATCHES if not _files.is_official(folder / b, f"{DIRNAME}/{b}")]
        if unofficial:
            _files.warn_unofficial(folder, f"{DIRNAME}/ folder", (len(x_train), len(x_test)), OFFICIAL_COUNTS,
                                   expected="the official md5 of each batch",
                                   note=f" Files that differ from the official ones: {', '.join(unofficial)}.")
    return (x_train, y_train), (x_test, y_test)
