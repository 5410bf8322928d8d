"""Writing a file atomically, so that a crash never leaves a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path``: to a temporary file in the target folder,
    flushed to disk, then renamed over the target. In a run of several processes
    (:mod:`polykeras.distribution`) only rank 0 writes; the others write nothing."""
    from polykeras.distribution import is_chief

    if not is_chief():
        return
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
