"""L4's worker: one backend trains the L2 workloads on 1 device or as N replicas, in its own
process(es), and writes what it measured.

    python -m polykeras_conformance.l4_worker JOB.json

A job is ``{"backend", "device", "replicas", "dtypes", "workloads", "steps", "speed", "probe",
"out"}`` (``steps``: one count, or one by workload). With ``replicas`` > 1 the runner (:mod:`.l4`) starts the processes the backend asked for
(:meth:`replica_launch`): one process holding N devices (jax), or N processes joined by
torchrun's variables (torch), each running this module; every process trains, rank 0 writes
``<out>.npz`` (arrays keyed ``dtype|workload|quantity``) and ``<out>.json``. The 1-device job
also says whether the backend supports distribution at all and how it would start each replica
count of ``probe`` on this machine.

The communication share of a step is measured where it can be honestly: on backends whose
replicas talk through ``torch.distributed``, the seconds spent inside its ``all_reduce`` calls
(the gradients' and the logs'; waiting for a slower replica included) over the timed epochs'
seconds. Inside one compiled XLA step (jax) the all-reduce cannot be timed apart: not measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from polykeras_conformance import measure, worker


class CollectiveTimer:
    """Seconds spent in ``torch.distributed.all_reduce`` since :meth:`install` (``None`` where the
    replicas do not talk through torch.distributed: not measured)."""

    def __init__(self) -> None:
        self.seconds: float | None = None

    def install(self) -> None:
        dist = sys.modules.get("torch.distributed")
        if dist is None or not dist.is_available() or not dist.is_initialized():
            return
        original, self.seconds = dist.all_reduce, 0.0

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        dist.all_reduce = timed


def speed(name: str, backend: str, device: str | None, dtype: str, spread, quick: bool,
          timer: CollectiveTimer) -> dict[str, np.ndarray]:
    """L3's protocol (through ``fit``, synthetic data, median epoch after a warm-up) under ``spread``;
    plus the communication share of the timed epochs where :class:`CollectiveTimer` measures it."""
    from polykeras.callbacks import Callback

    workload, model = measure.speed_model(name)
    workload.compile(model, backend=backend, device=device, dtype=dtype, distribution=spread)
    protocol = worker.speed_protocol(quick)
    x, y = measure.speed_data(workload, model, protocol["steps"])
    epochs = measure.epoch_timer()
    spent = []

    class Communication(Callback):  # epoch hooks only: fit keeps its lean per-step path
        def on_epoch_begin(self, epoch, logs=None):
            self._start = timer.seconds

        def on_epoch_end(self, epoch, logs=None):
            if timer.seconds is not None:
                spent.append(timer.seconds - self._start)

    model.fit(x, y, batch_size=workload.batch_size, epochs=protocol["epochs"] + 1, verbose=0,
              callbacks=[epochs, Communication()])
    out = measure.speed_summary(epochs.seconds[1:], protocol["steps"], workload.batch_size)
    if spent:
        out["communication share"] = np.asarray(sum(spent[1:]) / sum(epochs.seconds[1:]))
    return out


def _launch_plan(backend, counts: list[int]) -> dict:
    """How the backend would start each replica count here: its ``replica_launch``, else one
    process per replica where it can join several processes, else ``None`` (not available)."""
    method = getattr(backend, "replica_launch", None)
    plans = {}
    for n in counts:
        if method is not None:
            plans[str(n)] = method(n)
        elif callable(getattr(backend, "initialize_distributed", None)):
            plans[str(n)] = {"processes": n, "env": {}}
        else:
            plans[str(n)] = None
    return plans


def run(job: dict) -> None:
    import polykeras
    from polykeras import distribution as dist
    from polykeras.backends import find_backend, get_backend

    name, replicas = job["backend"], job["replicas"]
    cluster = dist.initialize(backend=name, device=job["device"]) if replicas > 1 else dist.cluster()
    backend = get_backend(name, job["device"], job["dtypes"][0])
    meta = {"backend": name, "device": backend.device, "replicas": replicas, "status": {},
            "framework": find_backend(name).framework_version() or "", "polykeras": polykeras.__version__}
    arrays: dict[str, np.ndarray] = {}
    if not callable(getattr(backend, "distribute", None)):
        meta["unsupported"] = (f"backend {name!r} declares no data-parallel training (its Backend has no "
                               "distribute method)")
    else:
        if replicas == 1:
            meta["launch"] = _launch_plan(backend, job["probe"])
        spread = dist.DataParallel(num_replicas=replicas) if replicas > 1 else None
        timer = CollectiveTimer()
        timer.install()
        cases = [(dtype, w, "training") for dtype in job["dtypes"] for w in job["workloads"]]
        cases += [(job["dtypes"][-1], w, "speed") for w in job["workloads"] if job["speed"]]
        for dtype, workload, kind in cases:
            start = time.perf_counter()
            try:
                if kind == "training":
                    steps = job["steps"][workload] if isinstance(job["steps"], dict) else job["steps"]
                    found = measure.training_run(workload, name, job["device"], dtype, steps,
                                                 worker.QUICK_TEST_SAMPLES, distribution=spread)
                else:
                    found = speed(workload, name, job["device"], dtype, spread, job["quick"], timer)
                arrays.update({f"{dtype}|{workload}|{k}": np.asarray(v) for k, v in found.items()})
                state = {"status": "ok"}
            except measure.Unsupported as exc:
                state = {"status": "unsupported", "detail": str(exc).splitlines()[0]}
            except Exception as exc:  # recorded; the other cases run (a replica stuck in a collective times out)
                state = {"status": "error", "detail": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                         "traceback": traceback.format_exc()[-2000:]}
            state["seconds"] = round(time.perf_counter() - start, 3)
            meta["status"][f"{dtype}|{workload}|{kind}"] = state
    if cluster.process_id == 0:
        out = Path(job["out"])
        np.savez(out.with_suffix(".npz"), **arrays)
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("POLYKERAS_DISTRIBUTED_TIMEOUT", "60")
    run(json.loads(Path(sys.argv[1]).read_text()))
