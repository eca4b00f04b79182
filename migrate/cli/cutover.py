"""`migrate cutover`: ask a running `migrate run --strategy sync` (or relay) to cut over, and wait for its outcome."""

from __future__ import annotations

import json
from typing import Any

import click

from migrate.cli.params import ReportOptions, click_option, emit, resolve_for
from migrate.errors import ConfigError
from migrate.run.options import CutoverOptions
from migrate.run.sync.control import request_cutover
from migrate.settings import build, settings_of


def _options(fn: Any) -> Any:
    for setting in reversed((*settings_of(CutoverOptions), *settings_of(ReportOptions))):
        fn = click_option(setting)(fn)
    return fn


@click.command("cutover")
@_options
@click.pass_context
def cutover_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Ask a running sync or relay (its --status-file) to cut over now, and wait until it is done."""
    values = resolve_for(ctx, "cutover", flags, CutoverOptions)
    options: CutoverOptions = build(CutoverOptions, values)
    report: ReportOptions = build(ReportOptions, values)
    if options.status_file is None:
        raise ConfigError("give --status-file: the status file of the running sync (its --status-file)")
    status = request_cutover(options.status_file, options.wait, on_cut=_announce)
    emit(render(status, report.format), report.output)


def _announce(status: dict[str, Any]) -> None:
    """The moment to repoint clients, said as soon as it comes (the grace period's outcome follows when it ends)."""
    pause = status.get("pause_ms")
    paused = f"the source's writes were paused {pause:.0f} ms" if pause is not None else "no write pause"
    cut = status.get("cut_offset")
    where = f" at source offset {cut}" if cut is not None and not status.get("shards") else ""
    click.echo(f"cutover point reached{where} ({paused}): repoint the application's clients to the target now",
               err=True)


def render(status: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(status, indent=2)
    cutover = status.get("cutover")
    if status.get("state") == "running":
        return (f"cutover requested from process {status['pid']} (phase {status['phase']}, lag "
                f"{status['lag_bytes']} bytes); it was not finished when this command stopped waiting")
    lines = [f"cutover done by process {status['pid']}"]
    if cutover:
        pause = f"{cutover['pause_ms']:.0f} ms" if cutover.get("pause_ms") is not None else "none"
        shards = cutover.get("shard_cuts") or []
        cut = (f"cut at source offset {cutover['cut_offset']}" if not shards else
               "cut at the offsets of the source primaries: " + ", ".join(f"slots {s} {c}" for s, c in shards))
        lines += [f"write pause: {pause}", cut,
                  f"writes after the cut point, applied during the grace period: {cutover['after_cutover_writes']}",
                  cutover["instructions"]]
    prefix = "- " if fmt == "markdown" else ""
    return "\n".join(prefix + line for line in lines)
