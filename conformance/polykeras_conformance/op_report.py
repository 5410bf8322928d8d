"""The report's op matrix: one row per op of :mod:`polykeras.ops`, one column per backend, each
cell that backend's verdict on the op's L0 cases (:mod:`.op_cases`) over its runs (dtypes and
devices): ``pass`` with the worst relative difference, **FAIL** with the number and the dtype,
``unsupported`` (a backend without the ``Operation`` kind is told so before anything runs; the
reason is printed under the table), or why the op has no case of its own."""

from __future__ import annotations

from polykeras_conformance import op_cases
from polykeras_conformance.results import Check, Run

PREFIX = "Ops: "


def section(runs: list[Run]) -> list[str]:
    from polykeras.ops.registry import REGISTRY

    runs = [r for r in runs if not r.native and not r.replicas]
    backends = list(dict.fromkeys(r.backend for r in runs if any(c.group.startswith(PREFIX) for c in r.checks)))
    if not backends:
        return []
    cased = {name: group for group, names in op_cases.GROUPS.items() for name in names}
    ops = list(cased) + sorted(set(REGISTRY) - set(cased))
    checks: dict[tuple[str, str], list[tuple[Run, Check]]] = {}
    reasons: dict[str, set[str]] = {}
    for run in runs:
        for c in run.checks:
            if c.group.startswith(PREFIX):
                for op in op_cases.op_of(c.case, c.quantity):
                    checks.setdefault((op, run.backend), []).append((run, c))
                if c.status == "unsupported":
                    reasons.setdefault(run.backend, set()).add(c.detail)
    lines = ["", "## Ops (every `polykeras.ops` op on every backend)", "",
             "L0's op cases, forward and gradients against the reference, over each backend's runs (dtypes, devices); "
             "a merged case's quantities name their op, so a failure is pinned on one op.", "",
             "| op | L0 group | " + " | ".join(backends) + " |", "|---|---|" + "---|" * len(backends)]
    for op in ops:
        if op in cased:
            cells = [_cell(checks.get((op, b), [])) for b in backends]
            lines.append(f"| {op} | {cased[op]} | " + " | ".join(cells) + " |")
        else:
            why = op_cases.without_case(op, REGISTRY[op].differentiable)
            lines.append(f"| {op} | no case: {why} | " + " | ".join("no case" for _ in backends) + " |")
    for backend, details in reasons.items():
        lines += ["", f"{backend}: unsupported, said before running: {'; '.join(sorted(details))}"]
    return lines


def _cell(found: list[tuple[Run, Check]]) -> str:
    judged = [(r, c) for r, c in found if c.status != "info"]  # info: the reference could not run the case
    if not judged:
        return "-"
    bad = [(r, c) for r, c in judged if c.status in ("fail", "error")]
    if bad:
        run, worst = max(bad, key=lambda rc: (rc[1].status == "error",
                                              (rc[1].value or 0.0) / (rc[1].limit or 1.0)))
        if worst.status == "error" or worst.value is None:
            return f"**FAIL**: {worst.detail or worst.quantity} ({run.dtype})"
        return f"**FAIL**: {worst.quantity} {worst.value:.1e} > {worst.limit:.0e} ({run.dtype})"
    if all(c.status == "unsupported" for _, c in judged):
        return "unsupported"
    values = [c.value for _, c in judged if c.value is not None]
    return f"pass ({max(values):.0e})" if values else "pass"
