"""`migrate preflight`: resolve the options, call the library, render the report, exit 5 on blockers."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.config import common_config
from migrate.errors import ProblemsFound
from migrate.preflight import PreflightConfig, PreflightOptions, preflight
from migrate.preflight.report import render
from migrate.settings import build


@click.command("preflight")
@options(PreflightOptions)
@click.pass_context
def preflight_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Check source and target (read-only) and say what will break, and which strategy fits. Exit 5 on blockers."""
    values = resolve_for(ctx, "preflight", flags, PreflightOptions)
    result = preflight(PreflightConfig(common_config(values), build(PreflightOptions, values)))
    report: ReportOptions = build(ReportOptions, values)
    emit(render(result, report.format), report.output)
    if not result.ok:
        raise ProblemsFound("")
