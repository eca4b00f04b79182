"""A lean pipelined request/response channel over one redis-py connection (verify, preflight; run's Link shares `pack`).

redis-py's Pipeline costs ~13 µs per command in Python (command stack, callbacks); verification sends several commands
per key on both servers, so that overhead would dominate. Here commands are packed once into one buffer and raw replies
(bytes, ints, lists, error objects) are read back without response callbacks: ~1.5 µs per command when the connection
uses hiredis. Connecting, AUTH, SELECT and TLS stay with redis-py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
from redis import exceptions as rex

try:  # the sentinel redis-py's hiredis parser configures its reader with (private: fall back if it moves)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NO_DATA
except ImportError:  # pragma: no cover - depends on the redis-py release
    _NO_DATA = None

Arg = bytes | str | int | float
Reply = Any  # bytes | int | list[Reply] | None | redis.ResponseError


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
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = value if type(value) is bytes else _arg(value)
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


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


RECV_BYTES = 1 << 20


def parse(data: bytes, count: int) -> list[Reply]:
    """Replies of a raw round, as the channel would have returned them (errors as ResponseError objects).
    The replies are read as the elements of one array (an array header put in front): hiredis then builds the whole
    list in C, about 4x faster than one gets() per reply."""
    reader = hiredis.Reader(replyError=rex.ResponseError, protocolError=rex.InvalidResponse)
    reader.feed(b"*%d\r\n" % count)
    reader.feed(data)
    replies = reader.gets(False)
    if replies is False:
        raise rex.InvalidResponse(f"a raw round ended after fewer than {count} replies")
    if reader.gets(False) is not False:
        raise rex.InvalidResponse(f"a raw round held more than {count} replies")
    return list(replies)


class Wire:
    """Send many commands, then read their replies in order. Error replies are returned, not raised."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.conn: Any = client.connection_pool.get_connection()
        self.pending = 0

    def send(self, commands: Commands) -> None:
        count = count_of(commands)
        if count:
            data = commands.data if isinstance(commands, Packed) else b"".join([pack(c) for c in commands])
            self.conn.send_packed_command([data], check_health=False)
            self.pending += count

    def recv(self, count: int) -> list[Reply]:
        parser = getattr(self.conn, "_parser", None)
        reader = getattr(parser, "_reader", None)
        fast = reader is not None and _NO_DATA is not None
        replies = self._recv_fast(parser, reader, count) if fast else self._recv_slow(count)
        self.pending -= count
        return replies

    def _recv_fast(self, parser: Any, reader: Any, count: int) -> list[Reply]:
        """hiredis parser: take replies straight from its reader, feeding it from the socket when it runs dry."""
        has_data = getattr(reader, "has_data", None)  # hiredis-py 2.1+
        if count > 1 and has_data is not None and not has_data():
            return self._recv_array(parser, reader, count)
        replies: list[Reply] = []
        append, gets, refill = replies.append, reader.gets, parser.read_from_socket
        try:
            for _ in range(count):
                reply = gets(False)
                while reply is _NO_DATA:
                    refill()
                    reply = gets(False)
                if isinstance(reply, rex.ConnectionError):  # e.g. LOADING while the server restarts
                    raise reply
                append(reply)
        except BaseException:
            self.reset()
            raise
        return replies

    def _recv_array(self, parser: Any, reader: Any, count: int) -> list[Reply]:
        """The next `count` replies as the elements of one array (see parse): the reader holds no unread byte, so
        an array header fed now comes right before them."""
        reader.feed(b"*%d\r\n" % count)
        try:
            replies = reader.gets(False)
            while replies is _NO_DATA:
                parser.read_from_socket()
                replies = reader.gets(False)
        except BaseException:
            self.reset()
            raise
        for reply in replies:
            if isinstance(reply, rex.ConnectionError):  # e.g. LOADING while the server restarts
                self.reset()
                raise reply
        return list(replies)

    def _recv_slow(self, count: int) -> list[Reply]:
        replies: list[Reply] = []
        for _ in range(count):
            try:
                replies.append(self.conn.read_response(disable_decoding=True))
            except rex.ResponseError as exc:
                replies.append(exc)
            except BaseException:
                self.reset()
                raise
        return replies

    # Raw rounds: the replies of a round as the bytes the server sent, ended by the reply to PING <token>. Two servers
    # holding the same data send the same bytes, so a whole batch can be compared without parsing a single reply.

    def send_marked(self, data: bytes, token: bytes) -> None:
        self.conn.send_packed_command([data + pack((b"PING", token))], check_health=False)

    def recv_marked(self, token: bytes) -> bytes:
        marker = b"$%d\r\n%s\r\n" % (len(token), token)
        sock = self.conn._sock
        if sock is None:
            raise rex.ConnectionError("connection closed")
        received = bytearray()
        try:
            while not received.endswith(marker):
                chunk = sock.recv(RECV_BYTES)
                if not chunk:
                    raise rex.ConnectionError("connection closed by the server")
                received += chunk
        except BaseException as exc:
            self.reset()
            if isinstance(exc, OSError):
                raise rex.ConnectionError(f"lost the connection: {exc}") from exc
            raise
        return bytes(received[:-len(marker)])

    def run(self, commands: Commands) -> list[Reply]:
        self.send(commands)
        return self.recv(count_of(commands))

    def call(self, *args: Arg) -> Reply:
        return self.run([args])[0]

    def reset(self) -> None:
        """Drop the connection (replies may be half read); the next send reconnects."""
        self.pending = 0
        self.conn.disconnect()

    def release(self) -> None:
        """Give the connection back to the client's pool (the client stays open)."""
        self.client.connection_pool.release(self.conn)

    def close(self) -> None:
        self.release()
        self.client.close()
