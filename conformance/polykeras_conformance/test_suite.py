"""Collected by the pytest plugin when ``--polykeras-backend`` is given."""

import pytest


def test_conformance(conformance_case):
    checks = conformance_case.run()
    unsupported = [c for c in checks if c.status == "unsupported"]
    if unsupported:
        pytest.xfail(f"{conformance_case.backend} does not implement this: {unsupported[0].detail}")
    failures = [c for c in checks if not c.passed]
    assert not failures, "; ".join(c.describe() for c in failures)
