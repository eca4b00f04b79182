"""Options shared by every verb, as decorator factories so each command reads the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from migrate.config import COMMON_SETTINGS, CommonConfig, Setting, common_config, load_file, resolve

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
        click.option("--target", metavar="URL", help="Target server URL. Env: MIGRATE_TARGET."),
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
