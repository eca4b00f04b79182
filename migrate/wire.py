"""RESP on the hot paths: commands packed into one buffer, replies parsed by hiredis straight from the socket.

redis-py's pipeline spends ~10-13 µs of Python per command (command stack, response callbacks); run and verify send
several commands per key, so that overhead would dominate (the plain redis-py loop measured 51k keys/s). Here a batch
is one `sendall` and its replies one hiredis parse: ~1.5 µs per command. The handshake (AUTH, TLS, SELECT, client
name) stays with redis-py: its connection is opened, then its socket is used directly.

Error replies are returned, never raised, as `ReplyError` (a redis-py ResponseError, so migrate.connection.translate
maps them like any other server error); `LOADING` comes back as redis-py's BusyLoadingError and is raised, since it is
transient (the server restarts) and the whole round must be retried.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final

import hiredis
import redis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import raw_connection

Arg = bytes | str | int | float
Reply = Any  # bytes | int | list[Reply] | None | ReplyError
RECV_BYTES: Final = 1 << 20
OK: Final = b"+OK\r\n"


class ReplyError(rex.ResponseError):
    """An error reply of the server, returned in place of the reply (one type for every channel)."""


def reply_error(message: str) -> Exception:
    """hiredis' factory for error replies: LOADING as redis-py's transient BusyLoadingError, the rest ReplyError."""
    if message.startswith("LOADING"):
        return rex.BusyLoadingError(message)
    return ReplyError(message)


def is_error(reply: Reply) -> bool:
    """An error reply (a ReplyError, or LOADING as BusyLoadingError where a caller reads replies raw)."""
    return isinstance(reply, Exception)


# -- encoding ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packed:
    """Commands already in protocol form (built from a per-key template by the caller), and how many there are."""

    data: bytes
    count: int


Commands = Sequence[Sequence[Arg]] | Packed


def _arg(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode() if isinstance(value, float) else str(value).encode()


def pack(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = value if type(value) is bytes else _arg(value)
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


pack_argv: Final[Callable[[Sequence[bytes]], bytes]] = getattr(hiredis, "pack_command", pack)
"""A command whose arguments are all bytes, as RESP: hiredis's C encoder (about 0.3 µs for a SET, twice as fast as
`pack`); `pack` where this hiredis lacks it. Not for floats: `pack` writes their exact repr()."""


ARG_BYTES: Final = [n + 5 + len(str(n)) for n in range(100_000)]  # a list: the fastest lookup table from C
"""Bytes of one bulk string of n bytes in canonical RESP, `$<n>\\r\\n<n bytes>\\r\\n`, for n below 100,000."""
HEAD_BYTES: Final = [3 + len(str(n)) for n in range(10_000)]
"""Bytes of an array header of n elements in canonical RESP, `*<n>\\r\\n`, for n below 10,000."""


PassPlan = tuple[bool, int, Callable[[Any], bool] | None]
"""For a command name: (every such command passes as it is, or those with this many arguments, or those this test
passes): how a reader of a command stream (replication, AOF) gathers runs of commands forwarded as their bytes."""

Splice = tuple[int, bytes]
"""How a command's canonical RESP changes: (how many of its last bytes are replaced (its whole size: all of it), by
what)."""


def resp_size(argv: Sequence[bytes]) -> int:
    """Bytes of a command in canonical RESP (shortest lengths, bulk strings only): what a server writes when it
    propagates a command to its replicas and its AOF."""
    try:
        return HEAD_BYTES[len(argv)] + sum(map(ARG_BYTES.__getitem__, map(len, argv)))
    except IndexError:  # beyond the tables
        size = len(str(len(argv))) + 3
        for arg in argv:
            n = len(arg)
            size += n + len(str(n)) + 5
        return size


def resp_total(commands: Sequence[Sequence[bytes]]) -> int:
    """Bytes of several commands in canonical RESP, summed in C over the lengths (a run of stream commands is
    measured at once, not command by command)."""
    try:
        return (sum(map(ARG_BYTES.__getitem__, map(len, chain.from_iterable(commands))))
                + sum(map(HEAD_BYTES.__getitem__, map(len, commands))))
    except IndexError:  # an argument of 100,000 bytes or more, or 10,000 arguments or more
        return sum(map(resp_size, commands))


def pack_all(commands: Iterable[Sequence[Arg]]) -> bytes:
    return b"".join([pack(c) for c in commands])


def per_key(commands: Sequence[Sequence[str]], keys: Sequence[bytes]) -> Packed:
    """Each command applied to each key (key-major order): the command parts are packed once, not per key."""
    prefixes = [_with_one_more_arg(cmd) for cmd in commands]
    data = b"".join(p + b"$%d\r\n%b\r\n" % (len(k), k) for k in keys for p in prefixes)
    return Packed(data, len(prefixes) * len(keys))


def _with_one_more_arg(cmd: Sequence[str]) -> bytes:
    """The packed command with its array header counting one more argument (the key appended by per_key)."""
    packed = pack(cmd)
    return b"*%d\r\n" % (len(cmd) + 1) + packed[len(b"*%d\r\n" % len(cmd)):]


def count_of(commands: Commands) -> int:
    return commands.count if isinstance(commands, Packed) else len(commands)


def _data(commands: Commands) -> bytes:
    return commands.data if isinstance(commands, Packed) else pack_all(commands)


def new_reader() -> Any:
    return hiredis.Reader(replyError=reply_error, protocolError=rex.InvalidResponse)


def parse(data: bytes, count: int) -> list[Reply]:
    """The replies of a raw round (the bytes a server sent for `count` commands), errors as ReplyError objects."""
    reader = new_reader()
    reader.feed(b"*%d\r\n" % count)  # one array: hiredis builds the whole list in C (see Channel._recv_array)
    reader.feed(data)
    replies = reader.gets(False)
    if replies is False:
        raise rex.InvalidResponse(f"a raw round ended after fewer than {count} replies")
    if reader.gets(False) is not False:
        raise rex.InvalidResponse(f"a raw round held more than {count} replies")
    return list(replies)


# -- the connection ----------------------------------------------------------------------------------------------------


class Channel:
    """One connection to one database of one server: send many commands, then read their replies in order.

    It connects on first use; any socket failure closes it and raises redis-py's ConnectionError (transient: the
    caller's retry reconnects). Built from an endpoint, or over a connection of an open redis-py client (`over`).
    """

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, role: str = "server",
                 db: int | None = None) -> None:
        self.endpoint = endpoint if db is None else endpoint.with_db(db)
        self.settings = settings
        self.role = role
        self.db = self.endpoint.db
        self.client: redis.Redis | None = None  # set by `over`
        self.pending = 0
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._reader: Any = None

    @classmethod
    def over(cls, client: redis.Redis, role: str = "server") -> Channel:
        """A channel over one connection of `client`'s pool (given back on close); `client` stays usable."""
        kwargs = client.connection_pool.connection_kwargs
        # Only for messages: the connection itself comes from the client's pool, with its credentials.
        endpoint = Endpoint("unix", path=kwargs["path"]) if "path" in kwargs else Endpoint(
            "redis", str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379)))
        channel = cls(endpoint.with_db(int(kwargs.get("db") or 0)), ConnectionSettings(), role)
        channel.client = client
        return channel

    def connect(self) -> Channel:
        if self._sock is None:
            conn: Any = self._new_connection()
            conn.connect()
            sock = conn._sock  # redis-py has no public accessor; the handshake above is all we need from it
            if sock is None:
                raise rex.ConnectionError(f"no socket after connecting to {self.role} {self.endpoint}")
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn, self._sock, self._reader = conn, sock, new_reader()
        return self

    def _new_connection(self) -> Any:
        if self.client is not None:
            return self.client.connection_pool.get_connection()
        return raw_connection(self.endpoint, self.settings)

    # -- sending and receiving ---------------------------------------------------------------------------------------

    def send(self, commands: Commands) -> None:
        count = count_of(commands)
        if count:
            self.send_packed(_data(commands), count)

    def send_packed(self, data: bytes, count: int) -> None:
        try:
            self._socket().sendall(data)
        except OSError as exc:
            raise self._lost(exc) from exc
        self.pending += count

    def recv(self, count: int) -> list[Reply]:
        """The next `count` replies. A LOADING reply raises (the server restarts: the round must be redone)."""
        try:
            sock, reader = self._socket(), self._reader
            replies = self._drain(reader, count) if reader.has_data() else []
            rest = count - len(replies)
            if rest > 1 and not reader.has_data():
                replies += self._recv_array(sock, reader, rest)
            elif rest:
                replies += self._recv_each(sock, reader, rest)
        except (OSError, hiredis.ProtocolError, rex.InvalidResponse) as exc:
            raise self._lost(exc) from exc
        self.pending -= count
        if any(issubclass(kind, rex.ConnectionError) for kind in set(map(type, replies))):  # one pass in C
            self.reset()
            raise next(r for r in replies if isinstance(r, rex.ConnectionError))
        return replies

    @staticmethod
    def _drain(reader: Any, count: int) -> list[Reply]:
        """The complete replies already read (at most `count`): with none left half-read, the rest can then be read
        as one array (see _recv_array)."""
        out: list[Reply] = []
        while len(out) < count:
            reply = reader.gets(False)
            if reply is False:
                break
            out.append(reply)
        return out

    @staticmethod
    def _recv_each(sock: socket.socket, reader: Any, count: int) -> list[Reply]:
        out: list[Reply] = []
        append, gets = out.append, reader.gets
        while len(out) < count:
            reply = gets(False)
            if reply is False:
                _feed(sock, reader)
                continue
            append(reply)
        return out

    @staticmethod
    def _recv_array(sock: socket.socket, reader: Any, count: int) -> list[Reply]:
        """The next `count` replies read as the elements of one array: with no unread byte in the reader, an array
        header fed now comes right before them, and hiredis builds the whole list in C (about 4x faster than one
        gets() per reply)."""
        reader.feed(b"*%d\r\n" % count)
        replies = reader.gets(False)
        while replies is False:
            _feed(sock, reader)
            replies = reader.gets(False)
        return list(replies)

    def call(self, data: bytes, count: int) -> list[Reply]:
        """Send pre-encoded commands and read their `count` replies."""
        self.send_packed(data, count)
        return self.recv(count)

    def call_ok(self, data: bytes, count: int) -> list[Reply] | None:
        """Like call, for commands that answer +OK: None when every reply is +OK (compared as bytes, not parsed)."""
        self.send_packed(data, count)
        if self._reader.has_data():
            return self.recv(count)
        expected = OK * count
        got = b""
        try:
            sock = self._socket()
            while len(got) < len(expected) and expected.startswith(got):
                got += receive_chunk(sock)
        except OSError as exc:
            raise self._lost(exc) from exc
        if got == expected:
            self.pending -= count
            return None
        self._reader.feed(got)
        return self.recv(count)

    def run(self, commands: Commands) -> list[Reply]:
        self.send(commands)
        return self.recv(count_of(commands))

    def command(self, *args: Arg) -> Reply:
        return self.call(pack(args), 1)[0]

    # Raw rounds: the replies of a round as the bytes the server sent, ended by the reply to PING <token>. Two servers
    # holding the same data send the same bytes, so a whole batch can be compared without parsing a single reply.

    def send_marked(self, data: bytes, token: bytes) -> None:
        self.send_packed(data + pack((b"PING", token)), 0)

    def recv_marked(self, token: bytes) -> bytes:
        marker = b"$%d\r\n%s\r\n" % (len(token), token)
        received = bytearray()
        try:
            sock = self._socket()
            while not received.endswith(marker):
                received += receive_chunk(sock)
        except OSError as exc:
            raise self._lost(exc) from exc
        return bytes(received[:-len(marker)])

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock

    def _lost(self, exc: BaseException) -> rex.ConnectionError:
        self.reset()
        return rex.ConnectionError(f"lost the connection to {self.role} {self.endpoint}: {exc}")

    def reset(self) -> None:
        """Drop the connection (replies may be half read); the next use reconnects."""
        conn, self._conn, self._sock, self._reader = self._conn, None, None, None
        self.pending = 0
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.disconnect()

    def close(self) -> None:
        conn = self._conn
        if conn is not None and self.client is not None and not self.pending:
            self._conn = self._sock = self._reader = None
            self.client.connection_pool.release(conn)  # fully read: the pool may reuse it
            return
        self.reset()


def receive_chunk(sock: socket.socket) -> bytes:
    chunk = sock.recv(RECV_BYTES)
    if not chunk:
        raise ConnectionResetError("connection closed by the server")
    return chunk


def _feed(sock: socket.socket, reader: Any) -> None:
    reader.feed(receive_chunk(sock))
