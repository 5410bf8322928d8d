"""L3's ``auto`` row and its summary: the best polykeras configuration per workload against the best
native yardstick.

What a user gets without knowing which framework is fastest for their model: ``compile(backend="auto",
steps_per_execution="auto")``, timed through ``fit`` by L3's protocol in a worker of its own after the
backends and the native yardsticks (one at a time: its probe times the candidates against each other).
Its candidates are the ones ``backend="auto"`` probes for a user (``POLYKERAS_AUTO_CANDIDATES``, or every
installed backend that offers itself), on the probe's own fresh cache (a result cached on this machine
by an earlier run would not be measured again).

The summary table (:func:`section`) puts beside it the fastest backend this run measured and the
fastest native yardstick, per workload, and the ratio of the best yardstick's ms/step to the best
polykeras figure (``auto`` or the fastest backend): above 1, polykeras is faster.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from polykeras_conformance.results import Check, Run

NAME = "auto"
LABEL = 'backend="auto", steps_per_execution="auto"'
CHOSEN = "chose"  # the quantity naming the backend the probe chose


def jobs(workloads: list[str], protocol: dict):
    """The worker's cases: one L3 timing per workload (``protocol``: L3's steps and epochs)."""
    for name in workloads:
        yield "L3", name, name, lambda b, d, t, n=name: speed(n, d, t, **protocol)


def speed(workload_name: str, device: str | None, dtype: str, steps: int, epochs: int) -> dict[str, np.ndarray]:
    """L3's protocol (as :func:`.measure.speed`) for ``backend="auto"``, ``steps_per_execution="auto"``;
    plus the name of the backend the probe chose."""
    from polykeras_conformance import measure

    os.environ["POLYKERAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="polykeras-l3-auto-")  # a fresh probe
    workload, model = measure.speed_model(workload_name)
    workload.compile(model, backend=NAME, device=device, dtype=dtype, steps_per_execution="auto")
    x, y = measure.speed_data(workload, model, steps)
    timer = measure.epoch_timer()
    model.fit(x, y, batch_size=workload.batch_size, epochs=epochs + 1, verbose=0, callbacks=[timer])
    out = measure.speed_summary(timer.seconds[1:], steps, workload.batch_size)
    out[CHOSEN] = np.asarray(model._auto_backend)
    return out


def run(runs: list[Run], quick: bool, workloads: list[str], timeout: float, tmp: str, progress, worker) -> list[Run]:
    """The ``auto`` run on the float32 runs' first device (``worker``: the runner's worker launcher)."""
    measured = [r for r in runs if r.dtype == "float32" and not r.error and not r.native]
    device = measured[0].device if measured else "cpu"
    label = f"{LABEL} / {device} / float32"
    progress(f"conformance: {label} ...")
    job = {"auto": True, "device": device, "quick": quick, "workloads": workloads,
           "out": os.path.join(tmp, f"auto-{device}".replace(":", "_"))}
    result, error, seconds = worker(job, timeout)
    if result is None:
        progress(f"  {error}")
        return [Run(NAME, device, "float32", [], error=error, seconds=seconds)]
    arrays, meta = result
    checks = [Check(*key.split("|")[:3], "-", None, None, state["status"], state.get("detail", ""))
              for key, state in meta["status"].items() if state["status"] != "ok"]
    for key, value in arrays.items():
        level, group, case, quantity = key.split("|")
        if quantity == CHOSEN:
            checks.append(Check(level, group, case, quantity, None, None, "info", str(value)))
        else:
            checks.append(Check(level, group, case, quantity, float(value), None, "info"))
    progress(f"  measured ({seconds:.1f} s)")
    return [Run(NAME, device, "float32", checks, version=meta.get("framework", ""), seconds=seconds)]


def _fastest(runs: list[Run]) -> dict[str, tuple[float, str]]:
    """Per workload: the lowest L3 ms/step among ``runs`` and the label of the run that measured it."""
    best: dict[str, tuple[float, str]] = {}
    for run in runs:
        for c in run.checks:
            if c.level == "L3" and c.quantity == "ms/step" and c.value and c.status in ("info", "pass"):
                if c.case not in best or c.value < best[c.case][0]:
                    name = run.label.split(" / ")[0] if run.native else run.backend
                    best[c.case] = (c.value, name)
    return best


def section(runs: list[Run]) -> list[str]:
    """The report's "best per workload" table (empty when no ``auto`` run was made)."""
    autos = [r for r in runs if r.backend == NAME and not r.native and not r.replicas]
    if not autos:
        return []
    auto = autos[0]
    if auto.error:
        return ["", "### Best per workload", "", f"The `auto` run failed: {auto.error}"]
    backends = _fastest([r for r in runs if not r.native and not r.replicas and r.backend != NAME
                         and r.dtype == "float32"])
    natives = _fastest([r for r in runs if r.native])
    chose = {c.case: c.detail for c in auto.checks if c.quantity == CHOSEN}
    ms = {c.case: c.value for c in auto.checks if c.quantity == "ms/step"}
    failed = {c.case: f"{c.status}: {c.detail}" for c in auto.checks if c.quantity == "-"}
    rows = []
    for case in dict.fromkeys([*chose, *failed, *backends]):
        mine = ms.get(case)
        cell = f"{chose[case]}, {mine:.2f}" if mine else failed.get(case, "-")
        fast = backends.get(case)
        yard = natives.get(case)
        best = min([v for v in (mine, fast and fast[0]) if v] or [None]) if mine or fast else None
        ratio = f"{yard[0] / best:.2f}x" if best and yard else "-"
        rows.append(f"| {case} | {cell} | {f'{fast[1]}, {fast[0]:.2f}' if fast else '-'} | "
                    f"{f'{yard[1]}, {yard[0]:.2f}' if yard else '-'} | {ratio} |")
    return ["", "### Best per workload", "",
            f"`auto`: {LABEL}, timed like the rows above in its own worker after them (its probe's choice "
            "named). Fastest backend: the lowest ms/step of the float32 backend rows above. Best yardstick: the "
            "lowest of the native sides. The ratio is the best yardstick's ms/step over the best polykeras one "
            "(`auto` or the fastest backend): above 1, polykeras is faster.", "",
            "| workload | `auto`: chose, ms/step | fastest backend, ms/step | best yardstick, ms/step | "
            "best yardstick / best polykeras |", "|---|---|---|---|---|", *rows]


def summary(run: Run) -> str:
    """One line for the command's verdict list: what the probe chose, per workload."""
    chose = [f"{c.case}: {c.detail}" for c in run.checks if c.quantity == CHOSEN]
    failed = [f"{c.case}: {c.status}" for c in run.checks if c.quantity == "-"]
    return "measured (chose " + ", ".join(chose + failed) + ")"
