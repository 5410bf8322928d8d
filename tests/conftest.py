"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def real_data_dir() -> Path:
    return Path(os.environ.get("POLYKERAS_DATA_DIR") or SHARED_DATASETS)


def pytest_collection_modifyitems(config, items):
    """Tests that use the ``real_data`` fixture need the real datasets: where
    they are absent (a user's fresh machine), those tests are skipped -- and
    say why -- instead of failing."""
    folder = real_data_dir()
    if folder.is_dir():
        return
    marker = pytest.mark.skipif(True, reason=f"real datasets not found at {folder}; set POLYKERAS_DATA_DIR")
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(marker)


@pytest.fixture
def real_data(monkeypatch) -> Path:
    """Point the dataset loaders at the real data in ``../shared/datasets``
    (or ``$POLYKERAS_DATA_DIR`` when it is set)."""
    folder = real_data_dir()
    monkeypatch.setenv("POLYKERAS_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def hide_modules(monkeypatch):
    """``hide_modules("torch", ...)`` makes modules look uninstalled to the install
    checks (``importlib.util.find_spec``) for the rest of the test."""
    import importlib.util

    real = importlib.util.find_spec

    def hide(*names):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **k: None if name in names else real(name, *a, **k))

    return hide
