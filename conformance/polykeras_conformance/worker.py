"""The worker: runs every case of a job on one backend/device/dtype, in a
process of its own, and writes the measurements to disk.

    python -m polykeras_conformance.worker JOB.json

A job is ``{"backend", "device", "dtype", "levels", "quick", "workloads",
"out"}``, or, for one of L3's native yardsticks (:mod:`.native`),
``{"native", "device", "quick", "workloads", "out"}``; the worker writes ``<out>.npz`` (arrays keyed ``level|group|case|quantity``) and
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

from polykeras_conformance import cases, l3_auto, measure, native, op_cases

QUICK_STEPS = 20
QUICK_TEST_SAMPLES = 1000


def key(level: str, group: str, case: str, quantity: str) -> str:
    return f"{level}|{group}|{case}|{quantity}"


def jobs(levels: list[str], quick: bool, workloads: list[str]):
    """(level, group, case id, callable(backend, device, dtype) -> arrays) for every case."""
    if "L0" in levels:
        for case in (cases.layer_cases(4 if quick else 12) + cases.graph_cases(4 if quick else 12) + cases.LOSS_CASES
                     + cases.EXTRA_CASES + cases.METRIC_CASES
                     + op_cases.op_cases(1 if quick else 3, cases._draw, 5 if quick else 1)):
            yield "L0", case["group"], case["id"], lambda b, d, t, c=case: op_cases.attributed(
                measure.layer_case(c, b, d, t), c)
    if "L1" in levels:
        for config in cases.OPTIMIZER_CASES:
            name = f"{config['class_name']}({', '.join(f'{k}={v}' for k, v in config['config'].items())})"
            name += " with sample weights" if config.get("sample_weight") else ""
            name += " with the learning rate changed midway" if config.get("learning_rate_factor") else ""
            yield ("L1", config.get("group", config["class_name"]), name,
                   lambda b, d, t, c=config: measure.optimizer_case(c, b, d, t))
    if "L2" in levels:
        for name in workloads:
            yield "L2", name, name, lambda b, d, t, n=name: measure.training_run(
                n, b, d, t, QUICK_STEPS if quick else None, QUICK_TEST_SAMPLES if quick else None)
    if "L3" in levels:
        for name in workloads:
            yield "L3", name, name, lambda b, d, t, n=name: measure.speed(n, b, d, t, **speed_protocol(quick))


def speed_protocol(quick: bool) -> dict[str, int]:
    """L3's steps per epoch and timed epochs (after one warm-up epoch), for backends and native sides alike."""
    return {"steps": 10, "epochs": 2} if quick else {"steps": 40, "epochs": 3}


def native_jobs(side: str, quick: bool, workloads: list[str]):
    for name in workloads:
        yield "L3", name, name, lambda b, d, t, n=name: native.speed(side, n, d, **speed_protocol(quick))


def run(job: dict) -> None:
    import polykeras
    from polykeras.backends import find_backend, get_backend

    if "native" in job:
        side = native.SIDES[job["native"]]
        backend, dtype, device = side.name, "float32", job["device"]
        version = side.load().version()
        cases = native_jobs(side.name, job["quick"], job["workloads"])
    elif job.get("auto"):
        backend, dtype, device, version = l3_auto.NAME, "float32", job["device"], ""
        cases = l3_auto.jobs(job["workloads"], speed_protocol(job["quick"]))
    else:
        backend, dtype = job["backend"], job["dtype"]
        device = get_backend(backend, job.get("device"), dtype).device
        version = find_backend(backend).framework_version() or ""
        cases = jobs(job["levels"], job["quick"], job["workloads"])
    arrays: dict[str, np.ndarray] = {}
    status: dict[str, dict] = {}
    for level, group, case_id, fn in cases:
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
            "polykeras": polykeras.__version__, "framework": version}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
