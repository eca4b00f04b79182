"""The plug-in surface of preflight: checks are functions over the Profile, registered with `@check(codes...)`.

Checks live outside this package (the top-level `checks/` package holds the built-in ones) and depend on it, never the
other way round: preflight finds them through the `migrate.checks` entry-point group (pyproject.toml), imports each
entry once, and importing a module registers its checks. A module of your own is one entry point away:

    [project.entry-points."migrate.checks"]
    mine = "my_package.my_checks"

The interface, all in this package: `check` (the decorator), `Profile` (migrate.preflight.profile: every gathered
fact, None where it could not be gathered) and `Finding` with `blocker`/`warning`/`info` (migrate.preflight.findings).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Final

from migrate.logs import get_logger
from migrate.preflight.findings import Finding, Severity
from migrate.preflight.profile import Profile

log = get_logger(__name__)

ENTRY_POINT_GROUP: Final = "migrate.checks"
BUILTIN: Final = "checks"  # imported by name when the package metadata is missing (a source tree never installed)

CheckFn = Callable[[Profile], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn
    codes: tuple[str, ...]  # the codes this check may emit (documented in docs/preflight.md)


REGISTRY: list[Check] = []
_load_errors: list[Finding] = []
_loaded = False


def check(*codes: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check; `codes` are the finding codes it can produce."""
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY.append(Check(fn.__name__, fn, codes))
        return fn
    return register


def load_checks() -> tuple[Check, ...]:
    """Import every registered check module once; a module that fails to import becomes a CHECK_ERROR finding."""
    global _loaded
    if not _loaded:
        _loaded = True
        modules = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)] or [BUILTIN]
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # one broken plug-in must not hide the other checks
                log.error("check module failed to load", module=module, error=f"{type(exc).__name__}: {exc}")
                _load_errors.append(Finding("CHECK_ERROR", Severity.WARNING, f"check module {module} failed to load: "
                                            f"{exc}", "report this as a bug; the other checks ran", {}, module))
    return tuple(REGISTRY)


def run_checks(profile: Profile, registry: Iterable[Check] | None = None) -> tuple[Finding, ...]:
    """Run every check; a check that fails is itself reported (CHECK_ERROR), the others still run."""
    checks = load_checks() if registry is None else tuple(registry)
    findings: list[Finding] = list(_load_errors) if registry is None else []
    for entry in checks:
        try:
            findings.extend(f.with_check(entry.name) for f in entry.fn(profile))
        except Exception as exc:  # a bug in one check must not hide the others' findings
            log.error("check failed", check=entry.name, error=f"{type(exc).__name__}: {exc}")
            findings.append(Finding("CHECK_ERROR", Severity.WARNING, f"check {entry.name} failed: {exc}",
                                    "report this as a bug; the other checks ran", {}, entry.name))
    return tuple(sorted(findings, key=lambda f: (f.severity.rank, f.code)))


def all_codes() -> dict[str, str]:
    """code -> check name, for documentation and tests."""
    return {code: entry.name for entry in load_checks() for code in entry.codes}
