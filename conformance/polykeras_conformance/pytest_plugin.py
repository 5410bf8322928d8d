"""The suite as a pytest plugin: ``pytest --polykeras-backend NAME``.

Installed with polykeras (entry point ``pytest11``), it stays inert unless
``--polykeras-backend`` is given; then pytest runs the conformance cases
(:mod:`polykeras_conformance.test_suite`) against that backend, each case a
test whose failure message names the quantity, its difference and the
tolerance. A third party can check an installed backend plugin this way
without cloning polykeras.
"""

from __future__ import annotations

from pathlib import Path


def pytest_addoption(parser):
    group = parser.getgroup("polykeras", "polykeras conformance")
    group.addoption("--polykeras-backend", action="append", default=[], metavar="NAME",
                    help="run the polykeras conformance suite against this backend (repeatable)")
    group.addoption("--polykeras-device", default=None, help="device for --polykeras-backend (default: its best)")
    group.addoption("--polykeras-dtype", action="append", default=[], choices=["float64", "float32"],
                    help="dtype(s) to check (default: both)")
    group.addoption("--polykeras-level", action="append", default=[], choices=["L0", "L1", "L2"],
                    help="level(s) to check (default: L0, L1 and L2 in quick mode)")


def pytest_configure(config):
    if config.getoption("polykeras_backend"):
        suite = str(Path(__file__).with_name("test_suite.py"))
        if suite not in config.args:
            config.args[:] = [suite]


def pytest_generate_tests(metafunc):
    if "conformance_case" not in metafunc.fixturenames:
        return
    from polykeras_conformance import suite

    config = metafunc.config
    params = suite.parameters(config.getoption("polykeras_backend"), config.getoption("polykeras_dtype"),
                              config.getoption("polykeras_level"), config.getoption("polykeras_device"))
    metafunc.parametrize("conformance_case", params, ids=[p.id for p in params])
