"""The worker: runs every case of a job on one backend/device/dtype, in a
process of its own, and writes the measurements to disk.

    python -m polykeras_conformance.worker JOB.json

A job is ``{"backend", "device", "dtype", "levels", "quick", "out"}``; the
worker writes ``<out>.npz`` (arrays keyed ``level|group|case|quantity``) and
``<out>.json`` (per-case status, versions, timings). A case that raises is
recorded as an error and the worker goes on; a crash or a hang of the whole
process is noticed by the runner, which reports it as that backend's failure.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from polykeras_conformance import cases, measure

QUICK_STEPS = 20
QUICK_TEST_SAMPLES = 1000


def key(level: str, group: str, case: str, quantity: str) -> str:
    return f"{level}|{group}|{case}|{quantity}"


def jobs(levels: list[str], quick: bool, workloads: list[str]):
    """(level, group, case id, callable(backend, device, dtype) -> arrays) for every case."""
    if "L0" in levels:
        for case in cases.layer_cases(4 if quick else 12) + cases.LOSS_CASES + cases.EXTRA_CASES:
            yield "L0", case["group"], case["id"], lambda b, d, t, c=case: measure.layer_case(c, b, d, t)
    if "L1" in levels:
        for config in cases.OPTIMIZER_CASES:
            name = f"{config['class_name']}({', '.join(f'{k}={v}' for k, v in config['config'].items())})"
            yield "L1", config["class_name"], name, lambda b, d, t, c=config: measure.optimizer_case(c, b, d, t)
    if "L2" in levels:
        for name in workloads:
            yield "L2", name, name, lambda b, d, t, n=name: measure.training_run(
                n, b, d, t, QUICK_STEPS if quick else None, QUICK_TEST_SAMPLES if quick else None)
    if "L3" in levels:
        for name in workloads:
            yield "L3", name, name, lambda b, d, t, n=name: measure.speed(n, b, d, t, steps=10 if quick else 40,
                                                                          epochs=2 if quick else 3)


def run(job: dict) -> None:
    import polykeras
    from polykeras.backends import find_backend, get_backend

    backend, dtype = job["backend"], job["dtype"]
    info = find_backend(backend)
    device = get_backend(backend, job.get("device"), dtype).device
    arrays: dict[str, np.ndarray] = {}
    status: dict[str, dict] = {}
    for level, group, case_id, fn in jobs(job["levels"], job["quick"], job["workloads"]):
        start = time.perf_counter()
        try:
            for quantity, value in fn(backend, device, dtype).items():
                arrays[key(level, group, case_id, quantity)] = np.asarray(value)
            state = {"status": "ok"}
        except measure.Unsupported as exc:
            state = {"status": "unsupported", "detail": str(exc).splitlines()[0]}
        except Exception as exc:  # recorded, and the next case runs
            state = {"status": "error", "detail": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                     "traceback": traceback.format_exc()[-2000:]}
        state["seconds"] = round(time.perf_counter() - start, 3)
        status[key(level, group, case_id, "")] = state
    out = Path(job["out"])
    np.savez(out.with_suffix(".npz"), **arrays)
    meta = {"backend": backend, "device": device, "dtype": dtype, "status": status,
            "polykeras": polykeras.__version__, "framework": info.framework_version() or ""}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
