"""Units as RESP for a connection that replays them as they are (a relay writing to a replica, `redis-cli --pipe`):
SELECT where the database changes, a source MULTI/EXEC group kept in MULTI/EXEC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from migrate.stream.model import Unit
from migrate.wire import pack_argv as pack  # arguments here are always bytes

_MULTI: Final = pack((b"MULTI",))
_EXEC: Final = pack((b"EXEC",))


class RespWriter:
    """Tracks the database the receiving connection is in (it starts in `db`)."""

    def __init__(self, db: int = 0) -> None:
        self.db = db

    def encode(self, unit: Unit) -> bytes:
        parts: list[bytes] = []
        group = unit.group and len(unit.commands) > 1
        if group:
            parts.append(_MULTI)
        for db, argv in unit.commands:
            if db != self.db:
                parts.append(pack((b"SELECT", b"%d" % db)))
                self.db = db
            parts.append(pack(argv))
        if group:
            parts.append(_EXEC)
        return b"".join(parts)

    def raw(self, db: int, data: bytes) -> list[bytes]:
        """Commands already in RESP (a run of the source's stream that passes as it is), to run in `db`: the parts
        to send, a SELECT first where the database changes."""
        if db == self.db:
            return [data]
        self.db = db
        return [pack((b"SELECT", b"%d" % db)), data]

    def encode_all(self, units: Iterable[Unit]) -> Iterator[bytes]:
        for unit in units:
            data = self.encode(unit)
            if data:
                yield data
