"""Readers driven in lockstep on the two servers being compared (one pipelined channel per database), retries.

Both servers work at the same time: each round sends the source's and the target's commands before reading either
side's replies. Reads are idempotent, so a transient failure re-runs the whole batch after a reconnect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from redis import exceptions as rex

from migrate.config import ConnectionSettings
from migrate.connection import TRANSIENT, translate
from migrate.logs import get_logger
from migrate.server import Channels
from migrate.wire import Commands, count_of

log = get_logger(__name__)
T = TypeVar("T")
Reader = Generator[Commands, list[Any], T]


class SideError(Exception):
    """A failure on one side, kept with the side so the final error names the right server."""

    def __init__(self, side: Channels, error: BaseException) -> None:
        super().__init__(str(error))
        self.side = side
        self.error = error


def drive(jobs: list[tuple[Channels, int, Reader[Any]]]) -> list[Any]:
    """Run one reader per (side, db) in lockstep rounds; return each reader's result."""
    results: list[Any] = [None] * len(jobs)
    active: dict[int, Commands] = {}
    for i, (side, _, reader) in enumerate(jobs):
        try:
            active[i] = _step(side, reader, None)
        except StopIteration as stop:
            results[i] = stop.value
    while active:
        for i, cmds in active.items():
            side, db, _ = jobs[i]
            _send(side, db, cmds)
        for i in list(active):
            side, db, reader = jobs[i]
            replies = _recv(side, db, count_of(active[i]))
            try:
                active[i] = _step(side, reader, replies)
            except StopIteration as stop:
                results[i] = stop.value
                del active[i]
    return results


def _step(side: Channels, reader: Reader[Any], replies: list[Any] | None) -> Commands:
    try:
        return next(reader) if replies is None else reader.send(replies)
    except StopIteration:
        raise
    except (rex.RedisError, OSError) as exc:  # an error reply a reader could not accept (e.g. NOPERM)
        raise SideError(side, exc) from exc


def _send(side: Channels, db: int, cmds: Commands) -> None:
    try:
        side.channel(db).send(cmds)
    except (rex.RedisError, OSError) as exc:
        raise SideError(side, exc) from exc


def _recv(side: Channels, db: int, count: int) -> list[Any]:
    try:
        return side.channel(db).recv(count)
    except (rex.RedisError, OSError) as exc:
        raise SideError(side, exc) from exc


def exchange(jobs: list[tuple[Channels, int, bytes]]) -> list[bytes]:
    """One raw round per (side, db, packed commands), all sent before any is read: the bytes of each side's replies."""
    token = os.urandom(8).hex().encode()
    for side, db, data in jobs:
        try:
            side.channel(db).send_marked(data, token)
        except (rex.RedisError, OSError) as exc:
            raise SideError(side, exc) from exc
    out = []
    for side, db, _ in jobs:
        try:
            out.append(side.channel(db).recv_marked(token))
        except (rex.RedisError, OSError) as exc:
            raise SideError(side, exc) from exc
    return out


def guarded(fn: Callable[[], T], sides: tuple[Channels, ...], settings: ConnectionSettings, what: str) -> T:
    """Run fn; on a transient failure reconnect and run it again (bounded); translate the final error."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except SideError as exc:
            if not isinstance(exc.error, TRANSIENT) or attempt >= settings.retries:
                for side in sides:
                    side.reset()
                raise translate(exc.error, exc.side.endpoint, exc.side.role) from exc.error
            log.warning("retrying", what=what, attempt=attempt, server=exc.side.role,
                        error=" ".join(str(exc.error).split())[:200])
            for side in sides:
                side.reset()
            time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
