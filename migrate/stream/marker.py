"""The applied-offset marker: one reserved key on the target, written in the same MULTI/EXEC as each batch.

Because the marker and the batch's writes commit together or not at all, the marker says exactly which source offset
the target holds, whatever happened to the applier (kill -9, lost connection): a resumed stream restarts right after
`read_marker(...).offset`, with the translator's source database set to `.source_db`.

Name: `__migrate:stream-applied:<stream id>` in database MARKER_DB (0: the only database a cluster node has). The
value is text, `v1 offset=<n> db=<source db> at=<unix ms>`, readable with a plain GET. It is the only key the stream
layer adds: `migrate verify` must leave it out (is_marker_key), and the cutover removes it (remove_marker) once the
last batch is applied. Writing it at the END of each transaction keeps it alive through a FLUSHALL/FLUSHDB in the
batch; a SWAPDB that moves it away is followed by a DEL in the database it landed in (the applier does that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import redis

from migrate.errors import BadInputError

MARKER_PREFIX: Final = b"__migrate:stream-applied:"
MARKER_DB: Final = 0
SYNC_STREAM_ID: Final = "sync"  # `migrate run --strategy sync`: its marker is __migrate:stream-applied:sync
_VALUE: Final = re.compile(rb"^v1 offset=(-?\d+) db=(\d+) at=(\d+)$")


@dataclass(frozen=True)
class Marker:
    stream_id: str
    offset: int  # end offset of the last source command the target holds
    source_db: int  # source database selected at that offset
    at_ms: int  # when the batch was committed (the applier's clock)


def marker_key(stream_id: str) -> bytes:
    if not stream_id or any(c.isspace() for c in stream_id):
        raise ValueError(f"a stream id is a non-empty word, not {stream_id!r}")
    return MARKER_PREFIX + stream_id.encode()


def is_marker_key(key: bytes) -> bool:
    return key.startswith(MARKER_PREFIX)


def marker_value(offset: int, source_db: int, at_ms: int) -> bytes:
    return b"v1 offset=%d db=%d at=%d" % (offset, source_db, at_ms)


def parse_marker(stream_id: str, value: bytes) -> Marker:
    match = _VALUE.match(value)
    if match is None:
        raise BadInputError(f"the stream marker {marker_key(stream_id).decode()} holds {value[:80]!r}, not a marker",
                            "another program wrote this key: remove it only if no stream is being applied")
    return Marker(stream_id, int(match[1]), int(match[2]), int(match[3]))


def read_marker(client: redis.Redis, stream_id: str) -> Marker | None:
    """Where the target really is for this stream. `client` must be on MARKER_DB (its default db 0)."""
    value: Any = client.execute_command("GET", marker_key(stream_id))  # type: ignore[no-untyped-call]
    if value is None:
        return None
    return parse_marker(stream_id, value if isinstance(value, bytes) else str(value).encode())


def remove_marker(client: redis.Redis, stream_id: str) -> bool:
    """At cutover, once the stream is fully applied: delete the marker. True when it existed."""
    return bool(client.execute_command("DEL", marker_key(stream_id)))  # type: ignore[no-untyped-call]
