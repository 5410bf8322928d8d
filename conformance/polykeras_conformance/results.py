"""Results of the suite: one :class:`Check` per compared quantity, rolled up
into a verdict per backend, device and dtype."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Check:
    """One comparison: ``value`` (a relative difference, or a speed) against ``limit``."""

    level: str  # L0..L3
    group: str  # e.g. "Recurrent", "Adam", "mnist-mlp"
    case: str  # e.g. "LSTM#3"
    quantity: str  # e.g. "grad LSTM.recurrent_kernel"
    value: float | None
    limit: float | None
    status: str  # "pass", "fail", "error", "unsupported", "info"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "unsupported", "info")

    def describe(self) -> str:
        if self.status == "error":
            return f"{self.case}: {self.detail}"
        if self.value is None:
            return f"{self.case} {self.quantity}: {self.status}"
        if self.quantity.endswith("(points)"):
            return f"{self.case} {self.quantity}: {self.value:.1f} > {self.limit:g} ({self.detail})"
        if self.value == float("inf"):
            return f"{self.case} {self.quantity}: NaN/inf or wrong shape (reference is finite)"
        return f"{self.case} {self.quantity}, rel. diff {self.value:.1e} > {self.limit:.0e}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    """All checks of one backend on one device in one dtype."""

    backend: str
    device: str
    dtype: str
    checks: list[Check]
    version: str = ""
    error: str = ""  # the worker crashed or timed out
    seconds: float = 0.0
    losses: dict[str, list[float]] | None = None  # L2 per-step training losses, by workload
    native: bool = False  # one of L3's native yardsticks (plain PyTorch, plain JAX, Keras fit), not a backend
    replicas: int = 0  # L4: a data-parallel run of this many replicas, judged against the backend's 1-device run
    baseline_losses: dict[str, list[float]] | None = None  # L4: the 1-device run's per-step losses, by workload
    skipped: str = ""  # why this run was not started (``--skip``): neither passed nor failed

    @property
    def label(self) -> str:
        if self.native:
            from polykeras_conformance.native import SIDES

            return f"{SIDES[self.backend].label} (native) / {self.device} / {self.dtype}"
        if self.replicas:
            return f"{self.backend} / {self.device} / {self.dtype} / {self.replicas} replicas"
        return f"{self.backend} / {self.device} / {self.dtype}"

    def failures(self, level: str | None = None) -> list[Check]:
        return [c for c in self.checks if not c.passed and (level is None or c.level == level)]

    @property
    def passed(self) -> bool:
        return not self.error and not self.failures()

    def worst(self, level: str | None = None) -> Check | None:
        """The failing check furthest beyond its limit (errors first)."""
        bad = self.failures(level)
        if not bad:
            return None
        errors = [c for c in bad if c.status == "error"]
        if errors:
            return errors[0]
        return max(bad, key=lambda c: (c.value or 0) / (c.limit or 1))

    @property
    def unsupported(self) -> bool:
        """Every check says the backend does not implement what was asked (L4: no distribution)."""
        return not self.error and bool(self.checks) and all(c.status == "unsupported" for c in self.checks)

    def verdict(self, level: str | None = None) -> str:
        if self.skipped:
            return f"not run ({self.skipped})"
        if self.error:
            return f"FAIL: {self.error}"
        if self.unsupported:
            return f"unsupported: {self.checks[0].detail}"
        worst = self.worst(level)
        return "PASS" if worst is None else f"FAIL: {worst.describe()}"

    def to_dict(self) -> dict:
        return {"backend": self.backend, "device": self.device, "dtype": self.dtype, "version": self.version,
                "error": self.error, "skipped": self.skipped, "seconds": self.seconds,
                "native": self.native, "replicas": self.replicas, "baseline_losses": self.baseline_losses or {},
                "passed": self.passed, "verdict": self.verdict(),
                "losses": self.losses or {}, "checks": [c.to_dict() for c in self.checks]}
