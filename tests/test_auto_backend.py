"""``backend="auto"`` (polykeras.auto_backend, probe_cache, auto_backend_cli): the choice follows the
probe's table, probes are cached by spec and read back, a refusing backend is skipped with its reason,
bad names are refused, and ``polykeras backends --probe`` prints the table. No timing is asserted:
where the choice itself is checked, the probe's clock is a virtual one that each fake backend's steps
advance by a set cost."""

from __future__ import annotations

import json

import numpy as np
import pytest

import polykeras as keras
from polykeras import auto_backend, backends, cli, plugins, probe_cache
from polykeras.backends import BackendInfo, BackendNotFoundError
from polykeras.hookspecs import hookimpl

_now = [0.0]  # the virtual clock's seconds
COSTS = {"fast-ref": 0.001, "slow-ref": 0.005}  # seconds per train step on the virtual clock


class TimedPlugin:
    """Three numpy-reference backends: two whose steps cost a set virtual time, one that lacks Dropout."""

    @hookimpl
    def polykeras_backends(self):
        from polykeras_numpy import LAYER_KINDS
        from polykeras_numpy.backend import NumpyBackend

        def timed(name):
            class Timed(NumpyBackend):
                def compile(self, *args, **kwargs):
                    program = super().compile(*args, **kwargs)
                    step = program.train_step

                    def train_step(*a, **k):
                        _now[0] += COSTS[name]
                        return step(*a, **k)

                    program.train_step = train_step
                    return program

            Timed.name = name
            return BackendInfo(name=name, factory=lambda device, dtype: Timed(device, dtype), layer_kinds=LAYER_KINDS)

        return [timed("slow-ref"), timed("fast-ref"),
                BackendInfo(name="no-dropout", factory="polykeras_numpy.backend:NumpyBackend",
                            layer_kinds=frozenset({"Dense"}))]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYKERAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("POLYKERAS_AUTO_CANDIDATES", raising=False)
    monkeypatch.delenv("POLYKERAS_BACKEND", raising=False)
    monkeypatch.setattr(auto_backend, "_printed", set())
    monkeypatch.setattr(backends, "_instances", {})  # the backends the probes create stay in these tests
    return tmp_path / "cache"


@pytest.fixture
def timed(cache, monkeypatch):
    plugins.register(TimedPlugin(), name="timed-test-backends")
    monkeypatch.setattr(auto_backend, "clock", lambda: _now[0])
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "slow-ref,fast-ref,no-dropout")
    yield
    plugins.unregister("timed-test-backends")


def _model(units=8, dropout=True, backend="auto", dtype=None):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.layers.Dense(units, activation="relu", input_shape=(5,))]
                             + ([keras.layers.Dropout(0.25)] if dropout else []) + [keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], backend=backend,
                  dtype=dtype)
    return model


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, n)


def test_the_fastest_candidate_by_the_probe_is_chosen_and_refusals_are_shown(timed, capsys):
    model = _model()
    model.fit(*_data(), batch_size=16, epochs=1, verbose=0)
    assert model.backend.name == "fast-ref"
    table = capsys.readouterr().err
    assert "backend 'auto': fast-ref (probe of " in table and "s; train steps on x (16, 5) float32" in table
    lines = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert lines["fast-ref"].split()[2:5] == ["1.000", "1.00x", "150"] and "chosen" in lines["fast-ref"]
    assert lines["slow-ref"].split()[2:4] == ["5.000", "5.00x"] and "stopped: over 2x the fastest" in lines["slow-ref"]
    assert "refused: does not implement layer kind(s) Dropout" in lines["no-dropout"]
    # printed once per process: a second model with the same probe is quiet
    _model().fit(*_data(), batch_size=16, epochs=1, verbose=0)
    assert "backend 'auto'" not in capsys.readouterr().err


def test_a_cached_probe_is_read_back_and_a_changed_spec_probes_again(timed, monkeypatch, cache):
    _model().fit(*_data(), batch_size=16, epochs=1, verbose=0)
    assert len(list((cache / probe_cache.SUBFOLDER).glob("*.json"))) == 1
    probes = []
    real_probe = auto_backend.probe
    monkeypatch.setattr(auto_backend, "probe", lambda *a, **k: probes.append(a) or real_probe(*a, **k))
    COSTS["slow-ref"], COSTS["fast-ref"] = COSTS["fast-ref"], COSTS["slow-ref"]  # a new probe would choose slow-ref
    try:
        again = _model()
        again.fit(*_data(), batch_size=16, epochs=1, verbose=0)
        assert again.backend.name == "fast-ref" and not probes  # read from the cache
        changed = _model(units=9)  # another spec: another key, probed afresh
        changed.fit(*_data(), batch_size=16, epochs=1, verbose=0)
        assert changed.backend.name == "slow-ref" and len(probes) == 1
        other_batch = _model()  # the same spec on another batch shape: probed too
        other_batch.fit(*_data(), batch_size=8, epochs=1, verbose=0)
        assert len(probes) == 2
    finally:
        COSTS["slow-ref"], COSTS["fast-ref"] = COSTS["fast-ref"], COSTS["slow-ref"]
    assert len(list((cache / probe_cache.SUBFOLDER).glob("*.json"))) == 3


def test_the_choice_changes_nothing_but_the_backend(cache, monkeypatch):
    """Real cheap backends, float64 and parity: ``auto`` trains exactly as naming its choice does."""
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "numpy,torch,jax")
    x, y = _data()
    auto = _model(dtype="float64")
    auto.compile(loss="sparse_categorical_crossentropy", optimizer="adam", backend="auto", dtype="float64",
                 parity=True)
    keras.utils.set_random_seed(5)
    auto.fit(x, y, batch_size=16, epochs=2, verbose=0)
    record = probe_cache.load(next((cache / probe_cache.SUBFOLDER).glob("*.json")).stem)
    lines = {c["name"]: c for c in record["candidates"]}
    assert set(lines) == {"numpy", "torch", "jax"}
    assert all(c["status"] in ("chosen", "measured", "stopped") for c in lines.values()), lines
    fastest = min((c for c in lines.values() if c["status"] != "stopped"), key=lambda c: c["ms_per_step"])
    assert auto.backend.name == record["name"] == fastest["name"]
    named = _model(dtype="float64")
    named.compile(loss="sparse_categorical_crossentropy", optimizer="adam", backend=record["name"], dtype="float64",
                  parity=True)
    keras.utils.set_random_seed(5)
    named.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip(auto.get_weights(), named.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_predict_alone_times_predict_steps(timed, monkeypatch, capsys):
    monkeypatch.setenv("POLYKERAS_BACKEND", "auto")
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "numpy,no-dropout")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Dense(4, input_shape=(5,)), keras.layers.Dropout(0.1)])
    model.predict(_data()[0], batch_size=8, verbose=0)
    assert model.backend.name == "numpy"
    assert "predict steps on x (8, 5) float32" in capsys.readouterr().err


def test_bad_names_are_refused_clearly(cache, monkeypatch):
    with pytest.raises(BackendNotFoundError, match=r"unknown backend 'nope'.*Installed backends: .*numpy"):
        auto_backend.candidate_infos("numpy,nope")
    with pytest.raises(ValueError, match=r"must be backend names \(or 'all' alone\)"):
        auto_backend.candidate_infos("auto,numpy")
    assert [i.name for i in auto_backend.candidate_infos("numpy, numpy")] == ["numpy"]
    defaults = [i.name for i in auto_backend.candidate_infos()]
    assert "numpy" in defaults and not any(n.startswith("keras") for n in defaults)  # worker processes: opt-in
    with pytest.raises(BackendNotFoundError, match=r"'auto' is chosen per model"):
        backends.get_backend("auto")
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "nope")
    model = _model()
    with pytest.raises(BackendNotFoundError, match=r"unknown backend 'nope'"):
        model.fit(*_data(), verbose=0)
    backends.set_backend("auto")  # accepted, chosen per model
    try:
        assert backends.selected_backend_name() == "auto"
    finally:
        backends._selected = None


def test_no_usable_candidate_says_why_for_each(timed, monkeypatch):
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "no-dropout")
    with pytest.raises(NotImplementedError, match=r"no candidate runs model .*no-dropout: refused: .*Dropout"):
        _model().fit(*_data(), verbose=0)


def test_cli_probe_prints_the_table(cache, tmp_path, capsys):
    model = _model(backend="numpy")
    path = tmp_path / "m.keras"
    model.save(path)
    status = cli.main(["backends", "--probe", str(path), "--candidates", "numpy,torch", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "train steps on x (8, 5) float32, y (8,)" in out
    header, *rows = out.splitlines()[1:]
    assert header.split() == ["backend", "device", "ms/step", "vs", "chosen", "steps", "status"]
    assert {r.split()[0] for r in rows} == {"numpy", "torch"}
    assert cli.main(["backends", "--probe", str(path), "--candidates", "numpy,torch", "--batch-size", "8"]) == 0
    assert "(cached probe " in capsys.readouterr().out
    assert cli.main(["backends", "--probe", str(tmp_path / "none.keras")]) == 2
    assert "no model file" in capsys.readouterr().err
    assert cli.main(["backends", "--probe", str(path), "--candidates", "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


def test_cli_train_with_backend_auto(real_data, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "numpy,jax")
    status = cli.main(["train", "mnist-mlp", "--backend", "auto", "--epochs", "1", "--limit", "256", "--verbose", "0",
                       "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "backend auto (chosen at the first step)" in captured.out
    chosen = captured.err.split("backend 'auto': ")[1].split()[0]
    summary = json.loads((tmp_path / "out" / "history.json").read_text())["summary"]
    assert summary["backend"] == chosen in ("numpy", "jax")


def test_evaluate_first_chooses_by_train_steps_and_keeps_the_choice(timed, capsys):
    model = _model()
    x, y = _data()
    model.evaluate(x, y, batch_size=8, verbose=0)
    assert model.backend.name == "fast-ref"
    assert "train steps on x (8, 5) float32, y (8,) int32" in capsys.readouterr().err
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # another batch size: the choice stands until compile
    assert model.backend.name == "fast-ref" and "backend 'auto'" not in capsys.readouterr().err
