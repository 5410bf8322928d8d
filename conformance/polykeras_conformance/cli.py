"""``polykeras conformance``: the suite's subcommand, added to the ``polykeras``
command through the ``polykeras_cli_commands`` hook.

The suite registers as a polykeras plugin (``conformance =
"polykeras_conformance.cli"`` in the ``polykeras`` entry-point group), the way a
third party's plugin would add a command. polykeras loads every plugin whenever
it looks for backends, so this module imports nothing but the hook marker: the
runner, hypothesis, matplotlib and the frameworks are imported when the
command runs.
"""

from __future__ import annotations

from polykeras.hookspecs import hookimpl


@hookimpl
def polykeras_cli_commands(subparsers):
    conf = subparsers.add_parser("conformance", help="compare backends with the NumPy reference; write a report")
    conf.add_argument("--backends", help="comma-separated backends (default: every installed one)")
    conf.add_argument("--devices", help="comma-separated devices (default: each backend's best)")
    conf.add_argument("--dtypes", default="float64,float32", help="default: float64,float32")
    conf.add_argument("--levels", "--level", dest="levels",
                      help="comma-separated, among L0,L1,L2,L3,L4 (default: L0,L1,L2,L3; L4, distributed parity and "
                      "scaling, is opt-in)")
    conf.add_argument("--workloads",
                      help="comma-separated workloads for L2/L3/L4 (default: all; L4: mnist-mlp,cifar-cnn)")
    conf.add_argument("--quick", action="store_true", help="short runs (tens of steps) for CI")
    conf.add_argument("--l4-steps", type=int, metavar="N",
                      help="L4: steps per workload (default: 20 in quick mode, one epoch's whole batches in full mode)")
    conf.add_argument("--no-l4-speed", dest="l4_speed", action="store_false",
                      help="L4: leave out the scaling measurement (samples/s at 1 and N replicas)")
    conf.add_argument("--natives", default="auto",
                      help="L3's native yardsticks to time beside the backends: 'auto' (each backend's own framework "
                           "written natively: plain-torch, plain-jax, keras-fit-<b>), 'none', or a comma-separated "
                           "list among plain-torch, plain-jax, keras-fit-jax, keras-fit-torch, keras-fit-tensorflow")
    conf.add_argument("--no-auto", dest="auto", action="store_false",
                      help="L3: leave out the timing of backend=\"auto\", steps_per_execution=\"auto\" (its probe times "
                           "every candidate backend) and the best-per-workload table")
    conf.add_argument("--known-failures", metavar="B[/DTYPE],...",
                      help="runs expected to fail a check (e.g. keras-tensorflow/float64): reported as 'FAIL (known)' "
                           "without failing the exit status; a crashed or hung worker still fails it")
    conf.add_argument("--skip", metavar="B[/DTYPE],...",
                      help="runs not to start (e.g. keras-jax/float64): reported as 'not run'; the reference "
                           "(numpy) always runs")
    conf.add_argument("--jobs", type=int, default=1,
                      help="backend workers run at once (default 1; more shortens a run on spare cores, and L3's "
                           "timings then share the CPU, which the report says)")
    conf.add_argument("--timeout", type=float, default=1800, help="seconds before a backend's worker counts as hung")
    conf.add_argument("--report", default="conformance-report", help="output folder (report.md, report.json, PNGs)")
    conf.add_argument("--mutants", metavar="FILE",
                      help="a mutation run's results (mutants.json; `nox -s mutants` writes out/mutants/mutants.json) "
                           "for the report's Strength section (default: REPORT/mutants.json, else "
                           "out/mutants/mutants.json, where one exists)")
    conf.set_defaults(handler=conformance)


def conformance(args) -> int:
    """Run the suite as the command line asks; print a verdict per run; 0 when every judged run passes."""
    from pathlib import Path

    from polykeras.backends import backend_infos
    from polykeras.cli import UsageError, check_choice

    try:
        from polykeras_conformance import l3_auto, native, report, runner
    except ImportError as exc:
        raise UsageError(f"the conformance suite needs its extra: pip install 'polykeras[conformance]' ({exc})")

    infos = backend_infos()
    names = args.backends.split(",") if args.backends else [n for n, i in infos.items() if i.installed]
    for name in names:
        check_choice(name, list(infos), "backend")
        if not infos[name].installed:
            raise UsageError(f"backend {name!r} is not installed: {infos[name].install_hint(note=True)}")
    levels = tuple(args.levels.split(",")) if args.levels else runner.DEFAULT_LEVELS
    for level in levels:
        check_choice(level, list(runner.LEVELS), "level")
    dtypes = tuple(args.dtypes.split(","))
    for dtype in dtypes:
        check_choice(dtype, ["float64", "float32"], "dtype")
    workloads_ = args.workloads.split(",") if args.workloads else None
    natives = None if args.natives == "auto" else [] if args.natives == "none" else args.natives.split(",")
    for name in natives or []:
        check_choice(name, list(native.SIDES), "native side")
    known = _runs_option(args.known_failures, "--known-failures", names, dtypes)
    if runner.REFERENCE in [entry.partition("/")[0] for entry in (args.skip or "").split(",")]:
        raise UsageError(f"--skip {runner.REFERENCE}: the reference cannot be skipped; every run is compared with it")
    skip = _runs_option(args.skip, "--skip", names, dtypes)
    if args.l4_steps is not None and args.l4_steps < 1:
        raise UsageError(f"--l4-steps {args.l4_steps}: give at least 1 step")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1 worker")
    if args.mutants and not Path(args.mutants).is_file():
        raise UsageError(f"--mutants {args.mutants}: no such file; `nox -s mutants` writes out/mutants/mutants.json")
    runs = runner.run(names, args.devices.split(",") if args.devices else None, dtypes, levels, args.quick,
                      workloads_, timeout=args.timeout, natives=natives, jobs=args.jobs, l4_steps=args.l4_steps,
                      l4_speed=args.l4_speed, auto=args.auto, skip=frozenset(skip))
    path = report.write(runs, Path(args.report), levels, args.quick, Path(args.mutants) if args.mutants else None)
    print()
    status = 0
    for run in runs:
        listed = run.backend in known or f"{run.backend}/{run.dtype}" in known
        if run.skipped:
            verdict, ok = run.verdict(), True
        elif run.native:  # a yardstick: measured, never judged
            verdict, ok = run.error or "measured", True
        elif run.backend == l3_auto.NAME:  # measured, never judged; a crash is a failure
            verdict, ok = run.error or l3_auto.summary(run), not run.error
        elif listed and run.passed:  # not an error: a run near a limit may pass on another CPU
            verdict, ok = "PASS (listed in --known-failures, but passes here)", True
        elif listed and not run.error:  # a crashed worker is never a known failure
            verdict, ok = run.verdict().replace("FAIL", "FAIL (known)", 1), True
        else:
            verdict, ok = run.verdict(), run.passed
        print(f"{run.label:40s} {verdict}")
        status |= not ok
    print(f"report: {path}")
    return int(status)


def _runs_option(value: str | None, option: str, backends: list[str], dtypes) -> set[str]:
    """``B[/DTYPE],...`` (``--known-failures``, ``--skip``), each backend among ``backends``, each dtype run."""
    from polykeras.cli import check_choice

    entries = set(value.split(",")) if value else set()
    for entry in entries:
        backend, _, dtype = entry.partition("/")
        check_choice(backend, backends, f"backend in {option}")
        if dtype:
            check_choice(dtype, list(dtypes), f"dtype in {option}")
    return entries
