"""Pipelined commands over one connection, without redis-py's per-command pipeline machinery.

bench/preflight.py measured redis-py's Pipeline at ~3.5x the time of a SCAN+TYPE pass for the four inspection
commands per key; packing with hiredis and reading replies straight from the connection brings the same work to about
the cost of SCAN+TYPE. Error replies come back in place (as exceptions), so one refused command never loses the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis import exceptions as rex

Command = tuple[bytes | str | int, ...]


class Wire:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.conn = client.connection_pool.get_connection()

    def run(self, commands: Sequence[Command]) -> list[Any]:
        """Send all commands at once, then read one reply each; a refused command yields its ResponseError."""
        if not commands:
            return []
        packed = b"".join(hiredis.pack_command(c) for c in commands)  # type: ignore[arg-type]
        return self._send(packed, len(commands))

    def _send(self, packed: bytes, count: int) -> list[Any]:
        if not count:
            return []
        self.conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(self.conn.read_response())
            except rex.ResponseError as exc:
                replies.append(exc)
        return replies

    def run_per_key(self, commands: Sequence[tuple[str, ...]], keys: Sequence[bytes]) -> list[Any]:
        """Each command applied to each key (key-major order): the command parts are packed once, not per key."""
        prefixes = [_prefix(cmd) for cmd in commands]
        packed = b"".join(p + b"$%d\r\n%s\r\n" % (len(k), k) for k in keys for p in prefixes)
        return self._send(packed, len(prefixes) * len(keys))

    def close(self) -> None:
        self.client.connection_pool.release(self.conn)
        self.client.close()


def _prefix(parts: tuple[str, ...]) -> bytes:
    """RESP array header for parts + one more argument (the key), followed by the packed parts."""
    head = b"*%d\r\n" % (len(parts) + 1)
    return head + b"".join(b"$%d\r\n%s\r\n" % (len(p), p.encode()) for p in parts)
