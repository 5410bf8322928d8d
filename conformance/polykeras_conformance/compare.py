"""Comparing a backend's measurements with the reference's, check by check."""

from __future__ import annotations

import numpy as np

from polykeras_conformance import tolerances
from polykeras_conformance.results import Check


def rel_diff(a, b) -> float:
    """``|a - b| / |b|`` over the whole array (Frobenius norms); NaN/inf give inf."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0 if np.array_equal(a, b, equal_nan=True) else float("inf")
    scale = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (scale if scale > 0 else 1.0))


def per_step_rel_diff(a, b) -> float:
    """The largest relative difference of any single step's loss."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _split(key: str) -> tuple[str, str, str, str]:
    level, group, case, quantity = key.split("|", 3)
    return level, group, case, quantity


def compare(reference: tuple[dict, dict], candidate: tuple[dict, dict], dtype: str, quick: bool = True,
            exact: dict | None = None) -> list[Check]:
    """Checks for every case the reference measured. ``reference`` and
    ``candidate`` are ``(arrays, status)`` as written by the worker; ``quick``
    runs only report test accuracy (after tens of steps it is too noisy to
    judge). ``exact``, the float64 reference's arrays, calibrates float32
    training checks (see :func:`_trajectory_check`)."""
    ref_arrays, ref_status = reference
    arrays, status = candidate
    checks: list[Check] = []
    by_case: dict[str, list[str]] = {}
    for key in ref_arrays:
        level, group, case, _ = _split(key)
        by_case.setdefault(f"{level}|{group}|{case}|", []).append(key)
    for case_key, state in ref_status.items():
        level, group, case, _ = _split(case_key)
        mine = status.get(case_key, {"status": "error", "detail": "not measured"})
        if state["status"] != "ok":
            checks.append(Check(level, group, case, "-", None, None, "info",
                                f"the reference could not run this case: {state.get('detail', '')}"))
            continue
        if mine["status"] != "ok":
            checks.append(Check(level, group, case, "-", None, None, mine["status"], mine.get("detail", "")))
            continue
        for key in by_case.get(case_key, []):
            quantity = _split(key)[3]
            if level == "L2" and dtype == "float32" and exact is not None and key in exact \
                    and key in arrays and not quantity.startswith("test accuracy"):
                checks.append(_trajectory_check(group, case, quantity, arrays[key], ref_arrays[key], exact[key]))
            else:
                checks.append(_check(level, group, case, quantity, arrays.get(key), ref_arrays[key], dtype, quick))
    return checks


def _check(level, group, case, quantity, value, reference, dtype, quick) -> Check:
    if value is None:
        return Check(level, group, case, quantity, None, None, "error", f"{quantity} was not measured")
    if level == "L3":
        return Check(level, group, case, quantity, float(value), None, "info")
    if level == "L2" and quantity == "test accuracy":
        points = abs(float(value) - float(reference)) * 100
        detail = f"{float(value):.4f} vs reference {float(reference):.4f}"
        if quick:
            return Check(level, group, case, "test accuracy (points)", points, None, "info", detail)
        tol = tolerances.limit("L2", dtype, "test accuracy (points)").limit
        return Check(level, group, case, "test accuracy (points)", points, tol, "pass" if points <= tol else "fail",
                     detail)
    if level == "L2" and quantity == "losses":
        tol = tolerances.limit("L2", dtype, "per-step loss").limit
        diff = per_step_rel_diff(value, reference)
        return Check(level, group, case, "per-step loss", diff, tol, "pass" if diff <= tol else "fail")
    if level == "L2":
        tol = tolerances.limit("L2", dtype, "final weights").limit
    else:
        tol = tolerances.limit(level, dtype).limit
    diff = rel_diff(value, reference)
    if level == "L0" and diff > tol:
        zero = tolerances.limit("L0", dtype, "zero to rounding").limit
        norms = (float(np.linalg.norm(np.asarray(value, np.float64))), float(np.linalg.norm(reference)))
        if max(norms) <= zero and np.all(np.isfinite(value)):
            return Check(level, group, case, quantity, 0.0, tol, "pass",
                         f"zero to rounding: norms {norms[0]:.1e} and {norms[1]:.1e} <= {zero:.0e}")
    return Check(level, group, case, quantity, diff, tol, "pass" if diff <= tol else "fail")


def _trajectory_check(group, case, quantity, value, reference32, exact) -> Check:
    """A float32 training quantity against the float64 reference, with a limit
    scaled by how far the float32 reference itself strays from it: where
    training is chaotic in float32, any float32 run strays as far."""
    per_step = quantity == "losses"
    diff = per_step_rel_diff if per_step else rel_diff
    name = "per-step loss" if per_step else quantity
    own = diff(reference32, exact)
    floor = tolerances.limit("L2", "float32", "per-step loss" if per_step else "final weights").limit
    tol = max(floor, tolerances.limit("L2", "float32", "drift factor").limit * own)
    value = diff(value, exact)
    detail = f"vs float64 reference; the float32 reference is {own:.1e} from it"
    if value > tol:
        return Check("L2", group, case, name, value, tol, "fail", detail)
    if own > tolerances.limit("L2", "float32", "chaotic above").limit:
        return Check("L2", group, case, name, value, tol, "info", detail + " (chaotic in float32: reported, not judged)")
    return Check("L2", group, case, name, value, tol, "pass", detail)
