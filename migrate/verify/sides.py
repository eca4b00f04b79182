"""The two servers being compared: one pipelined channel per database, readers driven in lockstep, retries.

Both servers work at the same time: each round sends the source's and the target's commands before reading either
side's replies. Reads are idempotent, so a transient failure re-runs the whole batch after a reconnect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import TRANSIENT, open_client, translate
from migrate.errors import MigrateError
from migrate.logs import get_logger
from migrate.wire import Channel, Commands, count_of

log = get_logger(__name__)
T = TypeVar("T")
Reader = Generator[Commands, list[Any], T]


class SideError(Exception):
    """A failure on one side, kept with the side so the final error names the right server."""

    def __init__(self, side: Side, error: BaseException) -> None:
        super().__init__(str(error))
        self.side = side
        self.error = error


@dataclass
class Side:
    role: str  # source | target
    endpoint: Endpoint
    settings: ConnectionSettings
    wires: dict[int, Channel] = field(default_factory=dict)

    def wire(self, db: int) -> Channel:
        if db not in self.wires:
            try:
                self.wires[db] = Channel.over(open_client(self.endpoint, self.settings, self.role, db=db))
            except MigrateError:
                raise
            except (rex.RedisError, OSError) as exc:
                raise translate(exc, self.endpoint, self.role) from exc
        return self.wires[db]

    def reset(self) -> None:
        for wire in self.wires.values():
            wire.reset()

    def close(self) -> None:
        for wire in self.wires.values():
            wire.close()
        self.wires.clear()


def drive(jobs: list[tuple[Side, int, Reader[Any]]]) -> list[Any]:
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


def _step(side: Side, reader: Reader[Any], replies: list[Any] | None) -> Commands:
    try:
        return next(reader) if replies is None else reader.send(replies)
    except StopIteration:
        raise
    except (rex.RedisError, OSError) as exc:  # an error reply a reader could not accept (e.g. NOPERM)
        raise SideError(side, exc) from exc


def _send(side: Side, db: int, cmds: Commands) -> None:
    try:
        side.wire(db).send(cmds)
    except (rex.RedisError, OSError) as exc:
        raise SideError(side, exc) from exc


def _recv(side: Side, db: int, count: int) -> list[Any]:
    try:
        return side.wire(db).recv(count)
    except (rex.RedisError, OSError) as exc:
        raise SideError(side, exc) from exc


def exchange(jobs: list[tuple[Side, int, bytes]]) -> list[bytes]:
    """One raw round per (side, db, packed commands), all sent before any is read: the bytes of each side's replies."""
    token = os.urandom(8).hex().encode()
    for side, db, data in jobs:
        try:
            side.wire(db).send_marked(data, token)
        except (rex.RedisError, OSError) as exc:
            raise SideError(side, exc) from exc
    out = []
    for side, db, _ in jobs:
        try:
            out.append(side.wire(db).recv_marked(token))
        except (rex.RedisError, OSError) as exc:
            raise SideError(side, exc) from exc
    return out


def guarded(fn: Callable[[], T], sides: tuple[Side, ...], settings: ConnectionSettings, what: str) -> T:
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
