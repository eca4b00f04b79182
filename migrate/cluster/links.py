"""The connection to one cluster node: run's `Link` (redis-py handshake, then the raw socket and hiredis), with

- `send` and `receive` split, so a router can write every node's batch before reading any (the nodes work in parallel);
- `receive` returning what it did read when the connection breaks (those replies are definite; the rest unknown);
- TLS and unix sockets, which run's Link cannot open (it hands redis-py's bare ConnectionPool `ssl=True` or
  `unix_socket_path`, and the pool's default connection class refuses both: TypeError);
- READONLY sent after every (re)connection when `readonly` is set, for reads from a replica (without it a replica
  answers MOVED to its primary for every keyed command: valkey-io/valkey src/cluster.c getNodeByQuery).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Final

import hiredis
import redis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import client_kwargs
from migrate.run.wire import OK, RECV_BYTES, Link, Reply, encode, is_error

READONLY: Final = encode(("READONLY",))


@dataclass(frozen=True, slots=True)
class Received:
    """Replies of one node's round. `replies` None: every reply was +OK (expect_ok). With `error` set, the connection
    broke after `len(replies)` complete replies: those commands ran, the others may or may not have."""

    replies: list[Reply] | None
    error: rex.ConnectionError | None = None


class NodeLink(Link):
    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, role: str, db: int = 0, *,
                 readonly: bool = False) -> None:
        super().__init__(endpoint, settings, role, db)
        self.readonly = readonly

    def _socket(self) -> socket.socket:
        fresh = self._sock is None
        sock = self._open() if fresh else self._sock
        assert sock is not None
        if fresh and self.readonly:
            sock.sendall(READONLY)
            reply = self._read(sock, hiredis.Reader(), 1)[0]
            if is_error(reply):
                self.close()
                raise rex.ResponseError(f"READONLY refused by {self.role} {self.endpoint}: {reply}")
        return sock

    def _open(self) -> socket.socket:
        """Link._socket with the connection class redis-py's ConnectionPool needs for TLS and unix sockets (it takes
        neither `ssl` nor `unix_socket_path`: redis.Redis picks the class, a bare pool does not)."""
        pool = redis.ConnectionPool(**pool_kwargs(self.endpoint, self.settings))
        conn: Any = pool.make_connection()
        conn.connect()
        sock: socket.socket | None = conn._sock  # no public accessor; the handshake is all we need from redis-py
        if sock is None:
            raise rex.ConnectionError(f"no socket after connecting to {self.role} {self.endpoint}")
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn, self._sock = conn, sock
        return sock

    def connect(self) -> None:
        """Open the connection now if it is not open (redis-py's errors: AuthenticationError, ConnectionError, ...)."""
        self._socket()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def send(self, data: bytes) -> None:
        """Write pre-encoded commands (connecting first if needed). A failure while writing closes the connection and
        raises ConnectionError: part of the data may have reached the server."""
        sock = self._socket()
        try:
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise rex.ConnectionError(f"lost the connection to {self.role} {self.endpoint}: {exc}") from exc

    def receive(self, count: int, *, expect_ok: bool = False) -> Received:
        """Read `count` replies; never raises on a broken connection (see Received)."""
        reader = hiredis.Reader()
        out: list[Reply] = []
        pending = b""  # bytes read but not yet fed to the reader (the +OK comparison)
        try:
            sock = self._sock
            if sock is None:
                raise ConnectionResetError("not connected")
            if expect_ok:
                expected = OK * count
                while len(pending) < len(expected) and expected.startswith(pending):
                    pending += _recv(sock)
                if pending == expected:
                    return Received(None)
            reader.feed(pending)
            pending = b""
            while len(out) < count:
                reply = reader.gets()
                if reply is False:
                    reader.feed(_recv(sock))
                else:
                    out.append(reply)
            return Received(out)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            reader.feed(pending)
            out += _complete(reader, count - len(out))
            return Received(out, rex.ConnectionError(f"lost the connection to {self.role} {self.endpoint}: {exc}"))


def pool_kwargs(endpoint: Endpoint, settings: ConnectionSettings) -> dict[str, Any]:
    """client_kwargs for a bare ConnectionPool: RESP2 (scores and doubles stay the server's text), and the connection
    class chosen the way redis.Redis chooses it."""
    kwargs: dict[str, Any] = {**client_kwargs(endpoint, settings), "protocol": 2}
    if kwargs.pop("ssl", False):
        kwargs["connection_class"] = redis.SSLConnection
    elif "unix_socket_path" in kwargs:
        kwargs["path"] = kwargs.pop("unix_socket_path")
        kwargs["connection_class"] = redis.UnixDomainSocketConnection
    return kwargs


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(RECV_BYTES)
    if not chunk:
        raise ConnectionResetError("connection closed by the server")
    return chunk


def _complete(reader: Any, limit: int) -> list[Reply]:
    """The complete replies a reader holds (a broken connection's last reply may be cut)."""
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
