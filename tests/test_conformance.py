"""The conformance suite: it passes a correct backend, and it can fail --
every planted bug is caught at the right level and named."""

from pathlib import Path

import numpy as np

import pytest

from polykeras_conformance import l3_auto, report, runner, tolerances

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


#: the L0 groups whose kinds the Masking group's cases are built from
MASKING_KINDS = ("Recurrent", "Embedding", "Dense", "GlobalAveragePooling")
#: the L0 group of layers written with polykeras.ops (a planted op bug may show there too)
OPS_LAYERS = "ReLU/LeakyReLU/ELU/Softmax/PReLU"


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
        # named in its own group; graph cases built with the broken kind may fail too, and so may the masked
        # groups' stacks (Masking: Embedding -> recurrent -> Dense -> GlobalAveragePooling1D; Masking:TimeDistributed:
        # Embedding -> TimeDistributed(Dense) -> recurrent), and an op's in the layers written with ops (OPS_LAYERS)
        groups = {c.group for c in run.failures(level)}
        composite = {g for g in groups if g.split(":")[0] == "Masking"} if group in MASKING_KINDS else set()
        composite |= {OPS_LAYERS} if group.startswith("Ops: ") else set()
        assert group in groups and all(g == group or g.startswith("Graph:") or g in composite for g in groups), \
            f"{name}: {[c.describe() for c in run.failures(level)][:3]}"
        caught[name] = run.worst(level).describe()
    print("\n".join(f"{k}: {v}" for k, v in caught.items()))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_crash_and_a_hang_are_that_backends_failure(bug_plugins, jobs):
    """One worker at a time or several (``--jobs``): the runs come back in the same order, each with its own fate."""
    runs = runner.run(["bug-crash", "bug-hang"], dtypes=("float64",), levels=("L1",), quick=True, workloads=[],
                      timeout=20, progress=lambda *_: None, jobs=jobs)
    assert [r.backend for r in runs] == ["numpy", "bug-crash", "bug-hang"]
    by_name = {r.backend: r for r in runs}
    assert by_name["numpy"].passed
    assert "crashed (exit 3)" in by_name["bug-crash"].error
    assert "did not finish within 20 s" in by_name["bug-hang"].error


@pytest.mark.parametrize("backends, known, status, shown", [
    ("bug-adam-epsilon", "bug-adam-epsilon", 0, "bug-adam-epsilon / cpu / float64         FAIL (known): Adam"),
    ("bug-adam-epsilon", "", 1, "bug-adam-epsilon / cpu / float64         FAIL: Adam"),
    ("numpy", "numpy/float64", 0, "numpy / cpu / float64                    PASS (listed in --known-failures, but"),
    ("bug-crash", "bug-crash", 1, "FAIL: the worker crashed (exit 3)"),
])
def test_known_failures(bug_plugins, tmp_path, capsys, backends, known, status, shown):
    """A listed run may fail a check without failing the command, and says so; a crashed worker still fails it."""
    from polykeras import cli

    argv = ["conformance", "--backends", backends, "--dtypes", "float64", "--level", "L1", "--quick",
            "--report", str(tmp_path)] + (["--known-failures", known] if known else [])
    assert cli.main(argv) == status
    assert shown in capsys.readouterr().out


def test_skipped_runs_are_reported_not_run(bug_plugins, tmp_path, capsys):
    """``--skip``: the named run never starts (a planted crash would fail the command), says so in the
    verdicts and the report, and the other dtype of the same backend still runs; the reference cannot be skipped."""
    from polykeras import cli

    argv = ["conformance", "--backends", "bug-adam-epsilon,bug-crash", "--level", "L1", "--quick",
            "--known-failures", "bug-adam-epsilon/float32", "--report", str(tmp_path)]
    assert cli.main(argv + ["--skip", "bug-crash,bug-adam-epsilon/float64"]) == 0
    out = capsys.readouterr().out
    verdicts = {" ".join(line.split()) for line in out.splitlines()}
    for label in ("bug-crash / default device / float64", "bug-crash / default device / float32",
                  "bug-adam-epsilon / default device / float64"):
        assert f"{label} not run (--skip)" in verdicts, out
    assert any(v.startswith("bug-adam-epsilon / cpu / float32 FAIL (known): Adam") for v in verdicts), out
    text = (tmp_path / "report.md").read_text()
    assert "| bug-crash / default device / float32 | - | not run | not run |" in text
    assert cli.main(argv + ["--skip", "numpy/float32"]) == 2
    assert "--skip numpy: the reference cannot be skipped" in capsys.readouterr().err


def test_reference_against_itself_and_the_report(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYKERAS_AUTO_CANDIDATES", "numpy,example")  # L3's auto run probes these two
    runs = runner.run(["numpy"], dtypes=("float32",), levels=("L1", "L2", "L3"), quick=True,
                      workloads=["mnist-mlp"], progress=lambda *_: None)
    assert [r.backend for r in runs] == ["numpy", "auto"] and runs[0].passed, runs[0].verdict()
    levels = {c.level for c in runs[0].checks}
    assert levels == {"L1", "L2", "L3"}
    auto = runs[1]
    assert not auto.error and {c.quantity for c in auto.checks} == {"chose", "ms/step", "samples/s"}, auto.checks
    chose = next(c.detail for c in auto.checks if c.quantity == "chose")
    assert chose in ("numpy", "example") and l3_auto.summary(auto) == f"measured (chose mnist-mlp: {chose})"
    path = report.write(runs, tmp_path, ("L1", "L2", "L3"), quick=True)
    text = path.read_text()
    for heading in ("## Verdicts", "## Tolerances", "## L2 training", "## L3 speed", "## Coverage",
                    "### Best per workload"):
        assert heading in text
    assert f"| mnist-mlp | {chose}, " in text
    assert tolerances.TABLE[0].reason in text
    assert (tmp_path / "report.json").exists() and (tmp_path / "training-float32.png").exists()


def test_speed_is_timed_in_one_dtype(tmp_path):
    """L3 times float32 only when both dtypes run (the dtype models train in); float64 when it runs alone."""
    runs = runner.run(["numpy"], dtypes=("float64", "float32"), levels=("L1", "L3"), quick=True,
                      workloads=["mnist-mlp"], progress=lambda *_: None, natives=[], auto=False)
    levels = {run.dtype: {c.level for c in run.checks} for run in runs}
    assert levels == {"float64": {"L1"}, "float32": {"L1", "L3"}}
    assert runner.speed_dtype(("float64",)) == "float64"
    text = report.write(runs, tmp_path, ("L1", "L3"), quick=True).read_text()
    assert "| mnist-mlp | numpy / cpu / float32 |" in text and "numpy / cpu / float64 | " not in text.split("## L3")[1]


def test_tolerance_table_is_complete():
    for level in ("L0", "L1"):
        for dtype in ("float64", "float32"):
            assert tolerances.limit(level, dtype).reason
    assert tolerances.limit("L2", "float64", "per-step loss").limit == 1e-8


def test_float32_training_limits_scale_with_the_references_own_float32_drift():
    """float32 runs are judged against float64, with room for as much drift as the
    float32 reference itself shows -- and no more than DRIFT_FACTOR times that."""
    from polykeras_conformance import compare

    exact = np.linspace(2.3, 1.0, 20)
    status = {"L2|w|w|": {"status": "ok"}}

    def check(ref_drift, candidate_drift):
        ref32 = {"L2|w|w|losses": exact * (1 + ref_drift)}
        cand = {"L2|w|w|losses": exact * (1 + candidate_drift)}
        (c,) = compare.compare((ref32, status), (cand, status), "float32", exact={"L2|w|w|losses": exact})
        return c

    factor = tolerances.limit("L2", "float32", "drift factor").limit
    floor = tolerances.limit("L2", "float32", "per-step loss").limit
    # a steady trajectory: the floor applies, a 1e-2 drift is a bug
    assert check(1e-7, 1e-4).status == "pass"
    assert check(1e-7, 1e-2).status == "fail"
    # a sensitive one: the reference drifts 1e-3, so 8e-3 is rounding, 2e-2 is not
    assert check(1e-3, 8e-3).status == "pass" and check(1e-3, 8e-3).limit == pytest.approx(factor * 1e-3)
    assert check(1e-3, 2e-2).status == "fail"
    # a chaotic one: reported, not judged -- unless even 10x the reference's drift is exceeded
    assert check(0.1, 0.3).status == "info" and "chaotic" in check(0.1, 0.3).detail
    assert check(0.1, 2.0).status == "fail"
    assert check(1e-9, 0.0).limit == floor


def test_gradients_that_are_zero_to_rounding_agree_on_zero():
    """Dot(normalize=True) along an axis of size 1 has an exactly zero input gradient: both sides give
    rounding noise (~1e-16), whose relative difference is O(1). Judged as zero; a real error is not."""
    from polykeras_conformance import compare

    reference = ({"L0|Dot|Dot#3|grad input in0": np.array([0.0, 4.2e-16, -8.7e-17])},
                 {"L0|Dot|Dot#3|": {"status": "ok"}})
    noise = ({"L0|Dot|Dot#3|grad input in0": np.array([-4.4e-16, 0.0, -1.1e-16])}, {"L0|Dot|Dot#3|": {"status": "ok"}})
    wrong = ({"L0|Dot|Dot#3|grad input in0": np.array([1e-3, 0.0, 0.0])}, {"L0|Dot|Dot#3|": {"status": "ok"}})
    (check,) = compare.compare(reference, noise, "float64")
    assert check.status == "pass" and "zero to rounding" in check.detail
    (check,) = compare.compare(reference, wrong, "float64")
    assert check.status == "fail"


class _NoOps:
    """A reference backend without the ``Operation`` kind: its op cases are unsupported, said before running."""

    @staticmethod
    @__import__("polykeras.hookspecs", fromlist=["hookimpl"]).hookimpl
    def polykeras_backends():
        from polykeras.backends import BackendInfo
        from polykeras_numpy.backend import NumpyBackend

        kinds = NumpyBackend.layer_kinds - {"Operation"}
        backend = type("NoOps", (NumpyBackend,), {"name": "no-ops", "layer_kinds": kinds})
        return [BackendInfo(name="no-ops", factory=lambda device, dtype: backend(device, dtype), layer_kinds=kinds,
                            plugin=__name__)]


def _op_matrix(lines: list[str], backends: list[str]) -> dict[str, dict[str, str]]:
    """The report's op table as ``{op: {backend: cell}}``."""
    header = next(i for i, line in enumerate(lines) if line.startswith("| op | L0 group |"))
    assert lines[header] == "| op | L0 group | " + " | ".join(backends) + " |"
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(["group"] + backends, cells[1:]))
    return rows


def test_the_op_matrix_lists_every_op_on_every_backend_and_pins_planted_op_bugs(bug_plugins):
    """The L0 op cases alone, measured in this process (quick mode: five ops per case, each quantity
    naming its op), compared and tabled as ``polykeras conformance`` does."""
    from polykeras import plugins
    from polykeras.ops.registry import REGISTRY
    from polykeras_conformance import compare, measure, op_report, worker
    from polykeras_conformance.results import Run

    plugins.register(_NoOps, name="no-ops")
    try:
        jobs = [job for job in worker.jobs(["L0"], quick=True, workloads=[]) if job[1].startswith("Ops: ")]

        def measured(backend):
            arrays, status = {}, {}
            for level, group, case, fn in jobs:
                try:
                    arrays.update({worker.key(level, group, case, q): np.asarray(v)
                                   for q, v in fn(backend, None, "float64").items()})
                    status[worker.key(level, group, case, "")] = {"status": "ok"}
                except measure.Unsupported as exc:
                    status[worker.key(level, group, case, "")] = {"status": "unsupported", "detail": str(exc)}
            return arrays, status

        planted = {"bug-op-softmax-vjp": "softmax", "bug-op-unbiased-var": "var", "bug-op-einsum-vjp": "einsum",
                   "bug-op-greater-inclusive": "greater"}
        names = ["numpy", *planted, "no-ops"]
        reference = measured("numpy")
        runs = [Run(name, "cpu", "float64", compare.compare(reference, reference if name == "numpy" else measured(name),
                                                           "float64")) for name in names]
    finally:
        plugins.unregister("no-ops")
    lines = op_report.section(runs)
    matrix = _op_matrix(lines, names)
    assert set(matrix) == set(REGISTRY)  # every op, a row each
    for op, row in matrix.items():
        if row["group"].startswith("no case"):
            assert set(row.values()) - {row["group"]} == {"no case"}, op
            continue
        assert row["numpy"].startswith("pass"), (op, row["numpy"])
        assert row["no-ops"] == "unsupported", (op, row["no-ops"])
    assert any("no-ops: unsupported, said before running" in line and "Operation" in line for line in lines)
    for backend, op in planted.items():  # caught, and pinned on the op alone although it shares a case
        failing = {name for name, row in matrix.items() if row[backend].startswith("**FAIL**")}
        assert failing == {op}, (backend, {name: matrix[name][backend] for name in failing})
        assert "float64" in matrix[op][backend] and ">" in matrix[op][backend]
