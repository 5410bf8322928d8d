"""The conformance cases as test parameters, for the pytest plugin.

In-process and level by level: each parameter measures one case on the
reference and on the candidate backend and compares them. (The ``polykeras
conformance`` command runs the same cases in one worker per backend instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from polykeras_conformance import compare, measure, worker
from polykeras_conformance.results import Check


@dataclass(frozen=True)
class Param:
    id: str
    level: str
    group: str
    case: str
    backend: str
    device: str | None
    dtype: str
    fn: Callable

    def run(self) -> list:
        try:  # the candidate first: an unsupported case then costs no reference run
            candidate = self.fn(self.backend, self.device, self.dtype)
        except measure.Unsupported as exc:
            return [Check(self.level, self.group, self.case, "-", None, None, "unsupported", str(exc))]
        reference = self.fn("numpy", "cpu", self.dtype)
        key = worker.key(self.level, self.group, self.case, "")
        prefix = key[:-1] if key.endswith("|") else key

        def keyed(arrays):
            return {f"{prefix}|{q}": v for q, v in arrays.items()}

        exact = None  # float32 training is judged against the float64 reference (see compare)
        if self.level == "L2" and self.dtype == "float32":
            exact = keyed(self.fn("numpy", "cpu", "float64"))
        return compare.compare((keyed(reference), {key: {"status": "ok"}}),
                               (keyed(candidate), {key: {"status": "ok"}}), self.dtype, exact=exact)


def parameters(backends, dtypes, levels, device) -> list[Param]:
    dtypes = dtypes or ["float64", "float32"]
    levels = levels or ["L0", "L1", "L2"]
    from polykeras import workloads

    out = []
    for backend in backends:
        for dtype in dtypes:
            for level, group, case, fn in worker.jobs(levels, quick=True, workloads=list(workloads.workloads())):
                out.append(Param(f"{backend}-{dtype}-{level}-{case}", level, group, case, backend, device, dtype, fn))
    return out

