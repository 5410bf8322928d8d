"""The report's "Strength" section: how many planted porting mistakes the suite catches.

It reads the results file a mutation run writes (``mutants.json``, :mod:`.mutants`; ``nox -s mutants``
writes ``out/mutants/mutants.json``) and lists the curated mutants with their verdicts, the kill rate per
backend and per level, and every survivor with its status and, for an equivalent mutant, why it computes
the same function. Without a results file the section says how to make one: a mutation run takes about
ten minutes on two cores, too long to start from every report.
"""

from __future__ import annotations

import json
from pathlib import Path

from polykeras_conformance import mutants as _mutants

#: where the report looks when ``--mutants`` is not given, after ``<report folder>/mutants.json``
DEFAULT_RESULTS = Path("out") / "mutants" / "mutants.json"

HOW_TO = ("`nox -s mutants` (or `python -m polykeras_conformance.mutants --out out/mutants`; about 10 minutes "
          "on 2 cores) writes `out/mutants/mutants.json`; `polykeras conformance --mutants out/mutants/mutants.json` "
          "(or a `mutants.json` in the report folder) puts its verdicts here.")


def find_results(report_dir: Path | None, explicit: Path | None = None) -> Path | None:
    """The mutation results to report: ``explicit``, else ``<report_dir>/mutants.json``, else
    ``out/mutants/mutants.json`` under the working directory or the repository; None when none exists."""
    if explicit is not None:
        return Path(explicit) if Path(explicit).is_file() else None
    candidates = ([Path(report_dir) / "mutants.json"] if report_dir is not None else []) + [
        DEFAULT_RESULTS, _mutants.REPO / DEFAULT_RESULTS]
    return next((p for p in candidates if p.is_file()), None)


def load(path: Path) -> dict:
    """A results file, checked enough to report from: its ``results`` rows carry id, backend and status."""
    data = json.loads(Path(path).read_text())
    rows = data.get("results")
    if not isinstance(rows, list) or not all({"id", "backend", "status"} <= set(r) for r in rows):
        raise ValueError(f"{path} is not a mutation-run results file (no 'results' rows with id, backend, status); "
                         f"write one with `python -m polykeras_conformance.mutants --out DIR`")
    return data


def summary_of(path: Path | None) -> dict | None:
    """:func:`summary` of the results file at ``path``; None when there is none or it cannot be read."""
    try:
        return summary(load(path)) if path is not None else None
    except (OSError, ValueError):
        return None


def _rate(rows: list[dict]) -> dict:
    judged = [r for r in rows if not r.get("equivalent")]
    killed = [r for r in judged if r["status"] == "killed"]
    return {"mutants": len(rows), "equivalent": len(rows) - len(judged), "killed": len(killed),
            "at the expected level": sum(bool(r.get("at_expected_level")) for r in killed),
            "survived": sum(r["status"] == "survived" for r in judged),
            "timed out": sum(r["status"] == "timed out" for r in judged),
            "kill rate": round(len(killed) / len(judged), 3) if judged else None}


def summary(data: dict) -> dict:
    """Kill rates over the non-equivalent mutants: all, per backend, per expected level; the survivors; the
    mutants of today's list the file has no verdict for (``not run``) and verdicts for mutants since removed."""
    rows = data["results"]
    listed = {m.id for m in _mutants.MUTANTS}
    return {"all": _rate(rows),
            "by backend": {b: _rate([r for r in rows if r["backend"] == b])
                           for b in sorted({r["backend"] for r in rows})},
            "by level": {lv: _rate([r for r in rows if r.get("expected_level") == lv]) for lv in _mutants.LEVEL_ORDER
                         if any(r.get("expected_level") == lv for r in rows)},
            "survivors": [r["id"] for r in rows if r["status"] != "killed"],
            "not run": sorted(listed - {r["id"] for r in rows}),
            "no longer listed": sorted({r["id"] for r in rows} - listed)}


def _table(rows: dict[str, dict]) -> list[str]:
    columns = ["mutants", "equivalent", "killed", "at the expected level", "survived", "timed out"]
    lines = ["| | " + " | ".join(columns) + " | kill rate |", "|---" * (len(columns) + 2) + "|"]
    for name, row in rows.items():
        rate = "-" if row["kill rate"] is None else f"{100 * row['kill rate']:.0f}%"
        lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in columns) + f" | {rate} |")
    return lines


def section(path: Path | None) -> list[str]:
    """The report's "Strength" section (markdown lines) from the results file at ``path`` (None: none found)."""
    lines = ["", "## Strength (mutation testing)", "",
             f"A mutant is one realistic porting mistake planted in a copy of a backend plugin (the curated list "
             f"`MUTANTS` in `polykeras_conformance/mutants.py`: {len(_mutants.MUTANTS)} mutants of the "
             f"{', '.join(_mutants.PLUGINS)} plugins). The suite must fail every mutant that changes what the backend "
             "computes, at the level that names the mistake; an equivalent mutant (the same function, written "
             "differently) is left out of the kill rate. `docs/conformance/mutants.md` explains the list and the "
             "cases added for the mutants that once survived."]
    if path is None:
        return lines + ["", f"**No mutation results found.** {HOW_TO}"]
    try:
        data = load(path)
    except (OSError, ValueError) as exc:
        return lines + ["", f"**The mutation results could not be read**: {exc}. {HOW_TO}"]
    stats = summary(data)
    when = f", run {data['date']}" if data.get("date") else ""
    minutes = f"{data['seconds'] / 60:.1f} min" if data.get("seconds") is not None else "time not recorded"
    lines += ["", f"From `{path}`{when}: {len(data['results'])} mutants, {minutes}, scope "
                  f"'{data.get('scope', '?')}' (quick mode, float64). Kill rate {_percent(stats['all'])} "
                  f"({stats['all']['killed']} of {stats['all']['mutants'] - stats['all']['equivalent']} "
                  "non-equivalent mutants).", "", "### Kill rate per backend", "",
              *_table({**stats["by backend"], "**all**": stats["all"]}), "",
              "### Kill rate per level (the level expected to kill each mutant)", "", *_table(stats["by level"])]
    if stats["not run"] or stats["no longer listed"]:
        lines += ["", "**The results are older than the list**: "
                  + "; ".join(part for part in [
                      f"not run: {', '.join(f'`{i}`' for i in stats['not run'])}" if stats["not run"] else "",
                      f"no longer listed: {', '.join(f'`{i}`' for i in stats['no longer listed'])}"
                      if stats["no longer listed"] else ""] if part) + f". {HOW_TO}"]
    lines += ["", "### Survivors", ""]
    current = {m.id: m for m in _mutants.MUTANTS}
    survivors = [r for r in data["results"] if r["status"] != "killed"]
    for r in survivors:
        equivalent = current[r["id"]].equivalent if r["id"] in current else r.get("equivalent", "")
        status = f"equivalent ({r['status']})" if equivalent else f"**{r['status']}**"
        reason = f": {equivalent}" if equivalent else " -- a gap in the suite"
        lines.append(f"- `{r['id']}` ({r.get('description', '')}): {status}{reason}")
    if not survivors:
        lines.append("- none")
    lines += ["", "### The mutants", "", "| mutant | the mistake | expected | verdict | killed at | by |",
              "|---|---|---|---|---|---|"]
    by_id = {r["id"]: r for r in data["results"]}
    for m in _mutants.MUTANTS:
        r = by_id.get(m.id)
        if r is None:
            lines.append(f"| `{m.id}` | {_cell(m.description)} | {m.level} | not run | | |")
            continue
        verdict = f"equivalent ({r['status']})" if m.equivalent else r["status"]
        by = r.get("killed_by") or ""
        by = by if len(by) <= 90 else by[:87] + "..."
        lines.append(f"| `{m.id}` | {_cell(m.description)} | {m.level} | {verdict} | {r.get('killed_at', '')} | "
                     f"{_cell(by)} |")
    return lines


def _percent(row: dict) -> str:
    return "-" if row["kill rate"] is None else f"{100 * row['kill rate']:.0f}%"


def _cell(text: str) -> str:
    """``text`` safe in a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
