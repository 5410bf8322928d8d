"""Downloading dataset files, and finding-or-downloading them (:func:`locate`).

A download comes from the official origin (the one Keras uses) or from ``$POLYKERAS_DATASETS_URL``
when set, with a progress display on stderr (tqdm if installed, else a one-line percentage). It goes
to a temporary file in the target folder, moved into place only once the official checksum matches;
on any failure (Ctrl-C included) the temporary file, and any folder made for it, is deleted.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from polykeras.datasets import _files
from polykeras.datasets._files import (CHECKSUMS, DatasetChecksumError, DatasetNotFoundError, download_dir,
                                       expected_text, find, remember_digests, search_dirs)

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CIFAR_ORIGIN = "https://www.cs.toronto.edu/~kriz/"
TIMEOUT_S = 60.0


class DownloadFailed(Exception):
    """The download was not possible (network, HTTP error, interrupted transfer, no write access)."""


def origin(default_base: str, remote: str) -> str:
    """The URL of ``remote``: under ``$POLYKERAS_DATASETS_URL`` if set, else under ``default_base``."""
    base = os.environ.get("POLYKERAS_DATASETS_URL") or default_base
    return base.rstrip("/") + "/" + remote


class _Progress:
    """tqdm if installed, else a one-line percentage on stderr."""

    def __init__(self, label: str, total: int | None):
        self.label, self.total, self.done, self.shown = label, total, 0, None
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, leave=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if self.total:
            text = f"{min(100, 100 * self.done // self.total)}%"
        else:
            text = f"{self.done // (1 << 20)} MiB"
        if text != self.shown:
            self.shown = text
            sys.stderr.write(f"\r{self.label}: {text} ({self.done:,} bytes)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _remove_empty(folders) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def download(url: str, dest: Path, name: str) -> Path:
    """Fetch ``url`` to ``dest``, verified against ``CHECKSUMS[name]``; nothing is left behind on failure.

    Raises :class:`DatasetChecksumError` on a checksum mismatch and ``DownloadFailed`` when the
    download is not possible (network, HTTP status, interrupted transfer, unwritable folder).
    """
    expected = [e.split(":", 1) for e in CHECKSUMS[name]]
    raw_algos = {a for a, _ in expected if not a.startswith("gunzip-")}
    created = []  # folders made for this download, deepest first: removed again if it fails
    folder = dest.parent
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        _remove_empty(created)
        raise DownloadFailed(f"cannot write to {dest.parent}: {e}") from e
    try:
        hashers = {a: hashlib.new(a) for a in raw_algos}
        sys.stderr.write(f"Downloading {url} -> {dest}\n")
        request = urllib.request.Request(url, headers={"User-Agent": "polykeras-datasets"})
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    progress = _Progress(dest.name, total)
                    try:
                        while chunk := resp.read(1 << 16):
                            out.write(chunk)
                            for h in hashers.values():
                                h.update(chunk)
                            progress.update(len(chunk))
                    finally:
                        progress.close()
            except urllib.error.HTTPError as e:
                raise DownloadFailed(f"HTTP error {e.code}: {e.reason}") from e
            except (urllib.error.URLError, OSError, ValueError) as e:  # ValueError: malformed URL
                raise DownloadFailed(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from e
            except Exception as e:  # http.client.HTTPException (IncompleteRead, BadStatusLine, ...)
                raise DownloadFailed(f"{type(e).__name__}: {e}") from e
        if total is not None and progress.done != total:
            raise DownloadFailed(f"transfer interrupted: received {progress.done:,} of {total:,} bytes")
        digests = {a: h.hexdigest() for a, h in hashers.items()}
        ok = any(digests.get(a) == h.lower() for a, h in expected)
        if not ok and len(raw_algos) < len(expected):
            digests.update(_files._compute(tmp, {a for a, _ in expected} - raw_algos))
            ok = any(digests.get(a) == h.lower() for a, h in expected)
        if not ok:
            got = ", ".join(f"{a}:{h}" for a, h in sorted(digests.items()))
            raise DatasetChecksumError(
                f"Downloaded {url} but it does not match the official {name}: expected {expected_text(name)}, "
                f"got {got}. The file was discarded. The server may serve a different file (check "
                f"POLYKERAS_DATASETS_URL) or the transfer was corrupted; try again, or place the official file "
                f"in one of: {', '.join(str(d) for d, _ in search_dirs())}.")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _remove_empty(created)
        raise
    remember_digests(dest, digests)
    return dest


def not_found_error(name: str, url: str, reason: str, *, local: str | None = None,
                    what: str = "") -> DatasetNotFoundError:
    """The error for a file that is nowhere to be found and could not be downloaded."""
    local = local or name
    where = "\n".join(f"    {d}  ({label})" for d, label in search_dirs())
    error = DatasetNotFoundError(
        f"Dataset file {local!r}{f' ({what})' if what else ''} was not found and could not be downloaded.\n"
        f"  official checksum: {expected_text(name)}\n  folders searched:\n{where}\n"
        f"  download from {url} failed: {reason}\n"
        f"To fix: fetch {url} where a network is available and place it as {local!r} in one of the folders "
        "above, or set POLYKERAS_DATA_DIR to the folder that holds it.")
    error.reason, error.url = reason, url
    return error


def locate(name: str, *, local: str | None = None, default_base: str = KERAS_ORIGIN,
           remote: str | None = None, what: str = "") -> tuple[Path, bool]:
    """Find ``local`` (default ``name``) in the search folders, else download it.

    Returns ``(path, verified)``; ``verified`` is True when the file was just downloaded and checked
    (callers then skip :func:`is_official`). ``local`` may also be a path to an existing file.
    """
    if local is not None and (os.path.isabs(local) or os.path.dirname(local)):
        p = Path(os.path.expanduser(local))
        if p.is_file():
            return p, False
        raise DatasetNotFoundError(f"Dataset file {str(p)!r} does not exist (the official {name} has "
                                   f"{expected_text(name)}).")
    local = local or name
    found = find([local])
    if found is not None:
        return found, False
    url = origin(default_base, remote or os.path.basename(name))
    try:
        return download(url, download_dir() / local, name), True
    except DownloadFailed as e:
        raise not_found_error(name, url, str(e), local=local, what=what) from None
