"""A click group that imports a verb's module only when that verb is used: every verb is a short-lived process, so
`migrate --version` or `migrate verify --help` must not pay for the imports of every other verb."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from gettext import gettext as _
from typing import Any

import click


@dataclass(frozen=True)
class LazyVerb:
    """Where a verb's command lives ("module:attribute") and the first paragraph of its help, kept as data so the
    top-level listing needs no import (tests/test_cli_lazy.py checks it matches the command's own help)."""

    target: str
    help: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's `commands`: names are known up front, a command is imported on first lookup."""

    def __init__(self, verbs: Mapping[str, LazyVerb]) -> None:
        self._verbs = dict(verbs)
        self._loaded: dict[str, click.Command] = {}

    def listing(self, name: str) -> click.Command:
        """The command if already imported, else a stand-in carrying only its help: enough for the listing."""
        if name in self._loaded:
            return self._loaded[name]
        return click.Command(name, help=self._verbs[name].help)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            verb = self._verbs[name]  # KeyError for an unknown name, as a dict would
            try:
                self._loaded[name] = verb.load()
            except KeyError as exc:  # a bug inside the verb's module must not read as "No such command" (.get)
                raise ImportError(f"importing {verb.target} failed: KeyError {exc}") from exc
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._verbs.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._verbs.pop(name, None)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:  # Mapping's default would import the verb
        return name in self._verbs or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        yield from self._verbs
        yield from (name for name in self._loaded if name not in self._verbs)

    def __len__(self) -> int:
        return len(self._verbs.keys() | self._loaded.keys())


class LazyGroup(click.Group):
    """click.Group whose `commands` is a LazyCommands built from `verbs`; `add_command` still works."""

    def __init__(self, *args: Any, verbs: Mapping[str, LazyVerb], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: LazyCommands = LazyCommands(verbs)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click.Group.format_commands, reading each verb's help from the table instead of importing the verb."""
        commands = [(name, self.commands.listing(name)) for name in self.list_commands(ctx)]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
        with formatter.section(_("Commands")):  # the same heading click writes
            formatter.write_dl(rows)
