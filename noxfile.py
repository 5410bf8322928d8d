"""nox sessions: tests per backend (each installing only its extra), the
conformance suite, its full report, and the benchmarks.

    nox -s "tests(backend='torch')"     # the suite with POLYKERAS_BACKEND=torch
    nox -s slow                         # the tests marked slow (deselected by default), every backend
    nox -s conformance                  # quick conformance of every installed backend
    nox -s report                       # the full report (whole epochs) into docs/conformance/
    nox -s mutants                      # mutation testing: plant each curated porting mistake, run the suite
    nox -l                              # everything available

Torch is pinned through constraints.txt (a CPU wheel here; unpinned it pulls CUDA).
"""

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

#: backend name -> the pip extras it needs besides the test extra.
BACKENDS = {"numpy": [], "torch": ["torch"], "jax": ["jax"], "keras-jax": ["keras", "jax"],
            "keras-torch": ["keras", "torch"], "keras-tensorflow": ["tensorflow"]}
ALL = sorted({extra for extras in BACKENDS.values() for extra in extras})

DATA_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "shared", "datasets"))


def _install(session, extras):
    """polykeras with the test extra and ``extras``, plus the example third-party plugin
    (tests/test_example_backend.py checks it through its entry point)."""
    session.install("-e", ".[" + ",".join(["test", "conformance", *extras]) + "]", "-c", "constraints.txt")
    # --no-deps: its one dependency, polykeras, is the editable install above (pip
    # would otherwise look for polykeras on the package index).
    session.install("--no-deps", "./examples/polykeras-example-backend")


def _env(**extra):
    env = dict(extra)
    if "POLYKERAS_DATA_DIR" not in os.environ and os.path.isdir(DATA_DIR):
        env["POLYKERAS_DATA_DIR"] = DATA_DIR
    return env


@nox.session(python="3.11")
@nox.parametrize("backend", list(BACKENDS))
def tests(session, backend):
    """The test suite with POLYKERAS_BACKEND=<backend>: the seed programs run on it."""
    _install(session, BACKENDS[backend])
    session.run("pytest", *session.posargs, env=_env(POLYKERAS_BACKEND=backend))


@nox.session(python="3.11")
def slow(session):
    """The tests marked ``slow``, which the default run deselects: 50-step trajectories, every Keras
    layer sweep, 10,000-file fuzzing, SIGKILLs, data-parallel runs (about half an hour on 2 cores)."""
    _install(session, ALL)
    session.run("pytest", "-m", "slow", *session.posargs, env=_env())


@nox.session(python="3.11")
def conformance(session):
    """Quick conformance (tens of steps) over every installed backend, as .ci/run runs it (keep the two in
    sync; the Keras divergences listed as known failures are explained there). ``nox -s conformance --
    --backends jax`` runs one."""
    _install(session, ALL)
    args = session.posargs or ["--jobs", "2",
                               "--backends", "numpy,torch,jax,example,keras-jax,keras-torch,keras-tensorflow,keras-numpy",
                               "--known-failures", "keras-jax/float64,keras-torch/float64,keras-tensorflow,keras-numpy"]
    session.run("polykeras", "conformance", "--quick", "--report", "out/conformance", *args, env=_env())


@nox.session(python="3.11")
def report(session):
    """The full conformance report (whole epochs), written to docs/conformance/."""
    _install(session, ALL)
    session.run("polykeras", "conformance", "--report", "docs/conformance", *session.posargs, env=_env())


@nox.session(python="3.11")
def mutants(session):
    """Mutation testing of the backends: each mutant of the curated list
    (polykeras_conformance.mutants.MUTANTS) planted in a temporary copy of its plugin, the quick
    suite run on it; kill rates in out/mutants/mutants.md (docs/conformance/mutants.md explains the
    survivors). ``nox -s mutants -- --backends torch`` runs one backend's."""
    _install(session, ["torch", "jax"])
    session.run("python", "-m", "polykeras_conformance.mutants", "--out", "out/mutants", *session.posargs, env=_env())


@nox.session(python="3.11")
def bench(session):
    """The speed benchmarks: tables printed, nothing asserted."""
    _install(session, ALL)
    for script in sorted(os.listdir("benchmarks")):
        if script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs, env=_env())
