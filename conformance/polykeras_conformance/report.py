"""The report: ``report.md``, ``report.json`` and PNG plots.

Rows are backend x device x dtype; a verdict names the worst offending
quantity; the tolerance table is printed beside it; a coverage matrix shows
which layer kinds each backend implements, and the op matrix (:mod:`.op_report`) every
op of ``polykeras.ops`` with its verdict on each backend. The suite's own strength follows:
the kill rate of the planted mutants (:mod:`.strength`, from a mutation run's
results file) and the configuration branches the drawn cases reach
(:mod:`.config_coverage`).
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from pathlib import Path

from polykeras_conformance import config_coverage, l3_auto, l4_report, op_report, plots, strength, tolerances
from polykeras_conformance.results import Run

LEVEL_NAMES = {"L0": "L0 layers", "L1": "L1 optimizers", "L2": "L2 training", "L3": "L3 speed",
               "L4": "L4 distributed"}


def _cell(run: Run, level: str) -> str:
    if run.skipped:
        return "not run"
    if run.error:
        return "crashed"
    checks = [c for c in run.checks if c.level == level]
    if not checks:
        return "-"
    if level == "L3":
        return "measured"
    worst = run.worst(level)
    unsupported = sum(c.status == "unsupported" for c in checks)
    if unsupported == len(checks):
        return f"unsupported: {checks[0].detail}" if len(checks) == 1 else "unsupported"
    note = f" ({unsupported} unsupported)" if unsupported else ""
    if worst is None:
        values = [c.value / c.limit for c in checks if c.value is not None and c.limit]
        return f"pass, worst {max(values, default=0):.0e} of limit{note}"
    return f"**FAIL**: {worst.describe()}{note}"


def markdown(runs: list[Run], levels, quick: bool, plots: list[str], mutants: Path | None = None,
             found: list | None = None) -> str:
    """The report; ``mutants``: a mutation run's results file (None: the section says how to make one);
    ``found``: :func:`config_coverage.uses` for these levels, when already computed."""
    lines = ["# polykeras conformance report", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'unknown host'} "
             f"({platform.machine()}, {platform.python_implementation()} {platform.python_version()}); "
             f"mode: {'quick' if quick else 'full'}; levels: {', '.join(levels)}.", "",
             "Every backend is compared with the NumPy reference running the same cases in its own process "
             "(same initial weights, same data order, parity-mode dropout masks).", "", "## Verdicts", "",
             "| backend / device / dtype | version | " + " | ".join(LEVEL_NAMES[l] for l in levels if l in LEVEL_NAMES)
             + " | verdict |", "|---|---|" + "---|" * (len(levels) + 1)]
    backends = [r for r in runs if not r.native]
    for run in backends:
        cells = [_cell(run, level) for level in levels]
        verdict = ("not run" if run.skipped else "unsupported" if run.unsupported else "PASS" if run.passed
                   else "**FAIL**")
        lines.append(f"| {run.label} | {run.version or '-'} | " + " | ".join(cells) + f" | {verdict} |")
    lines += ["", "## Tolerances", "", "| level | dtype | quantity | limit | why |", "|---|---|---|---|---|"]
    lines += [f"| {t.level} | {t.dtype} | {t.quantity} | {t.limit:g} | {t.reason} |" for t in tolerances.TABLE]
    lines += (_training_table(backends) + _speed_table(runs) + l3_auto.section(runs) + l4_report.section(backends)
              + _coverage(backends) + op_report.section(backends))
    lines += strength.section(mutants) + config_coverage.section(quick, levels, found) + _failures(backends)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _training_table(runs: list[Run]) -> list[str]:
    rows = []
    for run in runs:
        for c in run.checks:
            if c.level == "L2" and c.quantity == "per-step loss":
                acc = next((a for a in run.checks if a.level == "L2" and a.case == c.case
                            and a.quantity.startswith("test accuracy")), None)
                weights = max((w.value for w in run.checks if w.level == "L2" and w.case == c.case
                               and w.quantity.startswith("weights") and w.value is not None), default=None)
                rows.append(f"| {c.case} | {run.label} | {c.value:.1e} (limit {c.limit:.0e}{', chaotic' if c.status == 'info' else ''}) | "
                            f"{'-' if weights is None else f'{weights:.1e}'} | {acc.detail if acc else '-'} |")
    if not rows:
        return []
    return ["", "## L2 training", "", "float32 runs are measured against the float64 reference, with limits scaled by "
            "the float32 reference's own drift from it (see the tolerance table).", "", "| workload | backend / device / dtype | max per-step loss rel. diff | "
            "worst final-weight rel. diff | test accuracy vs reference |", "|---|---|---|---|---|", *rows]


def _speed_table(runs: list[Run]) -> list[str]:
    backends = [r for r in runs if not r.native]
    natives = [r for r in runs if r.native]
    ratio_columns = list(dict.fromkeys(c.quantity for r in backends for c in r.checks
                                       if c.level == "L3" and c.quantity.startswith("speed vs ")))
    rows = []
    for run in backends:
        by_case = defaultdict(dict)
        for c in run.checks:
            if c.level == "L3":
                by_case[c.case][c.quantity] = c.value if c.quantity != "-" else c.status  # "-": not measured
        for case, values in by_case.items():
            if "ms/step" not in values:
                rows.append(f"| {case} | {run.label} | {values.get('-', 'not measured')} | - |"
                            + " - |" * len(ratio_columns))
                continue
            ratios = " | ".join("-" if values.get(q) is None else f"{values[q]:.2f}x" for q in ratio_columns)
            rows.append(f"| {case} | {run.label} | {values['ms/step']:.2f} | {values['samples/s']:,.0f} | {ratios} |")
    if not rows:
        return []
    lines = ["", "## L3 speed (through `fit`, median of epochs after a warm-up)", "",
             "Timed in float32 (the dtype models train in; float64 only when it runs alone). "
             "Ratios are the other side's ms/step over the backend's: above 1, the backend is faster. "
             + ("The native yardsticks (below) train the same model from the same initial weights on the same "
                "synthetic data, in float32, each in its own process after the backends ran. Sides timed one after "
                "the other on a shared machine move by up to ~20% between runs (more in quick mode's 10-step "
                "epochs); `benchmarks/` interleaves the sides for ratios to hold targets against." if natives else ""),
             "", "| workload | backend / device / dtype | ms/step | samples/s | "
             + " | ".join(q.replace("speed ", "") for q in ratio_columns) + " |",
             "|---|---|---|---|" + "---|" * len(ratio_columns), *rows]
    if natives:
        lines += ["", "### Native yardsticks", "", "| workload | native side / device | version | ms/step | samples/s |",
                  "|---|---|---|---|---|"]
        for run in natives:
            if run.error:
                lines.append(f"| all | {run.label} | - | {run.error} | - |")
            values = defaultdict(dict)
            for c in run.checks:
                values[c.case][c.quantity] = c.value if c.status == "info" else f"{c.status}: {c.detail}"
            for case, v in values.items():
                if "-" in v:  # the side could not run this workload
                    lines.append(f"| {case} | {run.label} | {run.version} | {v['-']} | - |")
                else:
                    lines.append(f"| {case} | {run.label} | {run.version} | {v['ms/step']:.2f} | "
                                 f"{v['samples/s']:,.0f} |")
    return lines


def _coverage(runs: list[Run]) -> list[str]:
    from polykeras.backends import backend_infos

    infos = backend_infos()
    names = list(dict.fromkeys(r.backend for r in runs if r.backend in infos))  # not the yardsticks or auto
    kinds = sorted(set().union(*(infos[n].layer_kinds for n in names if n in infos)))
    if not kinds:
        return []
    lines = ["", "## Coverage (layer kinds each backend implements)", "",
             "| layer kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join("yes" if n in infos and kind in infos[n].layer_kinds else "**no**"
                                                 for n in names) + " |")
    return lines


def _failures(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        bad = run.failures()
        if run.error:
            lines.append(f"- **{run.label}**: {run.error}")
        for c in bad[:20]:
            lines.append(f"- **{run.label}** {c.level} {c.group}: {c.describe()}")
        if len(bad) > 20:
            lines.append(f"- **{run.label}**: ... and {len(bad) - 20} more failing checks (see report.json)")
    return ["", "## Failures", "", *lines] if lines else []


def plot(runs: list[Run], out: Path) -> list[str]:
    """Loss trajectories, per-step relative differences and speed; returns file names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    single = [r for r in runs if not r.replicas]  # L4's runs have a plot of their own (l4_report.plot)
    workloads = sorted({w for r in single for w in (r.losses or {})})
    for dtype in sorted({r.dtype for r in single}):
        group = [r for r in single if r.dtype == dtype and r.losses]
        reference = next((r for r in group if r.backend == "numpy"), None)
        if not group or not workloads:
            continue
        fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 6.5), squeeze=False)
        for j, workload in enumerate(workloads):
            for run in group:
                series = run.losses.get(workload)
                if series is None:
                    continue
                axes[0][j].plot(series, label=f"{run.backend}/{run.device}")
                if reference is not None and run is not reference and workload in reference.losses:
                    ref = reference.losses[workload]
                    axes[1][j].semilogy(plots.rel_diffs(series, ref), label=f"{run.backend}/{run.device}")
            axes[0][j].set_title(f"{workload} ({dtype})")
            axes[0][j].set_ylabel("training loss")
            axes[1][j].set_ylabel("rel. diff vs numpy")
            axes[1][j].axhline(tolerances.limit("L2", dtype, "per-step loss").limit, color="red", lw=0.8, ls="--")
        plots.save(fig, axes, out, f"training-{dtype}.png", written)
    speed = [(r, c) for r in runs for c in r.checks if c.level == "L3" and c.quantity == "ms/step"]
    if speed:
        cases = sorted({c.case for _, c in speed})
        labels = list(dict.fromkeys(r.label for r, _ in speed))
        native = {r.label for r, _ in speed if r.native}
        fig, ax = plt.subplots(figsize=(4 + 1.4 * len(cases), 4.2))
        width = 0.8 / len(labels)
        colors = plt.get_cmap("tab20").colors
        for i, label in enumerate(labels):
            values = [next((c.value for r, c in speed if r.label == label and c.case == case), 0) for case in cases]
            ax.bar([k + i * width for k in range(len(cases))], values, width, label=label,
                   color=colors[i % len(colors)], hatch="//" if label in native else None, edgecolor="white")
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(cases))], cases)
        ax.set_ylabel("ms per training step (lower is faster)")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="hatched: native", title_fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "speed.png", dpi=90)
        plt.close(fig)
        written.append("speed.png")
    return written + l4_report.plot(runs, out)


def write(runs: list[Run], out: Path, levels, quick: bool, mutants: Path | None = None) -> Path:
    """Write ``report.md``, ``report.json`` and the plots to ``out``. The mutation results are ``mutants``, else
    the first found of ``out/mutants.json`` and ``out/mutants/mutants.json`` (:func:`strength.find_results`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(runs, out)
    results = strength.find_results(out, mutants)
    found = config_coverage.uses(quick, levels) if {"L0", "L1"} & set(levels) else []
    (out / "report.md").write_text(markdown(runs, levels, quick, plots, results, found))
    data = {"quick": quick, "levels": list(levels), "tolerances": [t.__dict__ for t in tolerances.TABLE],
            "runs": [r.to_dict() for r in runs], "configuration coverage": config_coverage.summary(found),
            "strength": strength.summary_of(results)}
    (out / "report.json").write_text(json.dumps(data, indent=1, default=float))
    return out / "report.md"

