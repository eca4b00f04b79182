"""`migrate preflight`: resolve settings, call the library, render the report, exit 5 on blockers."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.options import connection_options, emit, format_options, resolve_settings
from migrate.config import Setting, to_bool
from migrate.errors import ProblemsFound
from migrate.preflight import PreflightConfig, PreflightOptions, preflight
from migrate.preflight.report import render

SETTINGS = (
    Setting("sample", int, 1000),
    Setting("full", to_bool, False),
    Setting("rate_limit", int, 0),
    Setting("batch", int, 500),
    Setting("biggest", int, 10),
    Setting("dump_limit", int, 8 * 1024 * 1024),
    Setting("rdb_file"),
    Setting("aof_dir"),
    Setting("target_version"),
)


@click.command("preflight")
@connection_options
@click.option("--sample", type=int, help="Keys examined per database [default: 1000].")
@click.option("--full", is_flag=True, default=None, help="Examine every key (exact counts, all names).")
@click.option("--rate-limit", type=int, help="At most N keys per second on the source [default: unlimited].")
@click.option("--batch", type=int, help="SCAN COUNT and pipeline size [default: 500].")
@click.option("--biggest", type=int, help="How many biggest keys to list [default: 10].")
@click.option("--dump-limit", type=int, help="Do not DUMP keys bigger than N bytes [default: 8 MiB].")
@click.option("--rdb-file", type=click.Path(dir_okay=False), help="Inspect an RDB file (offline, or with servers).")
@click.option("--aof-dir", type=click.Path(file_okay=False),
              help="Inspect an AOF directory (manifest, files).")
@click.option("--target-version", metavar="PRODUCT:VERSION",
              help="Check against a release when no live target is given, e.g. valkey:8.1 or valkey:9.1:relaxed.")
@format_options
@click.pass_context
def preflight_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Check source and target (read-only) and say what will break, and which strategy fits. Exit 5 on blockers."""
    common, values = resolve_settings(ctx, "preflight", flags, SETTINGS)
    options = PreflightOptions(sample=values["sample"], full=values["full"], rate_limit=values["rate_limit"],
                               batch=values["batch"], biggest=values["biggest"], dump_limit=values["dump_limit"],
                               rdb_file=values["rdb_file"], aof_dir=values["aof_dir"],
                               target_version=values["target_version"])
    result = preflight(PreflightConfig(common, options))
    emit(render(result, values["format"]), values["output"])
    if not result.ok:
        raise ProblemsFound("")
