"""`migrate run`: resolve settings, call migrate.run.run, print the report; exit 5 when keys were left busy or
--verify found divergence."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from migrate.cli.options import (
    SELECTION_SETTINGS,
    connection_options,
    emit,
    format_options,
    resolve_settings,
    selection_from,
    selection_options,
)
from migrate.config import Setting, to_bool
from migrate.errors import ConfigError, Interrupted, ProblemsFound
from migrate.run import OnIncompatible, RunConfig, RunOptions, RunResult, Strategy, run
from migrate.run.options import DEFAULT_BIG_KEY_THRESHOLD, DEFAULT_CHECKPOINT
from migrate.run.report import render

UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
         "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(value: Any) -> int:
    """'16mb', '64MiB', '1048576' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 16mb, 512kb, 1048576)")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


SETTINGS = (
    *SELECTION_SETTINGS,
    Setting("strategy", Strategy, Strategy.REPLAY),
    Setting("batch_size", int, 1000),
    Setting("rate_limit", float),
    Setting("replace", to_bool, False),
    Setting("flush_target", to_bool, False),
    Setting("yes", to_bool, False),
    Setting("dry_run", to_bool, False),
    Setting("resume", to_bool, False),
    Setting("checkpoint", Path, DEFAULT_CHECKPOINT),
    Setting("on_incompatible", OnIncompatible, OnIncompatible.FAIL),
    Setting("big_key_threshold", parse_size, DEFAULT_BIG_KEY_THRESHOLD),
    Setting("from_rdb", Path),
    Setting("promote", to_bool, False),
    Setting("verify", to_bool, False),
    Setting("progress", to_bool),
    Setting("sync_timeout", float, 600.0),
)


@click.command("run")
@connection_options
@click.option("--strategy", type=click.Choice([s.value for s in Strategy]),
              help="replay: SCAN/DUMP/RESTORE with per-key conversion; reload: snapshot, flush the target, load; "
                   "replicaof: native replication when compatible [default: replay].")
@selection_options("Copy source db SRC into target db DST.")
@click.option("--batch-size", type=int, metavar="N", help="Keys per SCAN and per pipelined round trip [default: 1000].")
@click.option("--rate-limit", type=float, metavar="KEYS/S", help="Read at most this many keys per second.")
@click.option("--replace", is_flag=True, default=None, help="Overwrite keys that exist on the target.")
@click.option("--flush-target", is_flag=True, default=None,
              help="Empty the target databases first (asks for confirmation unless --yes).")
@click.option("--yes", "-y", is_flag=True, default=None,
              help="Confirm: --flush-target, and execute the plan of --strategy reload / replicaof.")
@click.option("--dry-run", is_flag=True, default=None, help="Read and plan everything, write nothing.")
@click.option("--resume", is_flag=True, default=None, help="Continue an interrupted replay from its checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), metavar="FILE",
              help=f"Checkpoint file [default: {DEFAULT_CHECKPOINT}].")
@click.option("--on-incompatible", type=click.Choice([p.value for p in OnIncompatible]),
              help="Keys the target cannot hold as they are: fail, skip them, or copy what fits (lossy) "
                   "[default: fail]. Skipped and changed keys are listed in the report.")
@click.option("--big-key-threshold", metavar="SIZE",
              help="Copy keys bigger than this in chunks (e.g. 64mb; 0: no size probe) [default: 16mb].")
@click.option("--from-rdb", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="--strategy reload: load this RDB file instead of a live snapshot.")
@click.option("--promote", is_flag=True, default=None, help="--strategy replicaof: REPLICAOF NO ONE once caught up.")
@click.option("--verify", is_flag=True, default=None, help="Run `migrate verify` on the same selection afterwards.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal].")
@click.option("--sync-timeout", type=float, metavar="SECONDS",
              help="--strategy replicaof: wait at most this long for the sync [default: 600].")
@format_options
@click.pass_context
def run_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Copy the data from the source into the target (exit 5 if keys were left busy or --verify found divergence)."""
    common, values = resolve_settings(ctx, "run", flags, SETTINGS)
    options = options_from(values)
    if options.flush_target and not options.yes and not options.dry_run:
        options = _confirm_flush(options, str(common.target))
    previous = signal.signal(signal.SIGTERM, _terminated)  # a clean stop: the checkpoint is saved on the way out
    try:
        result = run(RunConfig(common, options), on_plan=_show_plan if options.yes else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    emit(render(result, values["format"]), values["output"])
    _exit_status(result)


def options_from(values: dict[str, Any]) -> RunOptions:
    selection = selection_from(values)
    progress = values["progress"] if values["progress"] is not None else sys.stderr.isatty()
    return RunOptions(
        strategy=Strategy(values["strategy"]), selection=selection, batch_size=values["batch_size"],
        rate_limit=values["rate_limit"], replace=values["replace"], flush_target=values["flush_target"],
        yes=values["yes"], dry_run=values["dry_run"], resume=values["resume"], checkpoint=Path(values["checkpoint"]),
        on_incompatible=OnIncompatible(values["on_incompatible"]), big_key_threshold=values["big_key_threshold"],
        from_rdb=Path(values["from_rdb"]) if values["from_rdb"] else None, promote=values["promote"],
        verify=values["verify"], progress=progress, sync_timeout=values["sync_timeout"],
    ).validate()


def _confirm_flush(options: RunOptions, target: str) -> RunOptions:
    if not sys.stdin.isatty():
        raise ConfigError("--flush-target empties target databases: confirm with --yes")
    click.confirm(f"--flush-target will delete every key in the selected databases of {target}. Continue?",
                  abort=True, err=True)
    return RunOptions(**{**options.__dict__, "yes": True})


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
    if result.verify is not None and not result.verify.ok:
        raise ProblemsFound("verification found divergence (see the report)",
                            "the report lists every divergent key and why")
