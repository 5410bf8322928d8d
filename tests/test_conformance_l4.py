"""Conformance L4 (distributed parity and scaling): it passes jax on 2 host devices and torch on
2 gloo processes, reports a backend without distribution as unsupported, and it can fail --
a planted distribution bug is caught.

Few steps (3 of mnist-mlp, float64), so each backend costs mostly its process starts: about 50 s
for the passing backends and 40 s for two planted bugs on the shared 2-core machine (a third
planted bug is marked slow).
"""

import os
from pathlib import Path

import pytest

from polykeras_conformance import l4, report, runner, tolerances

pytest.importorskip("torch")
pytest.importorskip("jax")

TESTS = Path(__file__).parent
STEPS = 3


def _run(backends, **kwargs):
    return runner.run(backends, dtypes=("float64",), levels=("L4",), quick=True, workloads=["mnist-mlp"],
                      timeout=240, progress=lambda *_: None, l4_steps=STEPS, **kwargs)


@pytest.fixture(scope="module")
def runs():
    old = os.environ.get("POLYKERAS_DATA_DIR")
    from conftest import real_data_dir

    if not real_data_dir().is_dir():
        pytest.skip(f"real datasets not found at {real_data_dir()}; set POLYKERAS_DATA_DIR")
    os.environ["POLYKERAS_DATA_DIR"] = str(real_data_dir())
    try:
        yield _run(["jax", "torch", "example"])
    finally:
        if old is None:
            os.environ.pop("POLYKERAS_DATA_DIR")
        else:
            os.environ["POLYKERAS_DATA_DIR"] = old


def test_jax_and_torch_on_two_replicas_equal_one_device(runs):
    by_name = {r.backend: r for r in runs}
    for name in ("jax", "torch"):
        run = by_name[name]
        assert run.replicas == 2 and run.passed, run.verdict()
        loss = next(c for c in run.checks if c.quantity == "per-step loss")
        assert loss.status == "pass" and loss.value <= 1e-13, loss  # measured ~2e-16
        assert loss.limit == tolerances.limit("L4", "float64", "per-step loss").limit
        assert sum(c.quantity.startswith("weights") and c.status == "pass" for c in run.checks) == 6
        assert len(run.losses["mnist-mlp"]) == len(run.baseline_losses["mnist-mlp"]) == STEPS


def test_scaling_is_measured(runs):
    by_name = {r.backend: r for r in runs}
    for name in ("jax", "torch"):
        quantities = {c.quantity: c for c in by_name[name].checks}
        assert quantities["samples/s"].value > 0 and quantities["samples/s on 1 device"].value > 0
        assert quantities["speed-up"].value > 0
    share = {name: {c.quantity: c for c in by_name[name].checks}["communication share"] for name in ("jax", "torch")}
    assert 0 < share["torch"].value < 1  # the all_reduce calls are timed
    assert share["jax"].value is None and "not measured" in share["jax"].detail


def test_a_backend_without_distribution_is_unsupported_not_failed(runs):
    example = next(r for r in runs if r.backend == "example")
    assert example.passed and example.unsupported and [c.status for c in example.checks] == ["unsupported"]
    assert example.device == "cpu" and example.verdict().startswith("unsupported: backend 'example'")
    assert "no distribute method" in example.checks[0].detail


def test_the_report_has_an_l4_section_and_plot(runs, tmp_path):
    text = report.write(runs, tmp_path, ("L4",), quick=True).read_text()
    for line in ("## L4 distributed parity and scaling", "### Scaling",
                 "| mnist-mlp | jax / cpu / float64 / 2 replicas",
                 "| mnist-mlp | torch / cpu / float64 / 2 replicas", "unsupported: backend 'example'",
                 tolerances.limit("L4", "float64", "per-step loss").reason):
        assert line in text, line
    assert (tmp_path / "distributed-float64.png").exists()
    assert not (tmp_path / "training-float64.png").exists()  # L2's plot is not made of L4's runs


def test_l4_is_opt_in_and_counts_replicas():
    assert "L4" in runner.LEVELS and "L4" not in runner.DEFAULT_LEVELS
    assert l4.replica_counts(quick=True) == (2,) and l4.replica_counts(quick=False) == (2, 4)


@pytest.fixture
def planted(monkeypatch, real_data):
    monkeypatch.setenv("POLYKERAS_PLUGINS", "planted_distributed_bugs")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    from polykeras import plugins
    import planted_distributed_bugs

    if plugins.manager().get_plugin("planted_distributed_bugs") is None:  # the parent process needs them too
        plugins.register(planted_distributed_bugs, name="planted_distributed_bugs")
    yield planted_distributed_bugs.PLANTED
    plugins.unregister("planted_distributed_bugs")


@pytest.mark.parametrize("bugs", [
    # gradients summed, not averaged (torch; Adam is nearly scale-free, so only float64's limit sees it), and a
    # wrong batch split (jax): ~40 s
    ["bug-dp-sum-not-mean", "bug-dp-first-rows"],
    pytest.param(["bug-dp-no-all-reduce"], marks=pytest.mark.slow),  # a replica that skips the all-reduce: ~20 s
])
def test_planted_distribution_bugs_are_caught(planted, bugs):
    runs = _run(bugs, l4_speed=False)
    assert {r.backend for r in runs} == set(bugs)
    for run in runs:
        assert not run.passed and not run.error, f"{run.backend}: {run.verdict()}"
        failing = {c.quantity for c in run.failures("L4")}
        assert "per-step loss" in failing, (run.backend, failing)  # the trajectory leaves 1 device's
        print(run.backend, run.worst("L4").describe())


def test_the_command_line_sets_l4_steps_and_speed(monkeypatch, tmp_path, capsys):
    """CI's distributed step (`.ci/run`) trains 50 steps without the scaling measurement."""
    from polykeras import cli

    seen = {}
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: seen.update(kwargs) or [])
    monkeypatch.setattr(report, "write", lambda *args, **kwargs: tmp_path / "report.md")
    argv = ["conformance", "--levels", "L4", "--backends", "numpy", "--report", str(tmp_path)]
    assert cli.main(argv + ["--l4-steps", "50", "--no-l4-speed"]) == 0
    assert (seen["l4_steps"], seen["l4_speed"]) == (50, False)
    assert cli.main(argv) == 0
    assert (seen["l4_steps"], seen["l4_speed"]) == (None, True)
    assert cli.main(argv + ["--l4-steps", "0"]) == 2
    assert "--l4-steps 0: give at least 1 step" in capsys.readouterr().err
