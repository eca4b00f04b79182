"""The library entry point: `preflight(config) -> PreflightResult`. No printing, no click: the CLI renders."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from migrate import __version__
from migrate.logs import get_logger
from migrate.preflight.gather import gather
from migrate.preflight.options import PreflightConfig
from migrate.preflight.registry import run_checks
from migrate.preflight.result import PreflightResult
from migrate.preflight.strategy import recommend

log = get_logger(__name__)


def preflight(config: PreflightConfig) -> PreflightResult:
    """Gather facts from the source, the target and the given files (read-only), run every check, pick a strategy."""
    started, clock = datetime.now(UTC), time.monotonic()
    profile = gather(config)
    findings = run_checks(profile)
    strategy = recommend(profile)
    result = PreflightResult(profile, findings, strategy, started.isoformat(timespec="seconds"),
                             round(time.monotonic() - clock, 3), __version__)
    log.info("preflight done", blockers=len(result.blockers), findings=len(findings), strategy=strategy.name,
             partial=result.partial, seconds=result.duration_s)
    return result
