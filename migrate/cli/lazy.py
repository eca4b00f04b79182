"""click's lazy-loading group recipe: a verb's module is imported only when the verb is used, since every verb is a
short-lived process and `migrate --version` or `migrate verify --help` must not pay for the imports of the others."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class LazyVerb:
    """Where a verb's command lives ("module:attribute") and the first paragraph of its help, kept as data so the
    top-level listing imports nothing (tests/test_cli_lazy.py checks it matches the command's own help)."""

    target: str
    help: str


class LazyGroup(click.Group):
    def __init__(self, *args: Any, verbs: Mapping[str, LazyVerb], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verbs = dict(verbs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.verbs})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.verbs and name not in self.commands:
            module, _, attribute = self.verbs[name].target.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.verbs[name].target} is not a click command")
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing, with each verb's help from the table: loading every verb to list them would undo the point."""
        names = self.list_commands(ctx)
        helps = [(n, self.commands[n] if n in self.commands else click.Command(n, help=self.verbs[n].help))
                 for n in names]
        if helps:
            limit = formatter.width - 6 - max(len(n) for n, _ in helps)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in helps if not c.hidden])
