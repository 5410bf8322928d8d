"""The report's L4 section (distributed parity and scaling) and its plot: per-step loss on
1 device vs N replicas, and their relative difference, per backend."""

from __future__ import annotations

import os
from pathlib import Path

from polykeras_conformance import plots, tolerances
from polykeras_conformance.results import Run


def _value(run: Run, case: str, quantity: str):
    return next((c.value for c in run.checks if c.case == case and c.quantity == quantity), None)


def section(runs: list[Run]) -> list[str]:
    """Markdown lines: parity per backend x replicas x dtype, then scaling (speed dtype only)."""
    l4 = [r for r in runs if r.replicas]
    if not l4:
        return []
    lines = ["", "## L4 distributed parity and scaling", "",
             "Each backend that supports data-parallel training trains the workloads on 1 device and as N "
             "replicas (the same global batches, data order, dropout masks and step seeds); the N-replica run is "
             "compared with the *same backend's* 1-device run. float64: per-step loss and final weights within "
             "the L4 tolerances (the all-reduce's summation order, see the table); float32: judged like L2, "
             "against the 1-device float64 run. A backend that declares no `distribute` is unsupported, not "
             "failed.", "",
             "| workload | backend / device / dtype / replicas | max per-step loss rel. diff | "
             "worst final-weight rel. diff | verdict |", "|---|---|---|---|---|"]
    for run in l4:
        if run.error:
            lines.append(f"| all | {run.label} | - | - | crashed: {run.error} |")
            continue
        cases = dict.fromkeys(c.case for c in run.checks)
        for case in cases:
            mine = [c for c in run.checks if c.case == case]
            loss = next((c for c in mine if c.quantity == "per-step loss"), None)
            weights = [c for c in mine if c.quantity.startswith("weights") and c.value is not None]
            if loss is None:
                other = next((c for c in mine if c.value is None and c.status != "info" or c.quantity == "-"), None)
                if other is not None:
                    lines.append(f"| {case} | {run.label} | - | - | {other.status}: {other.detail} |")
                continue
            worst = max(weights, key=lambda c: c.value / c.limit, default=None)
            bad = [c for c in mine if not c.passed]
            verdict = "pass" if not bad else "**FAIL**: " + bad[0].describe()
            lines.append(f"| {case} | {run.label} | {loss.value:.1e} (limit {loss.limit:.0e}) | "
                         + ("-" if worst is None else f"{worst.value:.1e} (limit {worst.limit:.0e})")
                         + f" | {verdict} |")
    scaling = []
    for run in l4:
        for case in dict.fromkeys(c.case for c in run.checks if c.quantity == "samples/s"):
            one, n = _value(run, case, "samples/s on 1 device"), _value(run, case, "samples/s")
            if one is None or n is None:
                continue
            share = _value(run, case, "communication share")
            scaling.append(f"| {case} | {run.backend} / {run.device} / {run.dtype} | {run.replicas} | {one:,.0f} | "
                           f"{n:,.0f} | {n / one:.2f}x | "
                           + ("not measured (inside the compiled step)" if share is None else f"{share:.0%}") + " |")
    if scaling:
        lines += ["", "### Scaling", "",
                  f"samples/s through `fit` (L3's protocol: median epoch after a warm-up), global batch = the "
                  f"workload's batch size. Measured on this machine ({os.cpu_count()} CPU cores): N CPU \"devices\" "
                  "(jax host devices, or torch processes of cores/N threads each) share the same cores, so a speed-up "
                  "here says nothing about N real devices; it mostly shows the cost of splitting the step. "
                  "Communication share: seconds inside `torch.distributed.all_reduce` (gradients and logs, waiting "
                  "for the slower replica included) over the step's seconds; jax's all-reduce is fused into the "
                  "compiled step and is not measured apart.", "",
                  "| workload | backend / device / dtype | replicas | samples/s, 1 device | samples/s, N replicas | "
                  "speed-up | communication share |", "|---|---|---|---|---|---|---|", *scaling]
    return lines


def plot(runs: list[Run], out: Path) -> list[str]:
    """One figure per dtype: per-step loss on 1 device and N replicas (top), their relative
    difference with the L4 limit (bottom), one column per workload; returns file names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    l4 = [r for r in runs if r.replicas and r.losses and r.baseline_losses]
    for dtype in sorted({r.dtype for r in l4}):
        group = [r for r in l4 if r.dtype == dtype]
        workloads = sorted({w for r in group for w in r.losses})
        fig, axes = plt.subplots(2, len(workloads), figsize=(4.4 * len(workloads), 6.5), squeeze=False)
        for j, workload in enumerate(workloads):
            for run in group:
                many, one = run.losses.get(workload), run.baseline_losses.get(workload)
                if many is None or one is None:
                    continue
                line, = axes[0][j].plot(one, label=f"{run.backend}, 1 device")
                axes[0][j].plot(many, ls="--", color=line.get_color(), label=f"{run.backend}, {run.replicas} replicas")
                axes[1][j].semilogy(plots.rel_diffs(many, one), color=line.get_color(),
                                    label=f"{run.backend}, {run.replicas} vs 1")
            axes[0][j].set_title(f"{workload} ({dtype})")
            axes[0][j].set_ylabel("training loss")
            axes[1][j].set_ylabel("rel. diff, N replicas vs 1 device")
            if dtype == "float64":
                axes[1][j].axhline(tolerances.limit("L4", dtype, "per-step loss").limit, color="red", lw=0.8, ls="--")
        plots.save(fig, axes, out, f"distributed-{dtype}.png", written)
    return written
