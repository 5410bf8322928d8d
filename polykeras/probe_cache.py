"""Where ``backend="auto"`` keeps its probes: one JSON file per model, batch shape, dtype, device and
set of candidate framework versions, in the user's cache folder.

The folder is ``POLYKERAS_CACHE_DIR`` when set, else the platform's user cache (as ``platformdirs``
would say, without depending on it): ``$XDG_CACHE_HOME/polykeras`` or ``~/.cache/polykeras`` on Linux,
``~/Library/Caches/polykeras`` on macOS, ``%LOCALAPPDATA%\\polykeras\\Cache`` on Windows. Probes are
in its ``auto-backend`` subfolder; deleting it (or ``polykeras backends --probe FILE --fresh``) makes
the next ``auto`` probe again.

The key (:func:`probe_key`) is a SHA-256 of everything that can change which backend is fastest: the
model's spec (layers, configs and weight shapes, not weight values), its training spec (optimizer,
loss, metrics), what is timed (train or predict steps) on which batch shapes and dtypes, the dtype,
the requested device, parity mode, each candidate's name and framework version, the probe's settings,
polykeras's version and the machine (its architecture and CPU count). Any change is a new file: a
stale choice is never read back.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

SUBFOLDER = "auto-backend"


def cache_dir() -> Path:
    """The user's polykeras cache folder (not created here)."""
    env = os.environ.get("POLYKERAS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "polykeras" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "polykeras"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "polykeras"


def probe_key(facts: dict[str, Any]) -> str:
    """The SHA-256 of ``facts`` (JSON-able; see the module docstring), with the machine added."""
    from polykeras import __version__

    everything = {**facts, "polykeras": __version__, "machine": platform.machine(), "cpus": os.cpu_count()}
    text = json.dumps(everything, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def path_of(key: str) -> Path:
    return cache_dir() / SUBFOLDER / f"{key}.json"


def load(key: str) -> dict | None:
    """The probe stored under ``key``, or ``None`` (none, or a file that cannot be read as one)."""
    try:
        record = json.loads(path_of(key).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def store(key: str, record: dict) -> Path | None:
    """Write ``record`` under ``key`` (atomically: a reader never sees half a file); ``None`` where
    the cache folder cannot be written (the choice still holds for this process)."""
    path = path_of(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump({**record, "key": key}, tmp, indent=1)
        os.replace(tmp.name, path)
    except OSError:
        return None
    return path
