"""nox sessions: one test session per backend, each installing only its extra.

    nox -s "tests(backend='numpy')"
    nox -s tests            # every backend listed below

Torch is pinned through constraints.txt (a CPU wheel; unpinned it pulls CUDA).
"""

import os

import nox

nox.options.reuse_existing_virtualenvs = True

#: backend name -> pip extras it needs (besides the test extra). Backends
#: whose plugin does not exist yet are simply not listed.
BACKENDS = {"numpy": []}

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "shared", "datasets")


def _install(session, extras):
    spec = ".[" + ",".join(["test", *extras]) + "]"
    session.install("-e", spec, "-c", "constraints.txt")


@nox.session(python="3.11")
@nox.parametrize("backend", list(BACKENDS))
def tests(session, backend):
    """The test suite with POLYKERAS_BACKEND=<backend> (seed programs run on it)."""
    _install(session, BACKENDS[backend])
    env = {"POLYKERAS_BACKEND": backend}
    if os.path.isdir(DATA_DIR) and "POLYKERAS_DATA_DIR" not in os.environ:
        env["POLYKERAS_DATA_DIR"] = os.path.abspath(DATA_DIR)
    session.run("pytest", *session.posargs, env=env)


@nox.session(python="3.11")
def bench(session):
    """The speed benchmarks (tables printed, nothing asserted)."""
    _install(session, [])
    session.run("python", "benchmarks/numpy_mlp.py", *session.posargs)
