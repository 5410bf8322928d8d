"""``compile(backend="auto")`` / ``POLYKERAS_BACKEND=auto``: the fastest installed backend for *this*
model, chosen by a short timed probe on the real batch shape and kept on disk.

**Candidates.** The installed backends whose :class:`~polykeras.backends.BackendInfo` says
``auto_candidate`` (numpy, torch, jax and third-party backends by default), or exactly those that
``POLYKERAS_AUTO_CANDIDATES`` names (comma-separated; ``all``: every installed backend). The Keras
backends are *not* candidates unless named: each runs in a worker process that imports Keras and its
framework before its first step, seconds that the in-process backends' whole probe does not take
(README, "Choosing a backend"); name them (``POLYKERAS_AUTO_CANDIDATES=torch,jax,keras-tensorflow``)
when a model is long enough to repay that. A candidate that refuses the model -- no such dtype or
device, a layer kind, graph or training feature or metric it lacks, ``compile`` or its first step
raising ``NotImplementedError`` -- is skipped, and its reason shown; one that fails otherwise is
skipped with its error.

**Timing** (in :mod:`polykeras.steps_per_execution`'s style). Each candidate compiles the model from a
copy of its current weights (the model itself is untouched) and runs :data:`WARMUP` steps on the
call's first batch untimed (the first compiles), then steps synced one by one for
:data:`WINDOW_SECONDS`, which settle it (torch's first tens of steps run several times slower than
its later ones) and size its windows: as many steps as fit in ``WINDOW_SECONDS``, within
:data:`MIN_WINDOW_STEPS`-:data:`MAX_WINDOW_STEPS` (a step is only known done after a sync: jax
dispatches asynchronously). Then :data:`ROUNDS` rounds, interleaved across the candidates against
drift: each a window of steps between two syncs (``program.results()``). A candidate's ms/step is
its best window. After the first round, a candidate :data:`SLOWER` times slower than the fastest stops (it cannot win
within noise). Train steps are timed when the model is compiled for training, predict steps otherwise.

**What it changes.** Only which backend runs: the probe uses fixed step seeds and copies of the
weights, so the data order, initial weights and dropout of the fit that follows are those of naming the
chosen backend directly, in the compiled dtype and parity mode. Backends agree within float tolerance
(the conformance suite), so ``auto`` changes results no more than that.

**Reproducible.** The result is stored by :mod:`polykeras.probe_cache` under a key of the spec, batch
shape, dtype, device and candidates' framework versions; later runs read it and choose the same
backend without probing. The choice and each candidate's ms/step are printed once per process (on
stderr); ``polykeras backends --probe MODEL_FILE`` shows the same table.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from polykeras import probe_cache

AUTO = "auto"
WARMUP = 2  # untimed steps per candidate (the first compiles), then the synced steps that size the windows
ROUNDS = 3  # timed windows per candidate, interleaved across candidates
MIN_WINDOW_STEPS = 2
WINDOW_SECONDS = 0.1  # a timed window's length, in steps as long as the synced steps before it took...
MAX_WINDOW_STEPS = 50  # ...at most this many
SLOWER = 2.0  # after the first round, candidates this many times slower than the fastest stop
PROBE_VERSION = 2  # how windows are timed (part of the cache key): 2 sizes them by synced steps

# the clock the probe reads (tests replace it to inject timings)
clock: Callable[[], float] = time.perf_counter

_printed: set[str] = set()  # the probe keys whose table this process printed


@dataclass
class Candidate:
    """One backend's line in a probe: ``status`` is ``chosen``, ``measured``, ``stopped`` (slower than
    :data:`SLOWER` times the fastest after one round), ``refused`` or ``failed`` (with ``reason``)."""

    name: str
    status: str
    ms_per_step: float | None = None
    steps: int = 0  # timed steps
    device: str | None = None
    version: str | None = None
    reason: str = ""


@dataclass
class Choice:
    """The outcome of a probe: the backend chosen, every candidate's line, what was timed."""

    name: str
    candidates: list[Candidate]
    timed: str  # e.g. "train steps on x (32, 784) float32"
    cached: bool = False
    path: Path | None = field(default=None, compare=False)
    seconds: float | None = None  # the probe's wall time, compilations included

    def table(self) -> str:
        """The candidates, fastest first, with the choice's ms/step ratio to each."""
        rows = [("backend", "device", "ms/step", "vs chosen", "steps", "status")]
        best = next(c.ms_per_step for c in self.candidates if c.name == self.name)
        order = sorted(self.candidates, key=lambda c: (c.ms_per_step is None, c.ms_per_step or 0.0))
        for c in order:
            ms = "-" if c.ms_per_step is None else f"{c.ms_per_step:.3f}"
            ratio = "-" if c.ms_per_step is None or not best else f"{c.ms_per_step / best:.2f}x"
            status = c.status + (f": {c.reason}" if c.reason else "")
            rows.append((c.name, c.device or "-", ms, ratio, str(c.steps) if c.ms_per_step else "-", status))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
        took = "" if self.seconds is None else f" of {self.seconds:.1f} s"
        source = f"cached probe{took} {self.path}" if self.cached else f"probe{took}"
        return "\n".join([f"backend 'auto': {self.name} ({source}; {self.timed})", *lines])

    def record(self) -> dict:
        return {"name": self.name, "timed": self.timed, "seconds": self.seconds,
                "candidates": [asdict(c) for c in self.candidates]}

    @classmethod
    def from_record(cls, record: dict, path: Path | None) -> "Choice":
        return cls(record["name"], [Candidate(**c) for c in record["candidates"]], record["timed"], True, path,
                   record.get("seconds"))


def candidate_infos(names: str | None = None) -> list:
    """The backends to probe: those ``names`` (default ``POLYKERAS_AUTO_CANDIDATES``) lists, comma-
    separated (``all``: every installed one), or every installed ``auto_candidate`` backend."""
    from polykeras.backends import BackendNotFoundError, backend_infos, find_backend

    names = os.environ.get("POLYKERAS_AUTO_CANDIDATES", "") if names is None else names
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    infos = backend_infos().values()
    if not wanted:
        chosen = [i for i in infos if i.installed and i.auto_candidate]
    elif wanted == ["all"]:
        chosen = [i for i in infos if i.installed]
    else:
        if AUTO in wanted or "all" in wanted:
            raise ValueError(f"backend 'auto' candidates must be backend names (or 'all' alone), got {names!r}")
        chosen = []
        for name in wanted:
            info = find_backend(name)  # an unknown name: BackendNotFoundError listing the installed ones
            if not info.installed:
                raise BackendNotFoundError(f"backend 'auto' candidate {name!r} is not installed: "
                                           f"{info.install_hint(note=True)}")
            if info not in chosen:
                chosen.append(info)
    if not chosen:
        raise BackendNotFoundError("backend 'auto' has no candidate: no installed backend offers itself "
                                   "(BackendInfo.auto_candidate); name some in POLYKERAS_AUTO_CANDIDATES")
    return chosen


def choose(model, training, batch, *, device: str | None, dtype: str, parity: bool, names: str | None = None,
           fresh: bool = False, announce: bool = True) -> Choice:
    """The fastest candidate (:func:`candidate_infos` of ``names``) for ``model`` compiled with
    ``training`` (a :class:`~polykeras.spec.TrainingSpec`; ``None``: predict steps) on ``batch``
    (``(x, y, sample_weight)``, as a program takes them), read from the cache unless ``fresh``."""
    infos = candidate_infos(names)
    spec = model._spec()
    timed = ("train" if training is not None else "predict") + " steps on " + _shapes(batch)
    facts = {"spec": _without_names(spec.to_dict()), "training": None if training is None else training.to_dict(), "timed": timed,
             "dtype": dtype, "device": device, "parity": parity,
             "candidates": [(i.name, _version(i)) for i in infos],
             "probe": [PROBE_VERSION, WARMUP, ROUNDS, MIN_WINDOW_STEPS, WINDOW_SECONDS, MAX_WINDOW_STEPS, SLOWER]}
    key = probe_cache.probe_key(facts)
    record = None if fresh else probe_cache.load(key)
    if record is not None:
        choice = Choice.from_record(record, probe_cache.path_of(key))
    else:
        start = time.perf_counter()
        candidates = probe(model, infos, training, batch, device=device, dtype=dtype, parity=parity)
        seconds = time.perf_counter() - start
        usable = [c for c in candidates if c.status == "measured"]
        if not usable:
            lines = "; ".join(f"{c.name}: {c.status}: {c.reason}" for c in candidates)
            raise NotImplementedError(f"backend 'auto': no candidate runs model {spec.name!r} ({lines})")
        best = min(usable, key=lambda c: c.ms_per_step)  # ties: the first declared
        best.status = "chosen"
        choice = Choice(best.name, candidates, timed, seconds=round(seconds, 3))
        choice.path = probe_cache.store(key, choice.record())
    if announce and key not in _printed:
        _printed.add(key)
        print(choice.table(), file=sys.stderr)
    return choice


def probe(model, infos, training, batch, *, device: str | None, dtype: str, parity: bool) -> list[Candidate]:
    """Each of ``infos`` timed on ``model`` (see the module docstring), in their order."""
    candidates, runs = [], {}
    for info in infos:
        line = Candidate(info.name, "measured", version=_version(info))
        candidates.append(line)
        try:
            run = _prepare(model, info, training, batch, device, dtype, parity, line)
        except (NotImplementedError, ValueError, LookupError) as exc:  # what a backend says it cannot do
            line.status, line.reason = "refused", _one_line(exc)
            continue
        except Exception as exc:  # a broken backend must not break the choice among the others
            line.status, line.reason = "failed", f"{type(exc).__name__}: {_one_line(exc)}"
            continue
        runs[info.name] = run
    best: dict[str, float] = {}
    for rounds in range(ROUNDS):
        for line in candidates:
            if line.name not in runs:
                continue
            try:
                seconds, steps = _window(*runs[line.name])
            except Exception as exc:
                line.status, line.reason = "failed", f"{type(exc).__name__}: {_one_line(exc)}"
                del runs[line.name]
                continue
            line.steps += steps
            best[line.name] = min(best.get(line.name, seconds), seconds)
            line.ms_per_step = 1000 * best[line.name]
        if rounds == 0 and best:
            fastest = min(best[n] for n in runs)
            for line in candidates:
                if line.name in runs and best[line.name] > SLOWER * fastest:
                    line.status = "stopped"
                    line.reason = f"over {SLOWER:g}x the fastest after one round"
                    del runs[line.name]
    return candidates


def _prepare(model, info, training, batch, device, dtype, parity, line: Candidate):
    """A compiled, warmed-up ``(step, sync)`` pair of ``info``'s backend; raises when it refuses."""
    from polykeras.backends import get_backend
    from polykeras.models.training import _check_metrics

    if dtype not in info.dtypes:
        raise ValueError(f"no {dtype} (it has {', '.join(info.dtypes)})")
    spec = model._spec()
    missing = sorted(k for k in set(spec.kinds) if info.layer_kinds and k not in info.layer_kinds)
    if missing:
        raise NotImplementedError(f"does not implement layer kind(s) {', '.join(missing)}")
    backend = get_backend(info.name, device, dtype)
    line.device = backend.device
    model._check_supported(backend)
    x, y, w = batch
    if training is not None:
        _check_metrics(backend, training)
        if w is not None and "sample_weight" not in backend.training_features:
            raise NotImplementedError("no sample weights")
    weights = [np.array(a, dtype=backend.dtype) for a in model._host_weights()]
    program = backend.compile(spec, weights, training, parity=parity)
    if training is None:
        def step(i):
            program.predict_step(x)

        def sync():
            return None
    else:
        kwargs = {} if w is None else {"sample_weight": w}

        def step(i):
            program.train_step(x, y, i, **kwargs)

        sync = program.results
    for i in range(WARMUP):
        step(i)
    sync()
    return step, sync, _window_steps(step, sync)


def _window_steps(step, sync) -> int:
    """The steps of a timed window: from an untimed run of steps, each synced (a backend that dispatches
    asynchronously, as jax does, returns from a step before it is done, so an unsynced clock would
    say nothing of how long steps take), for at least :data:`WINDOW_SECONDS`. It also lets the
    first steps settle: torch's first tens of steps run several times slower than its later ones."""
    start, steps = clock(), 0
    while steps < MIN_WINDOW_STEPS or (clock() - start < WINDOW_SECONDS and steps < MAX_WINDOW_STEPS):
        step(WARMUP + steps)
        sync()
        steps += 1
    per_step = (clock() - start) / steps
    if per_step <= 0:
        return MAX_WINDOW_STEPS
    return max(MIN_WINDOW_STEPS, min(MAX_WINDOW_STEPS, math.ceil(WINDOW_SECONDS / per_step)))


def _window(step, sync, steps: int) -> tuple[float, int]:
    """Seconds per step of one timed window of ``steps`` steps (synced at its ends only), and its steps."""
    sync()
    start = clock()
    for i in range(steps):
        step(WARMUP + i)
    sync()
    return (clock() - start) / steps, steps


def _without_names(spec: dict):
    """``spec`` (its ``to_dict()``) with the model's, inputs' and layers' names replaced by their
    positions: Keras numbers them per process (``dense_3``), and the same model is the same probe."""
    names = [spec.get("name")] + [i["name"] for i in spec.get("inputs", [])] + [n["name"] for n in spec["layers"]]
    tokens = {name: f"#{i}" for i, name in enumerate(names)}

    def rename(value):
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rename(v) for v in value]
        if isinstance(value, str):
            head, sep, tail = value.partition(":")
            return tokens[head] + sep + tail if head in tokens else value
        return value

    return rename(spec)


def _version(info) -> str | None:
    try:
        return info.framework_version()
    except Exception as exc:  # a broken framework: the probe says why
        return f"unknown ({type(exc).__name__})"


def _shapes(batch) -> str:
    names = ("x", "y", "sample_weight")
    parts = [f"{n} {_leaf_shapes(a)}" for n, a in zip(names, batch) if a is not None]
    return ", ".join(parts)


def _leaf_shapes(value) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join("-" if v is None else _leaf_shapes(v) for v in value) + ")"
    return f"{tuple(np.shape(value))} {np.asarray(value).dtype}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
