"""The primary side: migrate as the primary of the target (`REPLICAOF <our address>` on the target).

    with ReplicaServer() as primary:
        target.execute_command("REPLICAOF", *primary.address)
        primary.full_sync(file_chunks("dump.rdb"))            # answers the target's PSYNC, streams the RDB
        primary.wait_online(timeout=60)                       # the target loaded it (its first REPLCONF ACK)
        offset = primary.send((b"SET", b"k", b"v"), db=0)     # SELECT inserted when the database changes
        primary.wait_ack(primary.request_ack(), timeout=10)   # the target applied everything up to there

The handshake a replica sends is answered as replication.c's primary does: PING -> +PONG, AUTH -> +OK (checked when
a password is configured), every REPLCONF -> +OK (listening-port, ip-address, capa, version are recorded), PSYNC ->
+FULLRESYNC <our replid> <our offset> or +CONTINUE. The RDB goes in the diskless form (`$EOF:<40-char mark>`, then
the bytes, then the mark), so its length need not be known; before it, a bare newline every second keeps the replica
waiting (it counts newlines as liveness before the RDB, replication.c readSyncBulkPayload). After the mark nothing is
sent until the replica's first `REPLCONF ACK`: a replica reading a diskless RDB to disk finds the end only when the
mark is the last thing it has read (readSyncBulkPayload compares the last 40 bytes of each read).

Threads: one accepts connections, one per connection reads the replica's requests (handshake, ACKs), one ticks (the
keepalive newlines, PING every `ping_period` seconds into the stream as repl-ping-replica-period, dropping a replica
whose last ACK is older than `replica_timeout`). The caller's thread streams the RDB and sends commands; every write
to the stream and to the socket holds one lock, so the stream's order is the order of the calls.

Reconnections: the stream is kept in a bounded backlog (`backlog_bytes`). A replica that comes back with our replid and
an offset the backlog still covers gets `+CONTINUE` and the missing bytes, without the caller's help; otherwise its
PSYNC waits (kept alive by newlines) until the caller calls full_sync() again with a fresh RDB, which declares the state
as of the current offset. `status().state` says which.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from migrate.errors import ConfigError, MigrationError
from migrate.logs import get_logger
from migrate.replication.errors import LinkLostError
from migrate.replication.protocol import GETACK, ID_LEN, PING, RequestParser, pack, random_id

log = get_logger(__name__)

TICK: Final = 0.2
CHUNK: Final = 1 << 20


class PrimaryState(StrEnum):
    WAITING = "waiting"  # no replica connected
    HANDSHAKE = "handshake"  # a replica is connected, it has not sent PSYNC yet
    PSYNC_PENDING = "psync-pending"  # a replica waits for a full sync: full_sync() is needed
    PREPARING = "preparing"  # +FULLRESYNC sent, waiting for the first RDB chunk
    TRANSFER = "transfer"  # sending the RDB
    LOADING = "loading"  # RDB sent, waiting for the replica's first ACK (it loads the RDB meanwhile)
    ONLINE = "online"  # commands flow


@dataclass(frozen=True)
class PrimaryOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # when set, replicas must AUTH (their primaryauth)
    replid: str | None = None  # 40 characters; random by default
    ping_period: float = 10.0  # repl-ping-replica-period
    keepalive_period: float = 1.0  # newlines to a replica waiting for its RDB
    backlog_bytes: int = 16 << 20  # stream kept for partial resyncs (and for commands sent while the replica loads)
    replica_timeout: float = 60.0  # repl-timeout: an online replica silent this long is dropped


@dataclass(frozen=True)
class ReplicaHello:
    """What a replica sent during its handshake (AUTH arguments replaced by ***)."""

    peer: str
    requests: tuple[tuple[bytes, ...], ...]
    listening_port: int | None
    capabilities: frozenset[str]
    version: str | None
    psync: tuple[str, int] | None  # (replid, offset) it asked for


@dataclass(frozen=True)
class FullSyncResult:
    replid: str
    offset: int  # the offset the RDB stands for
    rdb_bytes: int
    seconds: float


@dataclass(frozen=True)
class PrimaryStatus:
    state: PrimaryState
    replid: str
    offset: int  # our master_repl_offset: bytes written to the stream
    acked_offset: int  # the replica's last REPLCONF ACK
    ack_age: float | None  # seconds since that ACK
    full_syncs: int
    partial_syncs: int
    last_error: str | None


def file_chunks(path: Path | str, size: int = CHUNK) -> Iterator[bytes]:
    """An RDB file as chunks, for full_sync()."""
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


class _Replica:
    """One replica connection and what it said."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.parser = RequestParser()
        self.requests: list[tuple[bytes, ...]] = []
        self.capabilities: set[str] = set()
        self.listening_port: int | None = None
        self.version: str | None = None
        self.psync: tuple[str, int] | None = None
        self.authed = False
        self.alive = True

    def hello(self) -> ReplicaHello:
        return ReplicaHello(self.peer, tuple(self.requests), self.listening_port, frozenset(self.capabilities),
                            self.version, self.psync)

    def drop(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class ReplicaServer:
    """A minimal replication primary for one replica at a time."""

    def __init__(self, options: PrimaryOptions | None = None) -> None:
        self.options = opts = options or PrimaryOptions()
        self.replid = opts.replid or random_id()
        if len(self.replid) != ID_LEN:
            raise ConfigError(f"a replication id has {ID_LEN} characters, got {len(self.replid)}")
        self._listener = socket.create_server((opts.host, opts.port), backlog=4)
        self._lock = threading.RLock()  # the stream: offset, backlog, socket writes
        self._cond = threading.Condition()  # state and ACKs
        self._state = PrimaryState.WAITING
        self._replica: _Replica | None = None  # the replica the stream goes to (or will, after its full sync)
        self._offset = 0
        self._backlog = bytearray()
        self._backlog_start = 1  # offset of the backlog's first byte
        self._sync_offset = 0
        self._seldb = -1
        self._acked = 0
        self._ack_time: float | None = None
        self._full_syncs = self._partial_syncs = 0
        self._last_error: str | None = None
        self._last_hello: ReplicaHello | None = None
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept_loop, name="primary-accept", daemon=True),
                         threading.Thread(target=self._tick_loop, name="primary-tick", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def acked_offset(self) -> int:
        return self._acked

    @property
    def hello(self) -> ReplicaHello | None:
        """The handshake of the last replica that sent PSYNC."""
        return self._last_hello

    def status(self) -> PrimaryStatus:
        age = None if self._ack_time is None else time.monotonic() - self._ack_time
        return PrimaryStatus(self._state, self.replid, self._offset, self._acked, age, self._full_syncs,
                             self._partial_syncs, self._last_error)

    # -- caller: full sync ---------------------------------------------------------------------------------------------

    def wait_psync(self, timeout: float | None = None) -> ReplicaHello:
        """Wait until a replica asks for a full sync; its handshake."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._state is PrimaryState.PSYNC_PENDING, timeout):
                raise MigrationError(f"no replica asked this primary ({self._where()}) for a sync within "
                                     f"{timeout:g} s", "check that the target ran REPLICAOF with this address and "
                                     "can reach it, and read the target's log")
            assert self._replica is not None
            return self._replica.hello()

    def full_sync(self, chunks: Iterable[bytes], timeout: float | None = None) -> FullSyncResult:
        """Answer the waiting PSYNC with +FULLRESYNC at the current offset and stream `chunks` as the RDB.

        The RDB must hold the state as of the current offset (every command sent before counts as in it). Returns once
        the last byte is sent; wait_online() then waits until the replica has loaded it."""
        self.wait_psync(timeout)
        replica = self._replica
        assert replica is not None
        started, sent = time.monotonic(), 0
        with self._lock:
            offset = self._sync_offset = self._offset
            self._seldb = -1  # the next command selects its database (replicationSetupSlaveForFullResync)
            self._send_to(replica, b"+FULLRESYNC %s %d\r\n" % (self.replid.encode(), offset))
            self._set_state(PrimaryState.PREPARING)
        mark = random_id().encode()
        try:
            iterator = iter(chunks)
            first = next(iterator, b"")  # may take long (a source's snapshot): the ticker sends newlines meanwhile
            with self._lock:
                self._set_state(PrimaryState.TRANSFER)
                replica.sock.sendall(b"$EOF:" + mark + b"\r\n" + first)
            sent = len(first)
            for chunk in iterator:
                replica.sock.sendall(chunk)
                sent += len(chunk)
            replica.sock.sendall(mark)
        except OSError as exc:
            self._lose(replica, f"replica disconnected during the full sync after {sent} RDB bytes: {exc}")
            raise LinkLostError(f"the target replica {replica.peer} disconnected during the full sync after {sent} "
                                "RDB bytes", "it reconnects by itself: call full_sync() again with a fresh RDB",
                                snapshot_complete=False) from None
        except BaseException:
            self._lose(replica, "the RDB source failed during the full sync")
            raise
        with self._cond:
            self._full_syncs += 1
            if self._replica is replica and self._state is PrimaryState.TRANSFER:
                self._set_state(PrimaryState.LOADING)
        seconds = time.monotonic() - started
        log.info("full sync sent", replica=replica.peer, offset=offset, bytes=sent, seconds=round(seconds, 3))
        return FullSyncResult(self.replid, offset, sent, seconds)

    def wait_online(self, timeout: float | None = None) -> int:
        """Wait for the replica's first ACK after a full sync (it has loaded the RDB); the acknowledged offset."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._state is PrimaryState.ONLINE, timeout):
                raise MigrationError(f"the target replica did not come online within {timeout:g} s "
                                     f"(state {self._state.value}; {self._last_error or 'no error seen'})",
                                     "read the target's log: it may still be loading, or it refused the RDB")
            return self._acked

    # -- caller: the stream --------------------------------------------------------------------------------------------

    def send(self, argv: Sequence[bytes | str | int], db: int | None = None) -> int:
        """Append one command (after a SELECT when `db` differs from the stream's); the offset after it."""
        return self._append(self._packed(argv, db))

    def send_many(self, commands: Iterable[tuple[Sequence[bytes | str | int], int | None]]) -> int:
        """Append (argv, db) commands in one write; the offset after the last."""
        with self._lock:
            return self._append(b"".join(self._packed(argv, db) for argv, db in commands))

    def append(self, data: bytes, selected_db: int | None = None) -> int:
        """Append commands already encoded as RESP (a relay forwarding what it translated); `selected_db` is the
        database the data leaves selected (None: it selects none), so that a later send() selects correctly. The
        offset after them."""
        with self._lock:
            if selected_db is not None:
                self._seldb = selected_db
            return self._append(data)

    def new_history(self) -> str:
        """Start a new replication history: a new replid, the backlog emptied, the replica disconnected. Its
        reconnection then asks for a full sync (answered by the next full_sync()), never +CONTINUE of bytes that
        describe a state the next RDB replaces (a relay whose own source restarted). The new replid."""
        with self._lock:
            self.replid = random_id()
            self._backlog = bytearray()
            self._backlog_start = self._offset + 1
            replica = self._replica
        if replica is not None:
            self._lose(replica, "a new replication history began (new replid)")
        log.info("new replication history", replid=self.replid, offset=self._offset)
        return self.replid

    def request_ack(self) -> int:
        """Append `REPLCONF GETACK *`; returns the offset the replica's answer reports once it has applied everything
        before it (a replica's answer does not count the GETACK itself)."""
        with self._lock:
            before = self._offset
            self._append(GETACK)
            return before

    def wait_ack(self, offset: int, timeout: float | None = None) -> int:
        """Wait until the replica acknowledges at least `offset`; the acknowledged offset."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._acked >= offset, timeout):
                raise MigrationError(f"the target replica acknowledged offset {self._acked}, not {offset}, within "
                                     f"{timeout:g} s (state {self._state.value})",
                                     "the target may be slow or disconnected: see status() and the target's log")
            return self._acked

    def _packed(self, argv: Sequence[bytes | str | int], db: int | None) -> bytes:
        with self._lock:
            data = pack(argv)
            if db is not None and db != self._seldb:
                self._seldb = db
                data = pack((b"SELECT", str(db).encode())) + data
            return data

    def _append(self, data: bytes) -> int:
        with self._lock:
            self._backlog += data
            self._offset += len(data)
            excess = len(self._backlog) - self.options.backlog_bytes
            if excess > max(CHUNK, self.options.backlog_bytes // 4):  # trim in large steps: del is a memmove
                del self._backlog[:excess]
                self._backlog_start += excess
            replica = self._replica
            if replica is not None and self._state is PrimaryState.ONLINE:
                self._send_to(replica, data)
            return self._offset

    def _send_to(self, replica: _Replica, data: bytes) -> None:
        try:
            replica.sock.sendall(data)
        except OSError as exc:
            self._lose(replica, f"send failed: {exc}")

    # -- connections ---------------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            replica = _Replica(sock, f"{peer[0]}:{peer[1]}")
            threading.Thread(target=self._serve, args=(replica,), name=f"primary-conn {replica.peer}",
                             daemon=True).start()

    def _serve(self, replica: _Replica) -> None:
        reason = "the replica closed the connection"
        try:
            while replica.alive and not self._closed.is_set():
                data = replica.sock.recv(65536)
                if not data:
                    break
                for argv in replica.parser.feed(data):
                    self._request(replica, tuple(argv))
        except (OSError, ValueError) as exc:
            reason = f"connection error: {exc}"
        self._lose(replica, reason)

    def _request(self, replica: _Replica, argv: tuple[bytes, ...]) -> None:
        name = argv[0].upper()
        replica.requests.append(argv if name != b"AUTH" else (argv[0], *(b"***" for _ in argv[1:])))
        if name == b"REPLCONF" and len(argv) > 2 and argv[1].lower() == b"ack":
            self._on_ack(replica, int(argv[2]))
            return
        if self.options.password is not None and not replica.authed and name not in (b"AUTH", b"PING"):
            self._reply(replica, b"-NOAUTH Authentication required.")
        elif name == b"PING":
            self._reply(replica, b"-NOAUTH Authentication required." if self._needs_auth(replica) else b"+PONG")
        elif name == b"AUTH":
            self._auth(replica, argv[1:])
        elif name == b"REPLCONF":
            self._replconf(replica, argv[1:])
        elif name == b"PSYNC" and len(argv) == 3:
            self._psync(replica, argv[1].decode("ascii", "replace"), int(argv[2]))
        else:
            self._reply(replica, b"-ERR this primary only serves replicas (REPLCONF, PSYNC)")

    def _needs_auth(self, replica: _Replica) -> bool:
        return self.options.password is not None and not replica.authed

    def _auth(self, replica: _Replica, args: tuple[bytes, ...]) -> None:
        opts = self.options
        user, password = (args[0], args[1]) if len(args) == 2 else (b"default", args[0] if args else b"")
        wanted_user = (opts.username or "default").encode()
        if opts.password is None or (password == opts.password.encode() and user == wanted_user):
            replica.authed = True
            self._reply(replica, b"+OK")
        else:
            self._reply(replica, b"-WRONGPASS invalid username-password pair or user is disabled.")

    def _replconf(self, replica: _Replica, args: tuple[bytes, ...]) -> None:
        for key, value in zip(args[::2], args[1::2], strict=False):
            option = key.lower()
            if option == b"listening-port":
                replica.listening_port = int(value)
            elif option == b"capa":
                replica.capabilities.add(value.decode("ascii", "replace").lower())
            elif option == b"version":
                replica.version = value.decode("ascii", "replace")
        if len(args) >= 2 and args[0].lower() == b"getack":
            return  # a replica never asks us, but GETACK has no reply anyway
        self._reply(replica, b"+OK")

    def _psync(self, replica: _Replica, replid: str, offset: int) -> None:
        replica.psync = (replid, offset)
        with self._lock:
            previous = self._replica
            if previous is not None and previous is not replica:
                previous.drop()  # a replica reconnects when its old link died: the newest connection wins
            self._replica = replica
            self._last_hello = replica.hello()
            if replid == self.replid and self._backlog_start <= offset <= self._offset + 1:
                self._continue(replica, offset)
                return
            self._set_state(PrimaryState.PSYNC_PENDING)
        log.info("replica asks for a full sync", replica=replica.peer, replid=replid, offset=offset)

    def _continue(self, replica: _Replica, offset: int) -> None:
        header = b"+CONTINUE %s\r\n" % self.replid.encode() if "psync2" in replica.capabilities else b"+CONTINUE\r\n"
        self._send_to(replica, header + bytes(self._backlog[offset - self._backlog_start:]))
        with self._cond:
            self._partial_syncs += 1
            self._ack_time = time.monotonic()
            self._set_state(PrimaryState.ONLINE)
        log.info("replica continues", replica=replica.peer, offset=offset, bytes=self._offset + 1 - offset)

    def _on_ack(self, replica: _Replica, offset: int) -> None:
        with self._lock:
            if replica is not self._replica:
                return
            if self._state is PrimaryState.LOADING:
                self._go_online(replica)
        with self._cond:
            self._acked = max(self._acked, offset) if self._state is PrimaryState.ONLINE else offset
            self._ack_time = time.monotonic()
            self._cond.notify_all()

    def _go_online(self, replica: _Replica) -> None:
        """First ACK after a full sync: send what was appended while the replica loaded (from the backlog)."""
        start = self._sync_offset + 1
        if start < self._backlog_start:
            self._lose(replica, f"the backlog ({self.options.backlog_bytes} bytes) overflowed while the replica "
                                "loaded the RDB: raise backlog_bytes or wait_online() before sending")
            return
        self._acked = 0
        self._set_state(PrimaryState.ONLINE)
        pending = bytes(self._backlog[start - self._backlog_start:])
        if pending:
            self._send_to(replica, pending)

    def _lose(self, replica: _Replica, reason: str) -> None:
        replica.drop()
        with self._lock, self._cond:
            if replica is self._replica:
                self._replica = None
                self._last_error = reason
                self._set_state(PrimaryState.WAITING)
                log.info("replica disconnected", replica=replica.peer, reason=reason)

    def _reply(self, replica: _Replica, line: bytes) -> None:
        with self._lock:
            self._send_to(replica, line + b"\r\n")

    def _set_state(self, state: PrimaryState) -> None:
        with self._cond:
            self._state = state
            self._cond.notify_all()

    # -- the ticker ----------------------------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        next_keepalive = next_ping = time.monotonic()
        while not self._closed.wait(TICK):
            now = time.monotonic()
            replica, state = self._replica, self._state
            if replica is None:
                continue
            if state in (PrimaryState.PSYNC_PENDING, PrimaryState.PREPARING) and now >= next_keepalive:
                next_keepalive = now + self.options.keepalive_period
                with self._lock:
                    if self._state in (PrimaryState.PSYNC_PENDING, PrimaryState.PREPARING):
                        self._send_to(replica, b"\n")
            if state is PrimaryState.ONLINE:
                if now >= next_ping:
                    next_ping = now + self.options.ping_period
                    self._append(PING)
                if self._ack_time is not None and now - self._ack_time > self.options.replica_timeout:
                    self._lose(replica, f"no ACK from the replica for {self.options.replica_timeout:g} s")

    def _where(self) -> str:
        host, port = self.address
        return f"{host}:{port}"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        replica = self._replica
        if replica is not None:
            replica.drop()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ReplicaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
