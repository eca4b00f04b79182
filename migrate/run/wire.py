"""The hot path's connection: commands pre-encoded into one buffer per batch, replies parsed by hiredis.

redis-py's pipeline spends ~10 µs of Python per command (the plain loop measured 51k keys/s); here a batch of 1000
RESTOREs is one `sendall` and, when every reply is `+OK`, one byte comparison. The handshake (AUTH, TLS, SELECT,
client name) stays with redis-py: its connection is opened, then its socket is used directly.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Final

import hiredis
import redis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import client_kwargs
from migrate.wire import Arg, pack

RECV_BYTES: Final = 1 << 20
OK: Final = b"+OK\r\n"
Reply = Any  # bytes | int | list | None | hiredis.ReplyError


encode = pack  # one RESP encoder for every verb (migrate.wire.pack)


def encode_all(commands: Iterable[Sequence[Arg]]) -> bytes:
    return b"".join(encode(c) for c in commands)


def is_error(reply: Reply) -> bool:
    return isinstance(reply, hiredis.ReplyError)


class Link:
    """One connection to one database of one server. Any socket failure closes it; the next call reconnects."""

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, role: str, db: int) -> None:
        self.endpoint = endpoint.with_db(db)
        self.settings = settings
        self.role = role
        self.db = db
        self._conn: Any = None
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            # RESP2 on purpose: scores and doubles stay the server's exact text, maps stay flat arrays.
            pool = redis.ConnectionPool(**{**client_kwargs(self.endpoint, self.settings), "protocol": 2})
            conn: Any = pool.make_connection()
            conn.connect()
            sock = conn._sock  # redis-py has no public accessor; the handshake above is all we need from it
            if sock is None:
                raise rex.ConnectionError(f"no socket after connecting to {self.role} {self.endpoint}")
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn, self._sock = conn, sock
        return self._sock

    def call(self, data: bytes, replies: int) -> list[Reply]:
        """Send pre-encoded commands and read `replies` replies (errors are returned as ReplyError objects)."""
        try:
            sock = self._socket()
            sock.sendall(data)
            return self._read(sock, hiredis.Reader(), replies)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise rex.ConnectionError(f"lost the connection to {self.role} {self.endpoint}: {exc}") from exc

    def call_ok(self, data: bytes, replies: int) -> list[Reply] | None:
        """Like call, for commands that answer +OK: None when every reply is +OK (compared as bytes)."""
        try:
            sock = self._socket()
            sock.sendall(data)
            expected = OK * replies
            got = b""
            while len(got) < len(expected) and expected.startswith(got):
                chunk = sock.recv(RECV_BYTES)
                if not chunk:
                    raise ConnectionResetError("connection closed by the server")
                got += chunk
            if got == expected:
                return None
            reader = hiredis.Reader()
            reader.feed(got)
            return self._read(sock, reader, replies)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise rex.ConnectionError(f"lost the connection to {self.role} {self.endpoint}: {exc}") from exc

    def command(self, *args: Arg) -> Reply:
        return self.call(encode(args), 1)[0]

    @staticmethod
    def _read(sock: socket.socket, reader: Any, count: int) -> list[Reply]:
        out: list[Reply] = []
        append = out.append
        gets = reader.gets
        while len(out) < count:
            reply = gets()
            if reply is False:
                chunk = sock.recv(RECV_BYTES)
                if not chunk:
                    raise ConnectionResetError("connection closed by the server")
                reader.feed(chunk)
                continue
            append(reply)
        return out

    def close(self) -> None:
        conn, self._conn, self._sock = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.disconnect()
