"""A snapshot of a live source over the replication protocol, like `redis-cli --rdb`, streamed (never all in memory).

We connect as a replica that only wants the RDB: `REPLCONF capa eof` (lets a diskless primary stream it),
`REPLCONF rdb-only 1` (Redis 7.0+: the primary drops us after the file instead of feeding us its write stream), then
`SYNC`. The primary answers with newlines while it prepares the file, then either `$<length>\\r\\n<bytes>` or, when it
streams diskless, `$EOF:<40-byte mark>\\r\\n<bytes><mark>`. Our file object yields exactly the RDB bytes.

Whether the source writes the snapshot to its own disk is the source's choice (`repl-diskless-sync`); the plan says
which. The source's data is never modified.
"""

from __future__ import annotations

import contextlib
import io
import socket
from typing import Any, Final

from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import raw_connection, translate
from migrate.errors import MigrateError, MigrationError

MARK_LEN: Final = 40
RECV: Final = 1 << 20


class ReplicationSnapshot(io.RawIOBase):
    """The RDB bytes the source sends to a new replica, as a readable binary stream."""

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, timeout: float = 600.0) -> None:
        super().__init__()
        self.endpoint = endpoint
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._remaining: int | None = None  # bytes left with a $<length> header
        self._mark: bytes | None = None  # end mark with a $EOF: header
        self._done = False
        self.diskless = False
        self.size: int | None = None
        self._open(settings, timeout)

    def _open(self, settings: ConnectionSettings, timeout: float) -> None:
        try:
            self._conn = raw_connection(self.endpoint, settings)
            self._conn.connect()
            self._sock = self._conn._sock  # raw socket: the replication stream is not RESP replies
            assert self._sock is not None
            self._sock.settimeout(timeout)  # the primary may take a while to fork and start the transfer
            self._replconf(b"capa", b"eof")
            self._replconf(b"rdb-only", b"1", optional=True)
            self._sock.sendall(b"*1\r\n$4\r\nSYNC\r\n")
            self._header()
        except MigrateError:
            self.close()
            raise
        except (rex.RedisError, OSError) as exc:
            self.close()
            raise translate(exc, self.endpoint, "source") from exc

    def _replconf(self, name: bytes, value: bytes, optional: bool = False) -> None:
        assert self._sock is not None
        self._sock.sendall(b"*3\r\n$8\r\nREPLCONF\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(value), value))
        line = self._line()
        if line.startswith(b"-") and not optional:
            self._refused(line)

    def _refused(self, line: bytes) -> None:
        text = line[1:].decode("utf-8", "replace")
        error = translate(rex.ResponseError(text), self.endpoint, "source")
        if type(error) is MigrationError:
            error = MigrationError(f"source {self.endpoint} refused the replication handshake: {text}",
                                   "the user needs the SYNC and REPLCONF commands (ACL +sync +replconf), or use "
                                   "--from-rdb with a backup file")
        raise error

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r")

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(RECV)
        if not chunk:
            raise ConnectionResetError("the source closed the replication connection")
        self._buf += chunk

    def _header(self) -> None:
        line = b""
        while not line:  # empty lines are the primary's keepalives while it prepares the snapshot
            line = self._line()
        if line.startswith(b"-"):
            self._refused(line)
        if not line.startswith(b"$"):
            raise MigrationError(f"unexpected reply to SYNC from source {self.endpoint}: {line[:80]!r}")
        if line.startswith(b"$EOF:"):
            self._mark = line[5:5 + MARK_LEN]
            self.diskless = True
        else:
            self._remaining = self.size = int(line[1:])

    # -- io.RawIOBase --------------------------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._done or size == 0:
            return b""
        want = RECV if size is None or size < 0 else size
        try:
            return self._read_sized(want) if self._remaining is not None else self._read_marked(want)
        except (OSError, rex.RedisError) as exc:
            raise translate(exc, self.endpoint, "source") from exc

    def _read_sized(self, want: int) -> bytes:
        assert self._remaining is not None
        if not self._buf:
            self._fill()
        data = self._buf[:min(want, self._remaining)]
        self._buf = self._buf[len(data):]
        self._remaining -= len(data)
        self._done = self._remaining == 0
        return data

    def _read_marked(self, want: int) -> bytes:
        """Diskless: bytes up to the end mark; the last MARK_LEN bytes are held back until the mark is ruled out."""
        assert self._mark is not None
        while True:
            end = self._buf.find(self._mark)
            if end != -1:
                data = self._buf[:min(end, want)]
                self._buf = self._buf[len(data):]
                if len(data) == end:
                    self._done, self._buf = True, b""
                return data
            if len(self._buf) > MARK_LEN:
                take = min(want, len(self._buf) - MARK_LEN)
                data, self._buf = self._buf[:take], self._buf[take:]
                return data
            self._fill()

    def close(self) -> None:
        conn, self._conn, self._sock = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.disconnect()
        super().close()
