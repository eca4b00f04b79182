"""The connection to one cluster node: the shared `Channel` (redis-py handshake, TLS and unix sockets, then the raw
socket and hiredis), with

- `receive` returning what it did read when the connection breaks (those replies are definite; the rest unknown), so
  a router that wrote every node's batch before reading any knows which commands surely ran;
- READONLY sent after every (re)connection when `readonly` is set, for reads from a replica (without it a replica
  answers MOVED to its primary for every keyed command: valkey-io/valkey src/cluster.c getNodeByQuery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import hiredis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.wire import OK, Channel, Reply, is_error, pack, receive_chunk

READONLY: Final = pack(("READONLY",))


@dataclass(frozen=True, slots=True)
class Received:
    """Replies of one node's round. `replies` None: every reply was +OK (expect_ok). With `error` set, the connection
    broke after `len(replies)` complete replies: those commands ran, the others may or may not have."""

    replies: list[Reply] | None
    error: rex.ConnectionError | None = None


class NodeLink(Channel):
    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, role: str, db: int = 0, *,
                 readonly: bool = False) -> None:
        super().__init__(endpoint, settings, role, db)
        self.readonly = readonly

    def connect(self) -> NodeLink:
        fresh = self._sock is None
        super().connect()
        if fresh and self.readonly:
            reply = self.call(READONLY, 1)[0]
            if is_error(reply):
                self.reset()
                raise rex.ResponseError(f"READONLY refused by {self.role} {self.endpoint}: {reply}")
        return self

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def receive(self, count: int, *, expect_ok: bool = False) -> Received:
        """Read `count` replies; never raises on a broken connection (see Received). Error replies, LOADING
        included, are returned as they are: the router decides what each one means."""
        out: list[Reply] = []
        got = b""
        try:
            sock = self._socket()
            reader = self._reader
            if expect_ok and not reader.has_data():
                expected = OK * count
                while len(got) < len(expected) and expected.startswith(got):
                    got += receive_chunk(sock)
                if got == expected:
                    self.pending -= count
                    return Received(None)
                reader.feed(got)
                got = b""
            while len(out) < count:
                reply = reader.gets()
                if reply is False:
                    reader.feed(receive_chunk(sock))
                else:
                    out.append(reply)
        except (OSError, hiredis.ProtocolError, rex.InvalidResponse) as exc:
            return Received(out + _complete(got, count - len(out)), self._lost(exc))
        self.pending -= count
        return Received(out)


def _complete(data: bytes, limit: int) -> list[Reply]:
    """The complete replies in bytes a broken connection delivered (its last reply may be cut)."""
    reader: Any = hiredis.Reader()
    reader.feed(data)
    out: list[Reply] = []
    try:
        while len(out) < limit:
            reply = reader.gets()
            if reply is False:
                break
            out.append(reply)
    except hiredis.ProtocolError:
        pass
    return out
