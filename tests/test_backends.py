"""Plugin discovery, backend selection and its errors."""

import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import backends, plugins
from polykeras.backends import BackendInfo, BackendNotFoundError, DeviceNotAvailableError
from polykeras.hookspecs import hookimpl


def test_numpy_backend_is_registered_through_its_entry_point():
    info = backends.find_backend("numpy")
    assert info.installed and info.plugin == "polykeras_numpy"
    assert backends.find_backend("reference") is info
    assert plugins.manager().get_plugin("numpy") is not None


def test_import_polykeras_imports_no_framework():
    code = ("import sys, polykeras; import polykeras.backends as b; b.backend_infos(); "
            "print([m for m in ('torch','jax','tensorflow','keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_backend_lists_installed():
    with pytest.raises(BackendNotFoundError) as err:
        backends.find_backend("torchh")
    installed = str(err.value).splitlines()[0].split("Installed backends: ")[1]
    assert "numpy" in installed.rstrip(".").split(", ")


def test_first_party_backend_without_its_framework_names_the_extra(hide_modules, monkeypatch):
    hide_modules("torch")
    monkeypatch.setattr(backends, "_instances", {})  # a torch backend made earlier in this process is cached
    with pytest.raises(BackendNotFoundError, match=r"pip install 'polykeras\[torch\]' \(in a polykeras checkout, add -c constraints.txt"):
        backends.get_backend("torch")  # the plain command works anywhere; the constraints file is a checkout's


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("POLYKERAS_BACKEND", "nope")
    model = keras.Sequential([keras.layers.Dense(1, input_dim=2)])
    with pytest.raises(BackendNotFoundError, match="unknown backend 'nope'"):
        model.predict(np.ones((1, 2)), verbose=0)


def test_unavailable_device():
    with pytest.raises(DeviceNotAvailableError, match="no device 'cuda'.*available: cpu"):
        backends.find_backend("numpy").create("cuda", "float32")


class MissingFrameworkPlugin:
    @hookimpl
    def polykeras_backends(self):
        return [BackendInfo(name="fancy", factory="nowhere:Backend", requires=("no_such_framework_xyz",),
                            extra="fancy")]


class LimitedPlugin:
    """A backend that implements Dense only, to check the missing-layer message."""

    @hookimpl
    def polykeras_backends(self):
        from polykeras_numpy.backend import NumpyBackend

        class DenseOnly(NumpyBackend):
            name = "dense-only"
            layer_kinds = frozenset({"Dense"})

        return [BackendInfo(name="dense-only", factory=lambda device, dtype: DenseOnly(device, dtype),
                            layer_kinds=frozenset({"Dense"}))]


@pytest.fixture
def extra_plugins():
    plugins.register(MissingFrameworkPlugin(), name="missing-framework")
    plugins.register(LimitedPlugin(), name="limited")
    yield
    plugins.unregister("missing-framework")
    plugins.unregister("limited")


def test_missing_framework_says_what_to_install(extra_plugins):
    with pytest.raises(BackendNotFoundError, match=r"needs no_such_framework_xyz.*polykeras\[fancy\]"):
        backends.get_backend("fancy")
    with pytest.raises(BackendNotFoundError, match=r"Declared but not installed: fancy"):
        backends.find_backend("nothing")


def test_missing_layer_names_backend_layer_and_alternatives(extra_plugins):
    model = keras.Sequential([keras.layers.Dense(4, input_dim=3), keras.layers.Dropout(0.1)])
    model.compile("sgd", "mse", backend="dense-only")
    with pytest.raises(NotImplementedError, match=r"'dense-only' does not implement layer kind\(s\) Dropout.*numpy"):
        model.fit(np.ones((2, 3)), np.ones((2, 4)), verbose=0)


def test_broken_plugin_is_reported_and_others_still_work(tmp_path, monkeypatch):
    """An entry point whose module fails to import: named in errors, numpy still usable."""
    dist = tmp_path / "broken_plugin-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[polykeras]\nbroken = polykeras_broken_xyz\n")
    (tmp_path / "polykeras_broken_xyz.py").write_text("raise ImportError('libfoo.so not found')\n")
    code = (
        "import polykeras.backends as b, polykeras.plugins as p\n"
        "print(b.find_backend('numpy').name)\n"
        "print(p.load_failures()[0].name, p.load_failures()[0].error)\n"
        "try:\n    b.find_backend('zzz')\nexcept LookupError as e:\n    print(e)\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    assert out.splitlines()[0] == "numpy"
    assert "broken ImportError: libfoo.so not found" in out
    assert "Plugin 'broken' (polykeras_broken_xyz) failed to load" in out
