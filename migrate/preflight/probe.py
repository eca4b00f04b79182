"""Ask a server for a fact without ever crashing on a refusal: a denied or unknown command becomes a Gap.

Least-privileged ACL users are expected: every read goes through Prober.ask, which returns None and records why
(permission denied, unknown or renamed command, other server error). Lost connections are not gaps: they propagate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis import exceptions as rex

from migrate.preflight.profile import Gap

T = TypeVar("T")


def refusal(exc: rex.ResponseError) -> str:
    """The reason a command was refused, in the words the report uses."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if isinstance(exc, rex.NoPermissionError) or lowered.startswith("noperm") or "no permissions" in lowered:
        return "permission denied"
    if "unknown command" in lowered or "unknown subcommand" in lowered:
        return "unknown command (renamed, disabled or not in this release)"
    return text[:200]


class Prober:
    """One server, one role: asks for facts and keeps the list of what could not be asked."""

    def __init__(self, client: redis.Redis, role: str) -> None:
        self.client = client
        self.role = role
        self.gaps: list[Gap] = []

    def ask(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except rex.ResponseError as exc:
            self.note(what, refusal(exc))
            return None

    def command(self, what: str, *args: Any) -> Any:
        """A raw command (no redis-py reply callback: its parsers choke on some replies, e.g. COMMAND COUNT)."""
        name = " ".join(str(a) for a in args[:2]) if len(args) > 1 and _is_container(args[0]) else str(args[0])
        rest = args[2:] if " " in name else args[1:]
        return self.ask(what, lambda: self.client.execute_command(name.upper(), *rest))  # type: ignore[no-untyped-call]

    def note(self, what: str, reason: str) -> None:
        if not any(g.what == what for g in self.gaps):
            self.gaps.append(Gap(self.role, what, reason))


_CONTAINERS = frozenset({"acl", "command", "config", "function", "memory", "module", "object", "xinfo", "client"})


def _is_container(name: object) -> bool:
    return str(name).lower() in _CONTAINERS
