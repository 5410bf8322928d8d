"""L4, distributed parity and scaling: each backend that supports data-parallel training trains
the L2 workloads on 1 device and as N replicas; the N-replica run is compared with the same
backend's 1-device run (not with the reference: L2 already ties the 1-device run to it).

Both runs see the same global batches, data order, parity-mode dropout masks and step seeds
(the core decides them), so in float64 the only difference is the order of the all-reduce's
additions (:data:`.tolerances.TABLE`, L4). float32 is judged like L2: against the backend's
1-device float64 run, scaled by its 1-device float32 run's own drift from that. Speed: L3's
protocol through ``fit`` at 1 device and N replicas, in float32 (the last dtype of the run).

Replica counts: 2 in quick mode, 2 and 4 in full mode, each where the backend says it can start
them on this machine (``Backend.replica_launch``). A backend without ``distribute`` is reported
as unsupported, not failed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from polykeras_conformance import compare, tolerances
from polykeras_conformance.results import Check, Run

#: the L2 workloads L4 trains by default: a dense model and a convolutional one
WORKLOADS = ("mnist-mlp", "cifar-cnn")
QUICK_STEPS = 20  # as L2's quick mode


def replica_counts(quick: bool) -> tuple[int, ...]:
    return (2,) if quick else (2, 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(job: dict, plan: dict, timeout: float) -> tuple[tuple[dict, dict] | None, str, float]:
    """Run :mod:`.l4_worker` as ``plan`` says (``{"processes": k, "env": {...}}``); k > 1 processes
    are joined the way torchrun joins them (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), each with
    ``cores // k`` threads, as torchrun sets ``OMP_NUM_THREADS``. Returns ((arrays, meta), error, s)."""
    path = Path(job["out"])
    path.with_suffix(".job.json").write_text(json.dumps(job))
    k = plan["processes"]
    env = {**os.environ, **plan.get("env", {})}
    envs = [env]
    if k > 1:
        port, threads = _free_port(), str(max(1, (os.cpu_count() or 1) // k))
        envs = [{**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(k), "LOCAL_WORLD_SIZE": str(k),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS",
                                                                                               threads)}
                for r in range(k)]
    command = [sys.executable, "-m", "polykeras_conformance.l4_worker", str(path.with_suffix(".job.json"))]
    start = time.perf_counter()
    # stderr to files, not pipes: a pipe nobody reads while waiting would block a chatty worker
    logs = [path.with_suffix(f".rank{r}.log") for r in range(k)]
    procs = []
    for e, log in zip(envs, logs):
        with open(log, "w") as stream:
            procs.append(subprocess.Popen(command, env=e, stdout=subprocess.DEVNULL, stderr=stream))
    error = ""
    try:
        for p in procs:
            p.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        error = f"the {k} worker process(es) did not finish within {timeout:.0f} s (hang?)"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seconds = time.perf_counter() - start
    failed = [(r, p) for r, p in enumerate(procs) if p.returncode != 0]
    if not error and failed:
        rank, p = failed[0]
        tail = (logs[rank].read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        error = f"worker process {rank} of {k} crashed (exit {p.returncode}): {tail}"
    if error:
        return None, error, seconds
    with np.load(path.with_suffix(".npz")) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return (arrays, json.loads(path.with_suffix(".json").read_text())), "", seconds


def run(backends: list[str], devices: list[str] | None, dtypes, quick: bool, workloads: list[str] | None,
        timeout: float, tmp: str, progress=print, steps: int | None = None, speed: bool = True,
        replicas: tuple[int, ...] | None = None) -> list[Run]:
    """One :class:`Run` per backend x device x dtype x replica count (``replicas`` set), judged
    against that backend's 1-device run. ``steps``: steps per workload (default: L2's quick count in
    quick mode; in full mode every whole batch of one epoch, in order, so each splits evenly);
    ``replicas``: the replica counts (default :func:`replica_counts`)."""
    from polykeras import workloads as _workloads

    names = [w for w in (workloads or WORKLOADS) if w in _workloads.workloads()]
    dtypes = sorted(dtypes, key=lambda d: d != "float64")
    counts = tuple(replicas or replica_counts(quick))
    runs: list[Run] = []
    for backend in backends:
        for device in devices or [None]:
            base = {"backend": backend, "device": device, "dtypes": dtypes, "workloads": names, "quick": quick,
                    "steps": {w: steps or (QUICK_STEPS if quick else _whole_batches(w)) for w in names},
                    "speed": speed}
            stem = str(Path(tmp) / f"l4-{backend}-{device}".replace(":", "_"))
            progress(f"conformance L4: {backend} / {device or 'default device'} / 1 device ...")
            single, error, seconds = launch({**base, "replicas": 1, "probe": list(counts), "out": stem + "-1"},
                                            {"processes": 1}, timeout)
            if single is None or "unsupported" in single[1]:
                status = "error" if single is None else "unsupported"
                detail = error or single[1]["unsupported"]
                where = device or (single[1]["device"] if single else "?")
                runs += [Run(backend, where, d, [Check("L4", "distribution", "-", "-", None, None, status, detail)],
                             replicas=counts[0]) for d in dtypes]
                progress(f"  {status}: {detail}")
                continue
            arrays1, meta1 = single
            for n in counts:
                plan = meta1["launch"].get(str(n))
                if plan is None:
                    progress(f"  {n} replicas: not available on this machine")
                    continue
                progress(f"conformance L4: {backend} / {meta1['device']} / {n} replicas "
                         f"({plan['processes']} process(es)) ...")
                many, error, seconds = launch({**base, "replicas": n, "probe": [], "out": f"{stem}-{n}"}, plan,
                                              timeout)
                for dtype in dtypes:
                    if many is None:
                        runs.append(Run(backend, meta1["device"], dtype, [], error=error, seconds=seconds,
                                        replicas=n))
                        continue
                    checks = judge(arrays1, meta1["status"], many[0], many[1]["status"], dtype, names)
                    runs.append(Run(backend, meta1["device"], dtype, checks, version=meta1["framework"],
                                    seconds=seconds, replicas=n, losses=_losses(many[0], dtype, names),
                                    baseline_losses=_losses(arrays1, dtype, names)))
                progress(f"  {error or ', '.join(r.verdict() for r in runs[-len(dtypes):])} ({seconds:.1f} s)")
    return runs


def _whole_batches(name: str) -> int:
    """Full mode: the whole batches of one epoch of the workload's training set."""
    import warnings

    from polykeras import datasets, workloads as _workloads

    workload = _workloads.get(name)
    with warnings.catch_warnings():  # the worker says it (the report's L2 section too)
        warnings.simplefilter("ignore", datasets.DatasetSubsetWarning)
        (x, _), _ = workload.load()
    return len(x[0] if isinstance(x, list) else x) // workload.batch_size


def _losses(arrays: dict, dtype: str, names: list[str]) -> dict[str, list[float]]:
    return {w: arrays[f"{dtype}|{w}|losses"].tolist() for w in names if f"{dtype}|{w}|losses" in arrays}


def judge(single: dict, single_status: dict, many: dict, many_status: dict, dtype: str,
          names: list[str]) -> list[Check]:
    """The N-replica run's checks against the 1-device run's, for ``dtype``."""
    checks = []
    for workload in names:
        key = f"{dtype}|{workload}|training"
        mine, base = many_status.get(key, {"status": "error", "detail": "not run"}), single_status.get(key, {})
        if base.get("status") != "ok":
            checks.append(Check("L4", workload, workload, "-", None, None, "info",
                                f"the 1-device run could not train it: {base.get('detail', 'not run')}"))
            continue
        if mine["status"] != "ok":
            checks.append(Check("L4", workload, workload, "-", None, None, mine["status"], mine.get("detail", "")))
            continue
        prefix = f"{dtype}|{workload}|"
        for key in sorted(k for k in single if k.startswith(prefix)):
            quantity = key[len(prefix):]
            if quantity in ("ms/step", "samples/s", "communication share"):
                continue
            if quantity == "test accuracy":
                points = abs(float(many[key]) - float(single[key])) * 100
                checks.append(Check("L4", workload, workload, "test accuracy (points)", points, None, "info",
                                    f"{float(many[key]):.4f} vs 1 device {float(single[key]):.4f}"))
                continue
            exact = single.get(f"float64|{workload}|{quantity}") if dtype == "float32" else None
            checks.append(_check(workload, quantity, many.get(key), single[key], dtype, exact))
    checks += _scaling(single, single_status, many, many_status, dtype, names)
    return checks


def _check(workload: str, quantity: str, value, single, dtype: str, exact) -> Check:
    per_step = quantity == "losses"
    name = "per-step loss" if per_step else quantity
    diff = compare.per_step_rel_diff if per_step else compare.rel_diff
    if value is None:
        return Check("L4", workload, workload, name, None, None, "error", f"{quantity} was not measured")
    tol = tolerances.limit("L4", dtype, "per-step loss" if per_step else "final weights").limit
    if dtype == "float32" and exact is not None:  # like L2: against float64, scaled by the 1-device drift
        own = diff(single, exact)
        tol = max(tol, tolerances.limit("L2", "float32", "drift factor").limit * own)
        found = diff(value, exact)
        detail = f"vs the 1-device float64 run; the 1-device float32 run is {own:.1e} from it"
        if found <= tol and own > tolerances.limit("L2", "float32", "chaotic above").limit:
            return Check("L4", workload, workload, name, found, tol, "info", detail + " (chaotic: reported)")
        return Check("L4", workload, workload, name, found, tol, "pass" if found <= tol else "fail", detail)
    found = diff(value, single)
    return Check("L4", workload, workload, name, found, tol, "pass" if found <= tol else "fail", "vs 1 device")


def _scaling(single, single_status, many, many_status, dtype, names) -> list[Check]:
    """samples/s at 1 device and N replicas, the speed-up and the communication share (speed dtype only)."""
    out = []
    for workload in names:
        key = f"{dtype}|{workload}|"
        if f"{key}samples/s" not in many or f"{key}samples/s" not in single:
            state = many_status.get(f"{dtype}|{workload}|speed")
            if state and state["status"] != "ok":
                out.append(Check("L4", workload, workload, "samples/s", None, None, "info",
                                 f"not measured: {state.get('detail', '')}"))
            continue
        one, n = float(single[f"{key}samples/s"]), float(many[f"{key}samples/s"])
        out += [Check("L4", workload, workload, "samples/s on 1 device", one, None, "info"),
                Check("L4", workload, workload, "samples/s", n, None, "info"),
                Check("L4", workload, workload, "speed-up", n / one, None, "info", "samples/s over 1 device's")]
        share = many.get(f"{key}communication share")
        out.append(Check("L4", workload, workload, "communication share", None if share is None else float(share),
                         None, "info", "all_reduce seconds over step seconds" if share is not None else
                         "not measured: the all-reduce runs inside the compiled step"))
    return out
