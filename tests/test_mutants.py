"""Mutation testing of the backends (polykeras_conformance.mutants): the curated list stays
plantable, planting never touches the real plugin files, and the suite kills a few mutants."""

import dataclasses

import numpy as np
import pytest

from polykeras_conformance import mutants, strength


def test_every_mutant_can_be_planted():
    """Each search text occurs exactly as often as its mutant says, and the result compiles: a plugin
    edited under the list makes this fail instead of the mutant silently doing nothing."""
    assert mutants.check_all() == []
    assert len(mutants.MUTANTS) >= 40
    assert {m.backend for m in mutants.MUTANTS} == set(mutants.PLUGINS)


def test_a_search_text_that_is_not_found_fails_loudly():
    rotten = dataclasses.replace(mutants.MUTANTS[0], search="this text is in no plugin")
    with pytest.raises(mutants.MutantError, match="occurs 0 times"):
        mutants.mutated_source(rotten)
    assert mutants.check_all([rotten])
    broken = dataclasses.replace(mutants.MUTANTS[0], replace="def (")
    with pytest.raises(mutants.MutantError, match="does not compile"):
        mutants.mutated_source(broken)


def test_planting_copies_the_plugin_and_leaves_the_real_file_alone(tmp_path):
    mutant = next(m for m in mutants.MUTANTS if m.id == "torch-adam-eps-inside-sqrt")
    before = mutant.source_path().read_text()
    root = mutants.apply(mutant, tmp_path)
    planted = (root / "polykeras_torch" / mutant.path).read_text()
    assert mutant.replace in planted and mutant.search not in planted
    assert mutant.source_path().read_text() == before
    # the rest of the package is there, unchanged
    assert (root / "polykeras_torch" / "losses.py").read_text() == (mutant.source_path().parent / "losses.py").read_text()


def test_the_suite_kills_a_few_mutants_at_their_level(tmp_path):
    """The CI subset (about 35 s; the whole list is `nox -s mutants`): three mutants of the torch plugin
    and two of the example plugin, each run in a worker on a temporary copy of the plugin, must fail a
    check the unmutated plugin passes, at the level and in the case group that name the bug: an epsilon
    placement (L1), and four that survived before the suite was widened, one per kind of gap -- a moving-
    statistics momentum convention (L0, the state a training step leaves), a clipping threshold that
    always fires (L1, a case below the threshold), a clip that never acts (L0, saturated probabilities)
    and a wrong metric (L0, metrics judged). The run's results file feeds the report's Strength section."""
    pytest.importorskip("torch")
    pytest.importorskip("polykeras_example")
    ids = ["torch-adam-eps-inside-sqrt", "torch-bn-momentum-torch-convention", "torch-clipnorm-always-rescales",
           "example-bce-clip-gradient-not-zeroed", "example-binary-accuracy-logit-threshold"]
    chosen = [m for m in mutants.MUTANTS if m.id in ids]
    results = mutants.run(chosen, tmp_path, timeout=300, progress=lambda *_: None)
    by_id = {r.id: r for r in results}
    for mutant in chosen:
        result = by_id[mutant.id]
        assert result.status == "killed", (mutant.id, result)
        assert result.killed_at == mutant.level and result.at_expected_level, result
        assert set(result.groups) <= set(mutant.groups), result
    text = (tmp_path / "mutants.md").read_text()
    assert "| torch | 3 | 0 | 3 | 3 | 0 | 0 | 100% |" in text and "| example | 2 | 0 | 2 | 2 | 0 | 0 | 100% |" in text
    stats = strength.summary_of(tmp_path / "mutants.json")
    assert stats["all"]["kill rate"] == 1.0 and stats["by level"]["L0"]["killed"] == 3


def test_a_survivor_is_reported_as_one(tmp_path):
    """The judge does not count a mutant as killed when the candidate's checks all pass."""
    mutant = mutants.MUTANTS[0]
    reference = ({"L1|Adam|a|w": np.ones(3)}, {"L1|Adam|a|": {"status": "ok"}})
    same = ({"L1|Adam|a|w": np.ones(3)}, {"status": {"L1|Adam|a|": {"status": "ok"}}})
    wrong = ({"L1|Adam|a|w": np.zeros(3)}, {"status": {"L1|Adam|a|": {"status": "ok"}}})
    assert mutants.judge(mutant, same, "", False, reference, set(), 1.0).status == "survived"
    killed = mutants.judge(mutant, wrong, "", False, reference, set(), 1.0)
    assert killed.status == "killed" and killed.killed_at == "L1"
    # a check that fails for the unmutated backend too does not count
    assert mutants.judge(mutant, wrong, "", False, reference, {"L1|Adam|a|w"}, 1.0).status == "survived"
    assert mutants.judge(mutant, None, "did not finish", True, reference, set(), 1.0).status == "timed out"
