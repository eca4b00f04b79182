"""`migrate verify`: resolve settings, call migrate.verify.verify, print the report, exit 5 on divergence."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.options import connection_options, emit, format_options, resolve_settings
from migrate.config import Setting, to_bool, to_list
from migrate.errors import ConfigError, ProblemsFound
from migrate.rdb.values import LOGICAL_TYPES
from migrate.selection import KeySelection, parse_db_map
from migrate.verify import Level, VerifyConfig, VerifyOptions, verify
from migrate.verify.report import render, verdict_line

SETTINGS = (
    Setting("level", Level, Level.FULL),
    Setting("match"),
    Setting("type", to_list, ()),
    Setting("exclude", to_list, ()),
    Setting("db_map", to_list, ()),
    Setting("db", to_list, ()),
    Setting("ttl_tolerance", float, 2.0),
    Setting("sample", int),
    Setting("sample_percent", float),
    Setting("seed", int, 0),
    Setting("rounds", int, 3),
    Setting("interval", float, 1.0),
    Setting("max_report_keys", int, 100),
    Setting("batch_size", int, 1000),
    Setting("workers", int, 2),
    Setting("nonkey", to_bool, True),
)


@click.command("verify")
@connection_options
@click.option("--level", type=click.Choice([level.value for level in Level]),
              help="count: key counts per db; keys: existence, type, TTL; full: values too [default: full].")
@click.option("--match", metavar="PATTERN", help="Only keys matching this SCAN pattern.")
@click.option("--type", "type", multiple=True, metavar="TYPE",
              help=f"Only keys of this type (repeatable): {', '.join(LOGICAL_TYPES)}.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out keys matching this glob (repeatable).")
@click.option("--db-map", multiple=True, metavar="SRC:DST", help="Compare source db SRC with target db DST.")
@click.option("--db", multiple=True, type=int, help="Only this source database (repeatable) [default: all used].")
@click.option("--ttl-tolerance", type=float, metavar="SECONDS",
              help="Allowed TTL difference between the sides [default: 2].")
@click.option("--sample", type=int, metavar="N", help="Verify N keys chosen by a seeded hash of their names.")
@click.option("--sample-percent", type=float, metavar="P", help="Verify about P percent of the keys.")
@click.option("--seed", type=int, help="Sampling seed; the same seed picks the same keys [default: 0].")
@click.option("--rounds", type=int, help="Recheck rounds for mismatching keys [default: 3].")
@click.option("--interval", type=float, metavar="SECONDS", help="Wait between recheck rounds [default: 1].")
@click.option("--max-report-keys", type=int, metavar="N", help="Keys listed per category; more are counted "
              "[default: 100].")
@click.option("--batch-size", type=int, metavar="N", help="Keys per SCAN and per pipelined read [default: 1000].")
@click.option("--workers", type=int, metavar="N", help="Threads comparing batches while SCAN goes on; 0: none "
              "[default: 2].")
@click.option("--nonkey/--no-nonkey", default=None,
              help="Compare functions, ACL users and config parameters [default: on].")
@format_options
@click.pass_context
def verify_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Prove parity between source and target, both directions, key by key (exit 5 on divergence)."""
    common, values = resolve_settings(ctx, "verify", flags, SETTINGS)
    config = VerifyConfig(common.require_source(), common.require_target(), options_from(values), common.connection)
    result = verify(config)
    emit(render(result, values["format"]), values["output"])
    if not result.ok:
        raise ProblemsFound(verdict_line(result), "see the report above; the json report lists every reason")


def options_from(values: dict[str, Any]) -> VerifyOptions:
    types = tuple(values["type"])
    unknown = [t for t in types if t not in LOGICAL_TYPES]
    if unknown:
        raise ConfigError(f"unknown --type {', '.join(unknown)}", f"use one of {', '.join(LOGICAL_TYPES)}")
    try:
        dbs = tuple(int(db) for db in values["db"])
    except ValueError:
        raise ConfigError("--db takes database numbers") from None
    db_map = tuple(part for item in values["db_map"] for part in str(item).split(",") if part.strip())
    selection = KeySelection(values["match"], types, tuple(values["exclude"]), parse_db_map(db_map), dbs)
    return VerifyOptions(
        level=Level(values["level"]), selection=selection,
        ttl_tolerance_ms=round(values["ttl_tolerance"] * 1000), sample=values["sample"],
        sample_percent=values["sample_percent"], seed=values["seed"], rounds=values["rounds"],
        interval=values["interval"], max_report_keys=values["max_report_keys"], batch_size=values["batch_size"],
        workers=values["workers"], check_nonkey=values["nonkey"],
    ).validate()
