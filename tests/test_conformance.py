"""The conformance suite: it passes a correct backend, and it can fail --
every planted bug is caught at the right level and named."""

from pathlib import Path

import pytest

from polykeras_conformance import report, runner, tolerances

from planted_bugs import PLANTED

TESTS = Path(__file__).parent


@pytest.fixture
def bug_plugins(monkeypatch):
    """Worker processes load tests/planted_bugs.py as a plugin."""
    import os

    monkeypatch.setenv("POLYKERAS_PLUGINS", "planted_bugs")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    from polykeras import plugins
    import planted_bugs

    if plugins.manager().get_plugin("planted_bugs") is None:  # the parent process needs them too
        plugins.register(planted_bugs, name="planted_bugs")
    yield
    plugins.unregister("planted_bugs")


def test_every_planted_bug_is_caught_at_its_level_and_named(bug_plugins):
    runs = runner.run(list(PLANTED), dtypes=("float64",), levels=("L0", "L1"), quick=True, workloads=[],
                      progress=lambda *_: None)
    by_name = {r.backend: r for r in runs}
    assert by_name["numpy"].passed, by_name["numpy"].verdict()
    caught = {}
    for name, (_, level, group) in PLANTED.items():
        run = by_name[name]
        assert not run.passed, f"{name} was not caught"
        failing_levels = {c.level for c in run.failures()}
        assert level in failing_levels, f"{name}: failures at {failing_levels}, expected {level}"
        assert all(c.group == group for c in run.failures(level)), \
            f"{name}: {[c.describe() for c in run.failures(level)][:3]}"
        caught[name] = run.worst(level).describe()
    print("\n".join(f"{k}: {v}" for k, v in caught.items()))


def test_a_crash_and_a_hang_are_that_backends_failure(bug_plugins):
    runs = runner.run(["bug-crash", "bug-hang"], dtypes=("float64",), levels=("L1",), quick=True, workloads=[],
                      timeout=20, progress=lambda *_: None)
    by_name = {r.backend: r for r in runs}
    assert by_name["numpy"].passed
    assert "crashed (exit 3)" in by_name["bug-crash"].error
    assert "did not finish within 20 s" in by_name["bug-hang"].error


def test_reference_against_itself_and_the_report(real_data, tmp_path):
    runs = runner.run(["numpy"], dtypes=("float32",), levels=("L1", "L2", "L3"), quick=True,
                      workloads=["mnist-mlp"], progress=lambda *_: None)
    assert len(runs) == 1 and runs[0].passed, runs[0].verdict()
    levels = {c.level for c in runs[0].checks}
    assert levels == {"L1", "L2", "L3"}
    path = report.write(runs, tmp_path, ("L1", "L2", "L3"), quick=True)
    text = path.read_text()
    for heading in ("## Verdicts", "## Tolerances", "## L2 training", "## L3 speed", "## Coverage"):
        assert heading in text
    assert tolerances.TABLE[0].reason in text
    assert (tmp_path / "report.json").exists() and (tmp_path / "training-float32.png").exists()


def test_tolerance_table_is_complete():
    for level in ("L0", "L1"):
        for dtype in ("float64", "float32"):
            assert tolerances.limit(level, dtype).reason
    assert tolerances.limit("L2", "float64", "per-step loss").limit == 1e-8
