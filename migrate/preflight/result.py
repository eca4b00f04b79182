"""The result of a preflight run: the profile gathered, the findings, the recommended strategy."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.preflight.findings import Finding, Severity
from migrate.preflight.profile import Profile
from migrate.preflight.strategy import Strategy

SCHEMA_VERSION = 1  # of the JSON report (docs/preflight.md); bumped only on an incompatible change


@dataclass(frozen=True)
class PreflightResult:
    profile: Profile
    findings: tuple[Finding, ...]
    strategy: Strategy
    started_at: str  # ISO 8601, UTC
    duration_s: float
    tool_version: str

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == Severity.BLOCKER)

    @property
    def ok(self) -> bool:
        return not self.blockers

    @property
    def partial(self) -> bool:
        return bool(self.profile.partial)

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)
