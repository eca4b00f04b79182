"""The registry of checks: small functions over the Profile, registered with a decorator and run in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from checks.finding import Finding, Severity
from checks.profile import Profile
from migrate.logs import get_logger

log = get_logger(__name__)

CheckFn = Callable[[Profile], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn
    codes: tuple[str, ...]  # the codes this check may emit (documented, listed by `describe_checks`)


REGISTRY: list[Check] = []


def check(*codes: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check; `codes` are the finding codes it can produce."""
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY.append(Check(fn.__name__, fn, codes))
        return fn
    return register


def run_checks(profile: Profile, registry: Iterable[Check] | None = None) -> tuple[Finding, ...]:
    """Run every check; a check that fails is itself reported (CHECK_ERROR), the others still run."""
    findings: list[Finding] = []
    for entry in registry if registry is not None else REGISTRY:
        try:
            findings.extend(f.with_check(entry.name) for f in entry.fn(profile))
        except Exception as exc:  # a bug in one check must not hide the others' findings
            log.error("check failed", check=entry.name, error=f"{type(exc).__name__}: {exc}")
            findings.append(Finding("CHECK_ERROR", Severity.WARNING, f"check {entry.name} failed: {exc}",
                                    "report this as a bug; the other checks ran", {}, entry.name))
    return tuple(sorted(findings, key=lambda f: (f.severity.rank, f.code)))


def all_codes() -> dict[str, str]:
    """code -> check name, for documentation and tests."""
    return {code: entry.name for entry in REGISTRY for code in entry.codes}
