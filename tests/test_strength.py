"""The report's Strength section (polykeras_conformance.strength), read from a mutation run's results file."""

import json
from pathlib import Path

from polykeras_conformance import mutants, report, strength

SAMPLE = Path(__file__).resolve().parents[1] / "docs" / "conformance" / "mutants.json"


def test_the_sample_results_give_the_kill_rates_and_every_mutant():
    text = "\n".join(strength.section(SAMPLE))
    assert "## Strength (mutation testing)" in text and "Kill rate 100%" in text
    assert "| **all** | 72 | 1 | 71 | 71 | 0 | 0 | 100% |" in text
    assert "### Kill rate per level" in text and "| L1 |" in text
    assert "`torch-huber-strict-threshold` (Huber: |e| < delta instead of <= delta): equivalent (survived)" in text
    for m in mutants.MUTANTS:
        assert f"| `{m.id}` | {m.description.replace('|', chr(92) + '|')} | {m.level} |" in text
    assert "older than the list" not in text


def test_survivors_and_stale_results_are_named(tmp_path):
    data = json.loads(SAMPLE.read_text())
    data["results"][0].update(status="survived", killed_at="", killed_by="")
    gone = data["results"].pop(1)["id"]
    data["results"].append({"id": "torch-removed-since", "backend": "torch", "status": "killed"})
    path = tmp_path / "mutants.json"
    path.write_text(json.dumps(data))
    text = "\n".join(strength.section(path))
    assert f"`{data['results'][0]['id']}`" in text.split("### Survivors")[1].split("###")[0]
    assert "**survived** -- a gap in the suite" in text
    assert f"not run: `{gone}`" in text and "no longer listed: `torch-removed-since`" in text
    assert f"| `{gone}` | " in text and "| L1 | not run |" in text
    assert strength.summary_of(path)["all"]["survived"] == 1


def test_without_results_the_section_says_how_to_make_them(tmp_path):
    text = "\n".join(strength.section(None))
    assert "No mutation results found" in text and "nox -s mutants" in text and "--mutants" in text
    bad = tmp_path / "mutants.json"
    bad.write_text("{}")
    assert "could not be read" in "\n".join(strength.section(bad)) and strength.summary_of(bad) is None
    assert strength.find_results(tmp_path) == bad  # the report folder's own file comes first
    assert strength.find_results(tmp_path, tmp_path / "missing.json") is None


def test_the_report_has_both_sections(tmp_path):
    (tmp_path / "mutants.json").write_text(SAMPLE.read_text())
    text = report.write([], tmp_path, ("L1",), quick=True).read_text()
    assert "## Strength (mutation testing)" in text and "Kill rate 100%" in text
    assert "## Configuration coverage" in text and "clipnorm, a gradient below the threshold" in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["strength"]["all"]["kill rate"] == 1.0 and data["configuration coverage"]["regimes"]


def test_the_command_line_refuses_a_missing_results_file(tmp_path, capsys):
    from polykeras import cli

    argv = ["conformance", "--backends", "numpy", "--level", "L1", "--quick", "--report", str(tmp_path),
            "--mutants", str(tmp_path / "none.json")]
    assert cli.main(argv) == 2
    assert "no such file" in capsys.readouterr().err
