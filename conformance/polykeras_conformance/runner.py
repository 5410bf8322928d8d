"""Running the suite: one worker process per backend, device and dtype.

Each backend runs in a process of its own: Keras fixes its backend at import,
frameworks keep global thread pools and state, and a crash or a hang must be
that backend's failure, not the suite's. The reference (numpy) runs the same
cases in its own worker; the comparison happens here, in the parent. L3 times
one dtype (:func:`speed_dtype`: float32 when it runs). Its native yardsticks
(:mod:`.native`: plain PyTorch, plain JAX + optax, Keras ``fit``) run after the
backends, each in its own worker too, and every float32 backend run gets its
speed as a ratio to each of them on the same device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from polykeras_conformance import compare, l3_auto, l4, native
from polykeras_conformance.results import Check, Run

REFERENCE = "numpy"
LEVELS = ("L0", "L1", "L2", "L3", "L4")
#: what runs when no level is named: L4 (distributed parity and scaling, :mod:`.l4`) is opt-in, as it
#: starts several processes per backend and trains each L2 workload four times more
DEFAULT_LEVELS = ("L0", "L1", "L2", "L3")


def _worker(job: dict, timeout: float, env: dict | None = None) -> tuple[tuple[dict, dict] | None, str, float]:
    """Run one worker; return ((arrays, status), error, seconds)."""
    path = Path(job["out"])
    path.with_suffix(".job.json").write_text(json.dumps(job))
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "polykeras_conformance.worker", str(path.with_suffix(".job.json"))],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return None, f"the worker did not finish within {timeout:.0f} s (hang?)", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"the worker crashed (exit {proc.returncode}): {tail}", seconds
    with np.load(path.with_suffix(".npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(path.with_suffix(".json").read_text())
    return (arrays, meta), "", seconds


def run(backends: list[str], devices: list[str] | None = None, dtypes: tuple[str, ...] = ("float64", "float32"),
        levels: tuple[str, ...] = DEFAULT_LEVELS, quick: bool = True, workloads: list[str] | None = None,
        timeout: float = 1800, progress=print, natives: list[str] | None = None, l4_steps: int | None = None,
        l4_speed: bool = True, l4_replicas: tuple[int, ...] | None = None, jobs: int = 1,
        auto: bool = True, skip: frozenset[str] = frozenset()) -> list[Run]:
    """Run the suite; return one :class:`Run` per backend x device x dtype (the
    reference included, compared with itself as a sanity check), then one per
    native side x device (``native=True``) when L3 runs in float32, then L4's runs (``replicas`` set;
    ``l4_steps``, ``l4_speed`` and ``l4_replicas``: see :func:`.l4.run`).

    ``natives``: the native sides to time (names in :data:`.native.SIDES`);
    by default each backend's counterparts (:data:`.native.COUNTERPARTS`).

    ``auto``: with L3 in float32, also time ``backend="auto"`` (:mod:`.l3_auto`), after the yardsticks.

    ``skip``: runs not to start, as ``backend`` or ``backend/dtype``; each is reported as not run. The
    reference cannot be skipped: every other run is compared with it.

    ``jobs``: how many backend workers run at once (the native yardsticks and L4 always run one at a time).
    More than one shortens a run on a machine with cores to spare, and L3's timings then share the CPU:
    each L3 check says so in its detail.
    """
    from polykeras import workloads as _workloads
    from polykeras.backends import find_backend

    requested = workloads
    workloads = list(_workloads.workloads() if workloads is None else workloads)
    if {"L2", "L3"} & set(levels):
        workloads = trainable_workloads(workloads, backends, progress)
    runs: list[Run] = []
    exact = None  # the float64 reference's arrays: float32 training is judged against them
    dtypes = sorted(dtypes, key=lambda d: d != "float64")
    with tempfile.TemporaryDirectory(prefix="polykeras-conformance-") as tmp:
        if "float32" in dtypes and "float64" not in dtypes and "L2" in levels:
            progress("conformance: numpy / cpu / float64 (L2 only, to calibrate float32 training) ...")
            measured, error, _ = _worker({"backend": REFERENCE, "device": "cpu", "dtype": "float64", "levels": ["L2"],
                                          "quick": quick, "workloads": workloads, "out": str(Path(tmp) / "exact")},
                                         timeout)
            exact = measured[0] if measured else None
            if error:
                progress(f"  {error}: float32 training is compared with the float32 reference only")
        timed = speed_dtype(dtypes)
        plan = []  # (dtype, its levels, backend, device, label, job): the references first in each dtype
        for dtype in dtypes:
            dtype_levels = [level for level in levels
                            if level in ("L0", "L1", "L2") or level == "L3" and dtype == timed]
            if not dtype_levels:  # L3 alone, in the dtype it does not time (or L4 alone: it runs below)
                continue
            targets = [(REFERENCE, "cpu")] + [(b, d) for b in backends if b != REFERENCE
                                              for d in (devices or [None])]
            for backend, device in targets:
                if dtype not in find_backend(backend).dtypes:
                    continue
                if backend != REFERENCE and (backend in skip or f"{backend}/{dtype}" in skip):
                    plan.append((dtype, dtype_levels, backend, device, "", None))
                    continue
                job = {"backend": backend, "device": device, "dtype": dtype, "levels": dtype_levels,
                       "quick": quick, "workloads": workloads,
                       "out": str(Path(tmp) / f"{backend}-{device}-{dtype}".replace(":", "_"))}
                plan.append((dtype, dtype_levels, backend, device, f"{backend} / {device or 'default device'} / "
                             f"{dtype}", job))
        if jobs > 1 and "L3" in levels:
            progress(f"conformance: {jobs} workers at once: L3's timings share the CPU and are not comparable")
        references: dict[str, tuple] = {}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            def start(label, job):
                if jobs == 1:
                    progress(f"conformance: {label} ...")
                return _worker(job, timeout)

            def done(label, text):  # one line per finished worker when several run at once
                progress(f"  {text}" if jobs == 1 else f"conformance: {label}: {text}")

            pending = [job and pool.submit(start, label, job) for *_, label, job in plan]
            for (dtype, dtype_levels, backend, device, label, _), future in zip(plan, pending):
                if future is None:
                    runs.append(Run(backend, device or "default device", dtype, [], skipped="--skip"))
                    continue
                measured, error, seconds = future.result()
                if measured is None:
                    runs.append(Run(backend, device or "?", dtype, [], error=error, seconds=seconds))
                    done(label, error)
                    continue
                arrays, meta = measured
                if backend == REFERENCE:
                    references[dtype] = (arrays, meta["status"])
                    if dtype == "float64":
                        exact = arrays
                reference = references.get(dtype)
                if reference is None:
                    runs.append(Run(backend, meta["device"], dtype, [], error="the reference failed", seconds=seconds))
                    done(label, "the reference failed")
                    continue
                checks = compare.compare(reference, (arrays, meta["status"]), dtype, quick, exact=exact)
                if "L3" in dtype_levels:
                    checks += _speed_ratios(arrays, reference[0])
                    if jobs > 1:
                        for check in checks:
                            if check.level == "L3":
                                check.detail = f"{check.detail}; timed beside other workers ({jobs} at once)".lstrip("; ")
                losses = {k.split("|")[1]: v.tolist() for k, v in arrays.items()
                          if k.startswith("L2|") and k.endswith("|losses")}
                run_ = Run(backend, meta["device"], dtype, checks, version=meta.get("framework", ""), seconds=seconds,
                           losses=losses)
                runs.append(run_)
                done(label, f"{run_.verdict()} ({seconds:.1f} s)")
        if "L3" in levels and "float32" in dtypes:
            sides = native.sides_for(backends) if natives is None else natives
            runs += _native_runs(sides, runs, quick, workloads, timeout, tmp, progress)
            if auto:
                runs += l3_auto.run(runs, quick, workloads, timeout, tmp, progress, _worker)
        if "L4" in levels:
            runs += l4.run(backends, devices, dtypes, quick, requested, timeout, tmp, progress, l4_steps, l4_speed,
                           l4_replicas)
    return runs


def trainable_workloads(names: list[str], backends: list[str], progress=print) -> list[str]:
    """The workloads that some backend of the run (other than the reference) declares every layer
    kind of: training the reference on the others would take minutes to compare with nothing."""
    from polykeras import workloads as _workloads
    from polykeras.backends import find_backend

    others = [find_backend(b) for b in backends if b != REFERENCE]
    if not others:
        return names
    kept = []
    for name in names:
        kinds = set(_workloads.get(name).build()._spec().kinds)
        if any(not info.layer_kinds or kinds <= set(info.layer_kinds) for info in others):
            kept.append(name)
        else:
            missing = sorted(set.union(*(kinds - set(info.layer_kinds) for info in others)))
            progress(f"conformance: skipping workload {name}: no backend in this run implements "
                     f"{', '.join(missing)}")
    return kept


def speed_dtype(dtypes) -> str:
    """The one dtype L3 times: float32, the dtype models train in and the native yardsticks run in (float64
    timings would double L3's cost to say how much slower float64 is); float64 only when it runs alone."""
    return "float32" if "float32" in dtypes else dtypes[0]


def _native_runs(sides: list[str], runs: list[Run], quick: bool, workloads: list[str], timeout: float, tmp: str,
                 progress) -> list[Run]:
    """Time the native sides on the devices of the float32 runs of their counterpart backends, and add each
    backend run's speed ratio to them (a native side named explicitly runs on every float32 run's device)."""
    measured = [r for r in runs if r.dtype == "float32" and not r.error]
    out = []
    for name in sides:
        side = native.SIDES[name]
        devices = sorted({r.device for r in measured if name in native.COUNTERPARTS.get(r.backend, ())}
                         or {r.device for r in measured} or {"cpu"})
        for device in devices:
            label = f"{side.label} (native) / {device} / float32"
            if not side.installed():
                progress(f"conformance: {label}: not installed (needs {', '.join(side.needs)}), skipped")
                continue
            progress(f"conformance: {label} ...")
            job = {"native": name, "device": device, "quick": quick, "workloads": workloads,
                   "out": str(Path(tmp) / f"native-{name}-{device}".replace(":", "_"))}
            result, error, seconds = _worker(job, timeout, side.env)
            if result is None:
                out.append(Run(name, device, "float32", [], error=error, seconds=seconds, native=True))
                progress(f"  {error}")
                continue
            arrays, meta = result
            checks = [Check(*key.split("|")[:3], "-", None, None, state["status"], state.get("detail", ""))
                      for key, state in meta["status"].items() if state["status"] != "ok"]
            checks += [Check(*key.split("|"), float(value), None, "info") for key, value in arrays.items()]
            out.append(Run(name, device, "float32", checks, version=meta["framework"], seconds=seconds, native=True))
            for run_ in measured:
                if run_.device == device:
                    mine = {f"L3|{c.group}|{c.case}|ms/step": c.value for c in run_.checks
                            if c.level == "L3" and c.quantity == "ms/step" and c.value}
                    run_.checks += _speed_ratios(mine, arrays, f"speed vs {side.label}")
            progress(f"  measured ({seconds:.1f} s)")
    return out


def _speed_ratios(arrays: dict, reference: dict, quantity: str = "speed vs numpy") -> list[Check]:
    """``reference``'s ms/step over ``arrays``' per workload: > 1 means ``arrays``' side is faster."""
    out = []
    for key, value in arrays.items():
        level, group, case, measured = key.split("|", 3)
        if level == "L3" and measured == "ms/step" and key in reference:
            out.append(Check("L3", group, case, quantity, float(reference[key]) / float(value), None, "info",
                             "ratio of ms/step, > 1: the backend is faster"))
    return out
