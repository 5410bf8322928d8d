"""Configuration coverage: which branches of each layer, loss, metric and optimizer the drawn cases reach.

A mutant that survives usually hides in a regime the cases never draw: a clipping threshold that every
case exceeds, 'same' padding that is always symmetric, ``go_backwards`` never with ``return_sequences``.
This module makes those regimes visible before a mutant finds them. Nothing here is hand-counted:

* :func:`uses` builds every L0 case's model (no backend: the core's shape rules) and every L1 optimizer,
  and lists each layer, loss, metric and optimizer the cases use, with its full config (defaults filled
  in by ``get_config``), the shape it sees and the case's data regime (input scale and offset, training
  mode, masks). For the optimizer cases that clip, the NumPy reference replays the case's steps and
  records every step's gradient norms, so a threshold's side is measured, not guessed.
* :data:`REGIMES` (in :mod:`.config_regimes`) names the branches worth reaching -- each a predicate over
  a use; :func:`coverage` counts the cases that reach each one, and the gaps are those with none.
* :func:`options` lists, per kind, the values each config option was drawn with, and the options drawn
  with one value only (a branch the cases cannot tell apart from its alternatives).

    python -m polykeras_conformance.config_coverage [--full]     # the tables, as the report prints them
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field

#: config keys that are not branches a backend takes: names, dtypes, initial weights (drawn by the core), and
#: options polykeras accepts with one value only (layers are channels_last; losses reduce over the batch)
IGNORED = ("name", "trainable", "dtype", "seed", "data_format", "reduction")


@dataclass
class Use:
    """One layer, loss, metric or optimizer as one case uses it."""

    family: str  # "layer", "loss", "metric", "optimizer"
    kind: str  # class name: "Conv2D", "CategoricalCrossentropy", "Adam"
    config: dict
    case: str
    context: dict = field(default_factory=dict)  # input_shape, training, input_scale, grad norms, ...


def _options(config: dict) -> dict:
    return {k: v for k, v in config.items()
            if k not in IGNORED and not k.endswith(("_initializer", "_constraint"))}


def _layer_uses(case: dict) -> list[Use]:
    from polykeras_conformance import cases

    model = cases.build_model(case)
    base = {"training": case["training"], "input_scale": case.get("input_scale", 1.0),
            "input_offset": case.get("input_offset", 0.0), "masked": bool(case.get("padded"))}
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Operation"):
            continue
        shape = getattr(layer, "input_shape", None)
        found.append(Use("layer", kind, _options(layer.get_config()), case["id"], {**base, "input_shape": shape,
                                                                                "trainable": layer.trainable}))
    return found


def _loss_use(case: dict) -> Use:
    from polykeras import losses

    loss = losses.get(case["loss"])
    last = case["layers"][-1]["config"].get("activation", "linear") if "layers" in case else "linear"
    return Use("loss", type(loss).__name__, _options(loss.get_config()), case["id"],
               {"activation": last, "input_scale": case.get("input_scale", 1.0), "target": case["target"]})


def _optimizer_use(config: dict) -> Use:
    from polykeras import optimizers

    optimizer = optimizers.get({k: config[k] for k in ("class_name", "config")})
    context = {"learning_rate_factor": config.get("learning_rate_factor"),
               "sample_weight": bool(config.get("sample_weight"))}
    if any(config["config"].get(k) for k in ("clipnorm", "global_clipnorm", "clipvalue")):
        context.update(gradient_norms(config))
    name = f"{config['class_name']}({', '.join(f'{k}={v}' for k, v in config['config'].items())})"
    return Use("optimizer", type(optimizer).__name__, _options(optimizer.get_config()), name, context)


def gradient_norms(config: dict) -> dict:
    """Replay an L1 case on the NumPy reference (float64) and record, before every step, the norm of
    each variable's gradient, the global norm and the largest absolute entry: which side of a clipping
    threshold the case is on is a property of its trajectory."""
    from polykeras_conformance import measure

    import numpy as np

    norms: dict[str, list] = {"variable norms": [], "global norms": [], "max abs entries": []}

    def observe(step, program, x, y):
        grads = [np.asarray(g) for g in program.value_and_grad(x, y, measure.STEP_SEED + step).weights
                 if g is not None]
        norms["variable norms"] += [float(np.linalg.norm(g)) for g in grads]
        norms["global norms"].append(float(np.sqrt(sum(np.sum(g * g) for g in grads))))
        norms["max abs entries"] += [float(np.max(np.abs(g))) for g in grads]
        norms.setdefault("min abs entries", []).extend(float(np.min(np.abs(g))) for g in grads)

    measure.optimizer_case(config, "numpy", None, "float64", observe=observe)
    return norms


def uses(quick: bool = True, levels=("L0", "L1")) -> list[Use]:
    """Every use the run's L0/L1 cases make (quick or full mode, as :mod:`.worker` draws them)."""
    from polykeras_conformance import cases

    found: list[Use] = []
    if "L0" in levels:
        n = 4 if quick else 12
        for case in cases.layer_cases(n) + cases.graph_cases(n) + cases.LOSS_CASES + cases.EXTRA_CASES \
                + cases.METRIC_CASES:
            found += _layer_uses(case)
            if case["group"] in ("Loss", "Metric") or case["loss"] != "mse":
                found.append(_loss_use(case))
            found += [Use("metric", m, {}, case["id"], {"activation": case["layers"][-1]["config"].get("activation")})
                      for m in case.get("metrics", ())]
    if "L1" in levels:
        found += [_optimizer_use(config) for config in cases.OPTIMIZER_CASES]
    return found


@dataclass
class Reached:
    """One regime and the cases that reach it."""

    family: str
    kinds: tuple[str, ...]
    name: str
    why: str
    cases: list[str]


def coverage(found: list[Use]) -> list[Reached]:
    """Each regime of :data:`config_regimes.REGIMES` whose kinds the run draws at all, with the cases
    that reach it (none: a gap)."""
    from polykeras_conformance.config_regimes import REGIMES

    drawn = {(u.family, u.kind) for u in found}
    rows = []
    for regime in REGIMES:
        if not any((regime.family, k) in drawn for k in regime.kinds):
            continue  # a kind this run does not draw (another level, or an op group)
        hits = [u.case for u in found if u.family == regime.family and u.kind in regime.kinds and regime.test(u)]
        rows.append(Reached(regime.family, regime.kinds, regime.name, regime.why, list(dict.fromkeys(hits))))
    return rows


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


def options(found: list[Use]) -> dict[tuple[str, str], dict[str, dict[str, int]]]:
    """(family, kind) -> option -> {value drawn: number of uses}."""
    table: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for u in found:
        for key, value in u.config.items():
            table[(u.family, u.kind)][key][_short(value)] += 1
    return table


def section(quick: bool = True, levels=("L0", "L1"), found: list[Use] | None = None) -> list[str]:
    """The report's "Configuration coverage" section (markdown lines); ``found``: :func:`uses`, when known."""
    if not {"L0", "L1"} & set(levels):
        return []
    found = uses(quick, levels) if found is None else found
    rows = coverage(found)
    gaps = [r for r in rows if not r.cases]
    table = options(found)
    single = [(fam, kind, key, next(iter(values))) for (fam, kind), opts in sorted(table.items())
              for key, values in sorted(opts.items()) if len(values) == 1]
    kinds = {(u.family, u.kind) for u in found}
    lines = ["", "## Configuration coverage (which branches the drawn L0/L1 cases reach)", "",
             f"Computed from the {'quick' if quick else 'full'}-mode case definitions (`cases.py`; the op cases of "
             "`op_cases.py` are judged per op and not listed here): every case's model is built and each layer, "
             "loss, metric and optimizer it uses is read back with its full config; the clipping cases are "
             "replayed on the NumPy reference to measure which side of their threshold each step's gradients "
             f"fall. {len(kinds)} kinds used; {len(rows) - len(gaps)} of {len(rows)} named regimes reached; "
             f"{len(gaps)} never drawn (the gap list below). `python -m polykeras_conformance.config_coverage` "
             "prints these tables.", "",
             "| family | kind(s) | regime | cases | e.g. | why it matters |", "|---|---|---|---|---|---|"]
    for r in rows:
        example = f"`{r.cases[0]}`" if r.cases else "**never drawn**"
        lines.append(f"| {r.family} | {', '.join(r.kinds)} | {r.name} | {len(r.cases)} | {example} | {r.why} |")
    lines += ["", "### Gaps: named regimes no case reaches", ""]
    lines += [f"- {r.family} {'/'.join(r.kinds)}: {r.name} ({r.why})" for r in gaps] or ["- none"]
    lines += ["", "### Options drawn with a single value", "",
              "Each option every use of a kind sets to the same value (often the default): the cases cannot tell "
              "its branches apart. Not every one is a branch a backend takes (an activation is judged on its own "
              "in the Activation group).", "", "| family | kind | option = the only value drawn |", "|---|---|---|"]
    by_kind = defaultdict(list)
    for fam, kind, key, value in single:
        by_kind[(fam, kind)].append(f"{key}={value}")
    lines += [f"| {fam} | {kind} | {', '.join(items)} |" for (fam, kind), items in sorted(by_kind.items())]
    return lines


def summary(found: list[Use]) -> dict:
    """Machine-readable coverage for ``report.json``: each regime with its cases, and the gaps."""
    rows = coverage(found)
    return {"regimes": [{"family": r.family, "kinds": list(r.kinds), "regime": r.name, "cases": r.cases}
                        for r in rows],
            "gaps": [f"{r.family} {'/'.join(r.kinds)}: {r.name}" for r in rows if not r.cases]}


if __name__ == "__main__":
    print("\n".join(section(quick="--full" not in sys.argv)))
