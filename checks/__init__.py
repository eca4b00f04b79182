"""Preflight checks: small functions over a gathered Profile, registered with `@check`, returning Findings.

Importing the package registers every check (the modules below); `run_checks(profile)` runs them all.
"""

from checks import capacity, compat, coverage, usage
from checks.finding import Finding, Severity
from checks.registry import REGISTRY, all_codes, check, run_checks

__all__ = ["REGISTRY", "Finding", "Severity", "all_codes", "capacity", "check", "compat", "coverage", "run_checks",
           "usage"]
