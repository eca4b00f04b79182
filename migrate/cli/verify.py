"""`migrate verify`: resolve the options, call migrate.verify.verify, print the report, exit 5 on divergence."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.config import common_config
from migrate.errors import ProblemsFound
from migrate.settings import build
from migrate.verify import VerifyConfig, VerifyOptions, verify
from migrate.verify.report import render


@click.command("verify")
@options(VerifyOptions)
@click.pass_context
def verify_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Prove parity between source and target, both directions, key by key (exit 5 on divergence)."""
    values = resolve_for(ctx, "verify", flags, VerifyOptions)
    config = VerifyConfig(common_config(values), build(VerifyOptions, values).validate())
    report: ReportOptions = build(ReportOptions, values)
    result = verify(config)
    emit(render(result, report.format), report.output)
    if not result.ok:
        raise ProblemsFound(result.verdict(), "see the report above; the json report lists every reason")
