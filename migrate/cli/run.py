"""`migrate run`: resolve the options, call migrate.run.run, print the report; exit 5 when keys were left busy or
--verify found divergence."""

from __future__ import annotations

import dataclasses
import signal
import sys
from types import FrameType
from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.config import common_config
from migrate.errors import ConfigError, Interrupted, ProblemsFound
from migrate.run import RunConfig, RunOptions, RunResult, run
from migrate.run.report import render
from migrate.run.sync.control import SyncControl
from migrate.settings import build


@click.command("run")
@options(RunOptions)
@click.pass_context
def run_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Copy the data from the source into the target (exit 5 if keys were left busy or --verify found divergence)."""
    values = resolve_for(ctx, "run", flags, RunOptions)
    common = common_config(values)
    run_options: RunOptions = build(RunOptions, values).validate()
    report: ReportOptions = build(ReportOptions, values)
    if run_options.flush_target and not run_options.yes and not run_options.dry_run:
        run_options = _confirm_flush(run_options, str(common.target))
    control = SyncControl()
    previous = signal.signal(signal.SIGTERM, _terminated)  # a clean stop: the checkpoint is saved on the way out
    # `migrate cutover` (or kill -USR1 <pid>) asks a running sync to cut over.
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: control.request_cutover())
    try:
        result = run(RunConfig(common, run_options), on_plan=_show_plan if run_options.yes else None,
                     control=control)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGUSR1, previous_usr1)
    emit(render(result, report.format), report.output)
    _exit_status(result)


def _confirm_flush(run_options: RunOptions, target: str) -> RunOptions:
    if not sys.stdin.isatty():
        raise ConfigError("--flush-target empties target databases: confirm with --yes")
    click.confirm(f"--flush-target will delete every key in the selected databases of {target}. Continue?",
                  abort=True, err=True)
    return dataclasses.replace(run_options, yes=True)


def _show_plan(lines: tuple[str, ...]) -> None:
    click.echo("plan:", err=True)
    for line in lines:
        click.echo(f"  {line}", err=True)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("terminated (SIGTERM)")


def _exit_status(result: RunResult) -> None:
    if not result.executed and not result.dry_run:
        click.echo("nothing done: this was the plan; rerun with --yes to execute it", err=True)
    if result.busy:
        raise ProblemsFound(f"{len(result.busy)} keys exist on the target and were not overwritten (listed in the "
                            f"report)", "rerun with --replace to overwrite them")
    cutover = result.sync.cutover if result.sync is not None else None
    if cutover is not None and not cutover.counts_match:
        raise ProblemsFound("the key counts of source and target differed at the cutover (see the report)",
                            "run `migrate verify` to find the keys")
    if result.verify is not None and not result.verify.ok:
        raise ProblemsFound("verification found divergence (see the report)",
                            "the report lists every divergent key and why")
