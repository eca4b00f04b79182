"""The CLI's options, generated from the options dataclasses (migrate.settings): every verb reads the same way, and
a default, a help text or a flag is written once, beside the field it configures."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import click

from migrate.config import ServerOptions
from migrate.errors import ConfigError
from migrate.settings import Setting, check_file_keys, load_file, option, resolve, settings_of

F = TypeVar("F", bound=Callable[..., Any])

# Each verb's options class ("module:class"), imported only to check a config file's keys.
VERB_OPTIONS: Final = {"identify": None, "convert": "migrate.convert.options:ConvertOptions",
                       "preflight": "migrate.preflight.options:PreflightOptions",
                       "run": "migrate.run.options:RunOptions", "verify": "migrate.verify.options:VerifyOptions",
                       "cutover": "migrate.run.options:CutoverOptions"}


@dataclass(frozen=True)
class CliState:
    log_format: str
    config_file: str | None
    traceback: bool


@dataclass(frozen=True)
class ReportOptions:
    format: str = option("human", "Report format.", choices=("human", "json", "markdown"))
    output: str | None = option(None, "Write the report to FILE instead of stdout.", short="-o", metavar="FILE")


def options(*classes: type) -> Callable[[F], F]:
    """Click options for every option field of these dataclasses (the servers' and the report's included)."""
    def decorate(fn: F) -> F:
        for setting in reversed(_settings((ServerOptions, *classes, ReportOptions))):
            fn = click_option(setting)(fn)
        return fn
    return decorate


def click_option(s: Setting) -> Callable[[F], F]:
    shown = s.shown_default
    text = s.option.help + (f" [default: {shown}]" if shown else "")
    names = [s.flag, *([s.option.short] if s.option.short else [])]
    if s.option.switch:
        return click.option(f"{s.flag}/--no-{s.flag[2:]}", s.name, default=None, help=text)
    if isinstance(s.default, bool):
        return click.option(*names, s.name, is_flag=True, default=None, help=text)
    kind = click.Choice([str(c) for c in s.option.choices]) if s.option.choices else None
    return click.option(*names, s.name, type=kind, multiple=s.option.multiple, default=None, metavar=s.option.metavar,
                        help=text)


def resolve_for(ctx: click.Context, verb: str, flags: dict[str, Any], *classes: type) -> dict[str, Any]:
    """Merge flags > MIGRATE_* env > migrate.toml for the servers', the verb's and the report's options."""
    state: CliState = ctx.find_object(CliState) or CliState("auto", None, False)
    file_values = load_file(state.config_file)
    if file_values:
        check_file_keys(file_values, _sections())
    return resolve(_settings((ServerOptions, *classes, ReportOptions)), flags, verb, file_values=file_values)


def _settings(classes: Iterable[type]) -> tuple[Setting, ...]:
    return tuple(s for cls in classes for s in settings_of(cls))


def _sections() -> dict[str, tuple[Setting, ...]]:
    out = {}
    for verb, target in VERB_OPTIONS.items():
        own: tuple[type, ...] = ()
        if target is not None:
            module, _, name = target.partition(":")
            own = (getattr(importlib.import_module(module), name),)
        out[verb] = _settings((ServerOptions, *own, ReportOptions))
    return out


def emit(text: str, output: str | None) -> None:
    """Reports go to stdout (or a file); progress and logs go to stderr."""
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the report to {output}: {exc.strerror or exc}",
                              "give --output a writable file path") from None
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text)


def option_table(verb: str) -> str:
    """The markdown table of a verb's own options ("common": the ones every verb takes) for README.md;
    tests/test_docs.py keeps the README equal to it."""
    common = _settings((ServerOptions, ReportOptions))
    settings = common if verb == "common" else tuple(s for s in _sections()[verb] if s not in common)
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for s in settings:
        rows.append(f"| `{_usage(s)}` | `{s.env}` | {s.shown_default or ''} | {s.option.help.replace('|', '/')} |")
    return "\n".join(rows)


def _usage(s: Setting) -> str:
    if s.option.switch:
        return f"{s.flag} / --no-{s.flag[2:]}"
    choices = "{" + ",".join(str(c) for c in s.option.choices) + "}" if s.option.choices else ""
    value = s.option.metavar or choices
    flag = f"{s.flag} {value}" if value else s.flag
    return f"{s.option.short}, {flag}" if s.option.short else flag
