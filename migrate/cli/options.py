"""Options shared by every verb, as decorator factories so each command reads the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from migrate.config import COMMON_SETTINGS, CommonConfig, Setting, common_config, load_file, resolve, to_list
from migrate.errors import ConfigError
from migrate.facts.types import LOGICAL_TYPES
from migrate.selection import KeySelection, parse_db_map

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CliState:
    log_format: str
    config_file: str | None
    traceback: bool


def connection_options(fn: F) -> F:
    """--source/--target and how to reach them; every verb takes these."""
    decorators = [
        click.option("--source", metavar="URL", help="Source URL (redis://, rediss://, unix://). Env: MIGRATE_SOURCE."),
        click.option("--target", metavar="URL", help="Target URL (redis://, rediss://, unix://). Env: MIGRATE_TARGET."),
        click.option("--tls-ca-file", type=click.Path(), help="CA bundle to verify rediss:// servers."),
        click.option("--tls-cert-file", type=click.Path(), help="Client certificate for rediss:// (mutual TLS)."),
        click.option("--tls-key-file", type=click.Path(), help="Client private key for rediss://."),
        click.option("--tls-insecure", is_flag=True, default=None, help="Do not verify TLS certificates."),
        click.option("--connect-timeout", type=float, help="Seconds to wait for a connection [default: 5]."),
        click.option("--socket-timeout", type=float, help="Seconds to wait for a reply [default: 30]."),
        click.option("--retries", type=int, help="Attempts for transient failures [default: 3]."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


SELECTION_SETTINGS = (
    Setting("match"),
    Setting("type", to_list, ()),
    Setting("exclude", to_list, ()),
    Setting("db_map", to_list, ()),
    Setting("db", to_list, ()),
)


def selection_options(db_map_help: str) -> Callable[[F], F]:
    """--match/--type/--exclude/--db-map/--db: the same key selection for `run` and `verify`."""
    def decorate(fn: F) -> F:
        decorators = [
            click.option("--match", metavar="PATTERN", help="Only keys matching this SCAN pattern."),
            click.option("--type", "type", multiple=True, metavar="TYPE",
                         help=f"Only keys of this type (repeatable): {', '.join(LOGICAL_TYPES)}."),
            click.option("--exclude", multiple=True, metavar="GLOB",
                         help="Leave out keys matching this glob (repeatable)."),
            click.option("--db-map", multiple=True, metavar="SRC:DST", help=db_map_help),
            click.option("--db", multiple=True, type=int,
                         help="Only this source database (repeatable) [default: all used]."),
        ]
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return decorate


def selection_from(values: dict[str, Any]) -> KeySelection:
    types = tuple(values["type"])
    unknown = [t for t in types if t not in LOGICAL_TYPES]
    if unknown:
        raise ConfigError(f"unknown --type {', '.join(unknown)}", f"use one of {', '.join(LOGICAL_TYPES)}")
    try:
        dbs = tuple(int(db) for db in values["db"])
    except ValueError:
        raise ConfigError("--db takes database numbers") from None
    db_map = tuple(part for item in values["db_map"] for part in str(item).split(",") if part.strip())
    return KeySelection(values["match"], types, tuple(values["exclude"]), parse_db_map(db_map), dbs)


def format_options(fn: F) -> F:
    fn = click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                      help="Write the report to FILE instead of stdout.")(fn)
    fn = click.option("--format", "format", type=click.Choice(["human", "json", "markdown"]), default=None,
                      help="Report format [default: human].")(fn)
    return fn


def resolve_settings(ctx: click.Context, verb: str, flags: dict[str, Any],
                     extra: tuple[Setting, ...] = ()) -> tuple[CommonConfig, dict[str, Any]]:
    """Merge flags > MIGRATE_* env > migrate.toml for the common settings and the verb's own ones."""
    state: CliState = ctx.find_object(CliState) or CliState("auto", None, False)
    file_values = load_file(state.config_file)
    values = resolve(COMMON_SETTINGS + extra + (Setting("format", str, "human"), Setting("output")),
                     flags, verb, file_values=file_values)
    return common_config(values), values


def emit(text: str, output: str | None) -> None:
    """Reports go to stdout (or a file); progress and logs go to stderr."""
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text)
