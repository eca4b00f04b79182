"""`migrate verify`: resolve settings, call migrate.verify.verify, print the report, exit 5 on divergence."""

from __future__ import annotations

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
from migrate.errors import ProblemsFound
from migrate.verify import Level, VerifyConfig, VerifyOptions, verify
from migrate.verify.report import render

SETTINGS = (
    *SELECTION_SETTINGS,
    Setting("level", Level, Level.FULL),
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
    Setting("reverse_scan", str, "auto"),
    Setting("dump_bodies", to_bool, True),
)


@click.command("verify")
@connection_options
@click.option("--level", type=click.Choice([level.value for level in Level]),
              help="count: key counts per db; keys: existence, type, TTL; full: values too [default: full].")
@selection_options("Compare source db SRC with target db DST.")
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
@click.option("--reverse-scan", type=click.Choice(["auto", "always"]),
              help="Scan the target for extra keys: always, or auto: not where neither server changed during the "
              "pass and the key counts prove there is none [default: auto].")
@click.option("--dump-bodies/--no-dump-bodies", default=None,
              help="At --level full, settle small collections whose DUMP bodies are equal on both sides before "
              "reading them type-natively [default: on].")
@format_options
@click.pass_context
def verify_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Prove parity between source and target, both directions, key by key (exit 5 on divergence)."""
    common, values = resolve_settings(ctx, "verify", flags, SETTINGS)
    config = VerifyConfig(common, options_from(values))
    result = verify(config)
    emit(render(result, values["format"]), values["output"])
    if not result.ok:
        raise ProblemsFound(result.verdict(), "see the report above; the json report lists every reason")


def options_from(values: dict[str, Any]) -> VerifyOptions:
    selection = selection_from(values)
    return VerifyOptions(
        level=Level(values["level"]), selection=selection,
        ttl_tolerance_ms=round(values["ttl_tolerance"] * 1000), sample=values["sample"],
        sample_percent=values["sample_percent"], seed=values["seed"], rounds=values["rounds"],
        interval=values["interval"], max_report_keys=values["max_report_keys"], batch_size=values["batch_size"],
        workers=values["workers"], check_nonkey=values["nonkey"], reverse_scan=values["reverse_scan"],
        dump_bodies=values["dump_bodies"],
    ).validate()
