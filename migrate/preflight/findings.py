"""What a check returns: a finding with a stable code, a severity, the evidence and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    BLOCKER = "blocker"  # the migration will fail or lose data unless this is fixed first
    WARNING = "warning"  # works, but something changes or needs a decision
    INFO = "info"  # a fact worth knowing before the cutover

    @property
    def rank(self) -> int:
        return {"blocker": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    code: str  # stable, documented (docs/preflight.md); scripts match on it
    severity: Severity
    message: str  # one line
    remediation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # numbers, versions, example keys (display form)
    check: str = ""  # the check function that produced it

    def with_check(self, name: str) -> Finding:
        return Finding(self.code, self.severity, self.message, self.remediation, self.evidence, name)


def blocker(code: str, message: str, remediation: str = "", **evidence: Any) -> Finding:
    return Finding(code, Severity.BLOCKER, message, remediation, evidence)


def warning(code: str, message: str, remediation: str = "", **evidence: Any) -> Finding:
    return Finding(code, Severity.WARNING, message, remediation, evidence)


def info(code: str, message: str, remediation: str = "", **evidence: Any) -> Finding:
    return Finding(code, Severity.INFO, message, remediation, evidence)
