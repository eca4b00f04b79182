"""The replica side: migrate as a replica of the live source (full sync, write stream, ACKs, partial resync).

    link = ReplicaLink(source, settings)                      # PSYNC ? -1: a full sync
    with link.snapshot() as rdb: load(rdb)                     # exactly the RDB bytes
    link.ack(link.sync.offset)                                 # the target holds the snapshot
    for batch in iter(lambda: link.read_commands(1000, timeout=1.0), None):
        apply(batch); link.ack(batch[-1].offset)               # what the target has applied
    ... later, after a lost connection:
    link = ReplicaLink(source, settings, replid=pos.replid, offset=pos.offset, db=pos.db)   # +CONTINUE or not

Thread model: the handshake runs in the caller's thread (errors are raised there). Then one reader thread owns the
socket for good, in both directions: it reads as fast as its sink takes bytes, writes the snapshot to its sink (a
bounded memory queue, or a file with `LinkOptions(snapshot_path=)`), then the write stream to its sink (a bounded memory
queue, or a `DiskSpool` of segment files with `LinkOptions(spool_dir=)`), and it alone sends `REPLCONF ACK` (once a
second, and at once after a `REPLCONF GETACK *` or `ack(..., flush=True)`), so sends never race with reads, which a TLS
socket would not allow. The caller's thread parses commands out of the stream sink (hiredis) and computes offsets.

Offsets (see migrate/replication/protocol.py for the sources): each command is yielded with the replication offset of
its last byte, which is what the primary's `master_repl_offset` reads once it has sent nothing after it. `REPLCONF
GETACK *` is answered by the link and not yielded, but it counts in the offsets like every byte; the answer goes out
as soon as the reader thread sees it, with the applied offset (a real replica answers with the offset before the
GETACK, having applied everything before it; ours may be lower while the caller lags, which is the truth for WAIT).
SELECT and PING are yielded (the caller needs SELECT; PING is a no-op to apply). The link's ACKs carry the offset the
caller last passed to `ack()` (what the target has applied): until then, 0 after a full sync and the resumed offset
after a partial one. MULTI ... EXEC arrive as they were propagated: apply them whole and ack the EXEC's offset (a
real replica's offset does not move inside a transaction either).

The primary never waits for us while a disk sink is used: the snapshot file and the spool are written at socket
speed. With memory sinks a slow caller makes the link stop reading, the primary then buffers the stream for us up to
its `client-output-buffer-limit replica` and drops the link beyond it; the link stays alive meanwhile (ACKs go on).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

import hiredis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import raw_connection, translate, with_retries
from migrate.errors import ConfigError, MigrateError, MigrationError
from migrate.logs import get_logger
from migrate.replication.errors import LinkLostError, refusal
from migrate.replication.protocol import ID_LEN, ack_command, command_size, pack
from migrate.replication.spool import ChunkQueue, Closed, DiskSpool, FileSink, MemoryQueue, Sink
from migrate.wire import PassPlan, Splice, resp_total

log = get_logger(__name__)

RECV: Final = 1 << 20
FEED_BYTES: Final = 64 << 10  # hiredis parses several times faster fed 64 KiB at a time than 1 MiB (measured)
TICK: Final = 0.5  # longest sleep of the reader thread between checks
ARRIVAL_SPACING: Final = 0.005  # seconds between two arrival samples (a later chunk waits, keeping its own time)
MAX_ARRIVALS: Final = 200_000  # samples kept (~1,000 s of stream at the densest spacing; older ones are dropped)


@dataclass(frozen=True)
class LinkOptions:
    """How the link talks to the primary and where it keeps what it receives."""

    listening_port: int = 0  # announced with REPLCONF listening-port; 0 = unreachable (as `redis-cli --replica`)
    # `capa eof`: the primary may stream the RDB, after repl-diskless-sync-delay (5 s by default on 7.0+). Without it,
    # the primary saves the RDB to its own disk first and starts at once (unless another fork is running).
    diskless: bool = True
    use_sync: bool = False  # plain SYNC (sources that refuse PSYNC): full sync only, offsets relative, no ACKs
    snapshot_path: Path | None = None  # write the RDB here at socket speed (else: a bounded memory queue)
    spool_dir: Path | None = None  # spool the write stream to segment files here (else: a bounded memory queue)
    segment_bytes: int = 64 << 20
    max_spool_bytes: int | None = None  # pause reading beyond this much unread spool (the primary then buffers)
    memory_bytes: int = 8 << 20  # bound of each memory queue
    ack_interval: float = 1.0  # seconds between REPLCONF ACKs, as replicationCron does
    primary_timeout: float = 60.0  # silence (no byte, no PING, no keepalive newline) that counts as a lost primary


class SyncKind(StrEnum):
    FULL = "full"  # +FULLRESYNC: a snapshot, then the stream
    PARTIAL = "partial"  # +CONTINUE: the stream from the requested offset on
    SYNC = "sync"  # plain SYNC: a snapshot, then the stream, without replication ids or offsets


@dataclass(frozen=True)
class SyncStart:
    """How the primary answered: full or partial, from which replication id and offset, and why."""

    kind: SyncKind
    replid: str | None
    offset: int  # full: the offset the snapshot corresponds to; partial: the offset continued from; sync: 0
    requested: tuple[str, int] | None  # (replid, offset) asked to continue from, if any
    reason: str
    waited: float  # seconds between the PSYNC/SYNC and the primary's answer (repl-diskless-sync-delay shows here)

    @property
    def partial(self) -> bool:
        return self.kind is SyncKind.PARTIAL


class StreamCommand(NamedTuple):
    argv: tuple[bytes, ...]
    offset: int  # replication offset of the command's last byte
    db: int  # database the command applies to (for SELECT: the one it selects)


class RawRun(NamedTuple):
    """Consecutive commands of the stream that the reader's test passes as they are: the bytes the source sent."""

    data: bytes
    commands: int
    offset: int  # replication offset of the last command's last byte
    db: int  # database the commands apply to
    parsed: list[list[bytes]]  # the same commands parsed (what the test looked at; e.g. to count them by name)


Rewrite = Callable[[list[bytes]], Splice | None]
"""A command that does not pass as it is -> the splice that makes it the one command it becomes, or None (it comes
alone). A splice of its last bytes only keeps the source's bytes of its head (`SET k v EX 60`: only `EX 60` is new)."""


@dataclass(frozen=True)
class Position:
    """Where the consumed stream stands: what a later ReplicaLink(replid=, offset=, db=) continues from."""

    replid: str | None
    offset: int
    db: int


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path | None  # the file, when spooled to one
    size: int  # RDB bytes
    diskless: bool  # sent as $EOF:<mark> (streamed by the primary) rather than $<length>
    seconds: float  # from the primary's answer to the last RDB byte


@dataclass(frozen=True)
class LinkStatus:
    phase: str  # handshake | preamble | snapshot | stream | closed | failed
    replid: str | None
    received_offset: int  # offset of the last byte received from the primary
    consumed_offset: int  # offset of the last command parsed by the caller
    applied_offset: int  # what the ACKs report
    spooled_bytes: int  # received, not yet parsed
    lag_bytes: int  # received, not yet applied
    snapshot_bytes: int
    spool_files: int
    error: str | None


class ReplicaLink:
    """One replication connection to a primary, from the handshake to close()."""

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings | None = None, *, replid: str | None = None,
                 offset: int | None = None, db: int = 0, options: LinkOptions | None = None) -> None:
        if (replid is None) != (offset is None):
            raise ConfigError("a partial resync needs both replid and offset", "pass both, or neither for a full sync")
        self.endpoint = endpoint
        self.settings = settings or ConnectionSettings()
        self.options = options or LinkOptions()
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._buf = bytearray()  # bytes read during the handshake, not yet used
        self._phase = "handshake"
        self._error: MigrateError | None = None
        self._stop = threading.Event()
        self._snapshot_done = threading.Event()
        self._mark: bytes | None = None
        self._remaining = 0
        self._tail = b""
        self._snapshot_size = 0
        self._snapshot_started = 0.0
        self._snapshot_seconds = 0.0
        self._ack_due = False
        # (received offset, unix time) of stream chunks, oldest first: when a command arrived (relative expiries of
        # Redis 6.x count from then) and how long the oldest unapplied byte has waited (lag in seconds).
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=MAX_ARRIVALS)
        self._arrival_lock = threading.Lock()
        self._held_sample: tuple[int, float] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            self._open()
            self.sync = self._handshake(replid, offset)
        except BaseException:
            self._shutdown()
            raise
        start = self.sync.offset
        self._received = start
        self._applied = start if self.sync.partial else 0
        self._parser = _CommandParser(start, db if self.sync.partial else 0, self._request_ack)
        self._rdb: Sink = self._rdb_sink()
        self._stream: ChunkQueue = self._stream_sink()
        if self.sync.partial:
            self._rdb.finish()
            self._snapshot_done.set()
        self._phase = "stream" if self.sync.partial else "preamble"
        self._thread = threading.Thread(target=self._run, name=f"replica-link {endpoint.address}", daemon=True)
        self._thread.start()
        log.info("replication link open", source=str(endpoint), sync=self.sync.kind.value, replid=self.sync.replid,
                 offset=self.sync.offset, reason=self.sync.reason)

    # -- connection and handshake (caller's thread) --------------------------------------------------------------------

    def _open(self) -> None:
        def connect() -> Any:
            conn = raw_connection(self.endpoint, self.settings)
            conn.connect()  # AUTH, TLS, client name: redis-py, as every other connection of migrate
            return conn

        self._conn = with_retries(connect, self.settings, f"connect to source {self.endpoint}", self.endpoint,
                                  "source")
        self._sock = self._conn._sock  # the replication stream is no RESP reply: we read the socket ourselves
        assert self._sock is not None
        self._sock.settimeout(max(self.settings.socket_timeout, self.options.primary_timeout))

    def _handshake(self, replid: str | None, offset: int | None) -> SyncStart:
        opts = self.options
        try:
            self._command("REPLCONF", (b"REPLCONF", b"listening-port", str(opts.listening_port).encode()))
            capa = (b"capa", b"eof") if opts.diskless else ()
            self._command("REPLCONF", (b"REPLCONF", *capa, b"capa", b"psync2"))
            asked = time.monotonic()
            if opts.use_sync:
                self._send(pack((b"SYNC",)))
                line = self._reply_line("SYNC")
                self._buf[:0] = line + b"\r\n"  # the `$` header: the reader thread reads the snapshot from it
                return SyncStart(SyncKind.SYNC, None, 0, None, "plain SYNC: a full sync without offsets",
                                 time.monotonic() - asked)
            wanted = (b"?", b"-1") if replid is None else (replid.encode(), str(int(offset or 0) + 1).encode())
            self._send(pack((b"PSYNC", *wanted)))
            line = self._reply_line("PSYNC")
            return self._psync_answer(line, replid, offset, time.monotonic() - asked)
        except MigrateError:
            raise
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.endpoint, "source") from exc

    def _command(self, name: str, argv: tuple[bytes, ...]) -> None:
        self._send(pack(argv))
        line = self._line()
        if line.startswith(b"-"):
            raise refusal(line[1:].decode("utf-8", "replace"), name, self.endpoint)

    def _reply_line(self, name: str) -> bytes:
        line = b""
        while not line:  # bare newlines: the primary's keepalive while it prepares the snapshot
            line = self._line()
        if line.startswith(b"-"):
            raise refusal(line[1:].decode("utf-8", "replace"), name, self.endpoint)
        return line

    def _psync_answer(self, line: bytes, replid: str | None, offset: int | None, waited: float) -> SyncStart:
        words = line.decode("utf-8", "replace").split()
        requested = (replid, int(offset)) if replid is not None and offset is not None else None
        if words[0] == "+FULLRESYNC" and len(words) == 3:
            return SyncStart(SyncKind.FULL, words[1], int(words[2]), requested, _full_reason(requested, words[1]),
                             waited)
        if words[0] == "+CONTINUE" and requested is not None:
            new_id = words[1] if len(words) > 1 else requested[0]
            why = "the primary's backlog covers the offset" + (
                f" (its replication id changed to {new_id})" if new_id != requested[0] else "")
            return SyncStart(SyncKind.PARTIAL, new_id, requested[1], requested, why, waited)
        raise MigrationError(f"unexpected answer to PSYNC from source {self.endpoint}: {line[:80]!r}",
                             "is the address a Redis or Valkey server?")

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            self._recv_into_buf()
        end = self._buf.index(b"\n")
        line = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[:end + 1]
        return line

    def _recv_into_buf(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(RECV)
        if not chunk:
            raise LinkLostError(f"source {self.endpoint} closed the connection during the replication handshake",
                                "check the source's log (replica limits, ACLs, protected mode)")
        self._buf += chunk

    # -- sinks ---------------------------------------------------------------------------------------------------------

    def _rdb_sink(self) -> Sink:
        if self.options.snapshot_path is not None and not self.sync.partial:
            return FileSink(self.options.snapshot_path)
        return MemoryQueue(self.options.memory_bytes)

    def _stream_sink(self) -> ChunkQueue:
        opts = self.options
        if opts.spool_dir is not None:
            return DiskSpool(opts.spool_dir, opts.segment_bytes, opts.max_spool_bytes)
        return MemoryQueue(opts.memory_bytes)

    # -- the reader thread ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._buf:
                data, self._buf = bytes(self._buf), bytearray()
                self._on_data(data)
            self._loop()
        except _Stopped:
            pass
        except MigrateError as exc:
            self._fail(exc)
        except (OSError, ValueError, rex.RedisError) as exc:
            self._fail(self._lost(_short(exc)))
        except Exception as exc:  # a bug must still end the consumer's wait, with the cause
            self._fail(MigrationError(f"replication link to source {self.endpoint} failed: {_short(exc)}"))

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        last_rx, was_reading, next_ack = time.monotonic(), True, 0.0
        while not self._stop.is_set():
            reading = self._current_sink().has_room()
            now = time.monotonic()
            if reading and not was_reading:
                last_rx = now  # bytes waited in the kernel while we paused: no silence
            was_reading = reading
            if self._acking() and (self._ack_due or now >= next_ack):
                self._ack_due = False
                sock.sendall(ack_command(self._applied))
                next_ack = now + self._ack_period()
            wait = max(0.0, min(TICK, next_ack - now)) if self._acking() else TICK
            if not (reading and isinstance(sock, ssl.SSLSocket) and sock.pending()):
                watched: list[Any] = [sock, self._wake_r] if reading else [self._wake_r]
                ready, _, _ = select.select(watched, [], [], wait)
                if self._wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if sock not in ready:
                    if reading and time.monotonic() - last_rx > self.options.primary_timeout:
                        raise self._lost(f"no data from the source for {self.options.primary_timeout:g} s")
                    continue
            if self._held_sample is not None and time.time() - self._held_sample[1] >= ARRIVAL_SPACING:
                self._release_held_sample()
            data = sock.recv(RECV)
            if not data:
                raise self._lost("the source closed the connection")
            last_rx = time.monotonic()
            self._on_data(data)

    def _sample_arrival(self, offset: int, at: float) -> None:
        """Keep (offset, time) samples at least ARRIVAL_SPACING apart; a sample too close to the previous one is held
        (with its own time) until the spacing has passed, so the last bytes received always get a sample."""
        with self._arrival_lock:
            last = self._arrivals[-1][1] if self._arrivals else 0.0
            if at - last >= ARRIVAL_SPACING:
                if self._held_sample is not None and self._held_sample[0] < offset:
                    self._arrivals.append(self._held_sample)
                self._arrivals.append((offset, at))
                self._held_sample = None
            else:
                self._held_sample = (offset, at)

    def _release_held_sample(self) -> None:
        with self._arrival_lock:
            held, self._held_sample = self._held_sample, None
            if held is not None:
                self._arrivals.append(held)

    def _ack_period(self) -> float:
        # A diskless primary starts the stream at an ACK that comes after it has reaped its RDB child (replconfCommand
        # "ack": checkChildrenDone, then replicaStartCommandStream); the first ACK can come too early, so ACKs go
        # once a second until the stream has started, whatever ack_interval says.
        started = self._received > self.sync.offset or self.sync.partial
        return self.options.ack_interval if started else min(1.0, self.options.ack_interval)

    def _acking(self) -> bool:
        # Nothing may be sent before the snapshot has arrived: a primary delays a diskless sync until its replicas
        # have been idle for repl-diskless-sync-delay (replication.c shouldStartChildReplication uses the replica's
        # lastinteraction), so any byte from us would postpone the snapshot indefinitely.
        # Plain SYNC: offsets are unknown, so ACKs (of 0) go only until the stream starts: a diskless primary waits
        # for one even from a SYNC replica (replication.c: repl_start_cmd_stream_on_ack after a socket transfer).
        if self._phase != "stream":
            return False
        return self.sync.kind is not SyncKind.SYNC or self._received == self.sync.offset

    def _current_sink(self) -> Sink:
        return self._stream if self._phase == "stream" else self._rdb

    def _on_data(self, data: bytes) -> None:
        if self._phase == "preamble":
            data = self._preamble(data)
        if data and self._phase == "snapshot":
            data = self._snapshot_bytes(data)
        if data and self._phase == "stream":
            self._received += len(data)
            self._sample_arrival(self._received, time.time())
            self._stream.put(data)
            if b"GETACK" in data:  # answer at once, even while the caller is busy (a split one waits for the tick)
                self._ack_due = True

    def _preamble(self, data: bytes) -> bytes:
        self._buf += data
        while b"\n" in self._buf:
            end = self._buf.index(b"\n")
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[:end + 1]
            if not line:
                continue  # keepalive newline
            if line.startswith(b"-"):
                text = line[1:80].decode(errors="replace")
                raise MigrationError(f"source {self.endpoint} aborted the full sync: {text}",
                                     "see the source's log (a failed background save, a replica limit)")
            if not line.startswith(b"$"):
                raise MigrationError(f"unexpected bytes from source {self.endpoint} before the snapshot: {line[:40]!r}")
            if line.startswith(b"$EOF:"):
                self._mark = line[5:5 + ID_LEN]
            else:
                self._remaining = int(line[1:])
            self._phase, self._snapshot_started = "snapshot", time.monotonic()
            rest, self._buf = bytes(self._buf), bytearray()
            if self._mark is None and self._remaining == 0:
                self._finish_snapshot()
            return rest
        return b""

    def _snapshot_bytes(self, data: bytes) -> bytes:
        """Pass RDB bytes to the snapshot sink; return what follows the RDB (the start of the stream)."""
        if self._mark is None:
            body, rest = data[:self._remaining], data[self._remaining:]
            self._remaining -= len(body)
            self._put_rdb(body)
            if self._remaining == 0:
                self._finish_snapshot()
            return rest
        joined = self._tail + data
        end = joined.find(self._mark)
        if end == -1:  # hold back the last bytes until they are known not to start the mark
            keep = min(len(joined), ID_LEN - 1)
            self._put_rdb(joined[:len(joined) - keep])
            self._tail = joined[len(joined) - keep:]
            return b""
        self._put_rdb(joined[:end])
        self._tail = b""
        self._finish_snapshot()
        return joined[end + ID_LEN:]

    def _put_rdb(self, data: bytes) -> None:
        if data:
            self._snapshot_size += len(data)
            self._rdb.put(data)

    def _finish_snapshot(self) -> None:
        self._snapshot_seconds = time.monotonic() - self._snapshot_started
        self._rdb.finish()
        self._phase = "stream"
        self._snapshot_done.set()
        self._ack_due = True  # the first ACK puts a diskless replica online (replconfCommand, "ack")
        log.info("snapshot received", source=str(self.endpoint), bytes=self._snapshot_size,
                 seconds=round(self._snapshot_seconds, 3))

    def _lost(self, cause: str) -> LinkLostError:
        where = self.endpoint
        if self._phase in ("preamble", "handshake"):
            return LinkLostError(f"replication link to source {where} lost before the snapshot started: {cause}",
                                 "start again: a new full sync", snapshot_complete=False)
        if self._phase == "snapshot":
            total = f" of {self._snapshot_size + self._remaining}" if self._mark is None else ""
            return LinkLostError(f"replication link to source {where} lost during the snapshot "
                                 f"({self._snapshot_size}{total} bytes received, snapshot incomplete): {cause}",
                                 "start again: a new full sync", snapshot_complete=False)
        known = self.sync.kind is not SyncKind.SYNC
        at = f"at offset {self._received}" if known else f"{self._received} bytes into the stream"
        complete = None if self.sync.partial else True
        state = "after the complete snapshot, " if complete else ""
        return LinkLostError(f"replication link to source {where} lost {state}{at}: {cause}",
                             None if known else "plain SYNC cannot continue: start again with a full sync",
                             snapshot_complete=complete, offset=self._received if known else None)

    def _fail(self, error: MigrateError) -> None:
        self._error = error
        self._phase = "failed"
        log.warning("replication link lost", source=str(self.endpoint), error=error.message)
        self._rdb.finish(error)
        self._stream.finish(error)
        self._snapshot_done.set()

    def _request_ack(self) -> None:
        self._ack_due = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the caller's side ---------------------------------------------------------------------------------------------

    def snapshot(self) -> IO[bytes]:
        """The RDB bytes as a readable binary stream: live from memory, or the spooled file once complete."""
        if self.sync.partial:
            raise ConfigError("a partial resync has no snapshot", "check link.sync.kind before reading a snapshot")
        if isinstance(self._rdb, FileSink):
            info = self.wait_snapshot()
            assert info.path is not None
            return open(info.path, "rb")  # the caller closes it
        return io.BufferedReader(_QueueReader(self._rdb), RECV)

    def wait_snapshot(self, timeout: float | None = None) -> SnapshotInfo:
        """Wait until the snapshot has arrived whole (meaningful with snapshot_path: memory sinks need a reader)."""
        if not self._snapshot_done.wait(timeout):
            raise MigrationError(f"the snapshot from source {self.endpoint} did not arrive within {timeout:g} s",
                                 "the source may be delaying it (repl-diskless-sync-delay) or saving a large dataset")
        if isinstance(self._rdb, FileSink):
            self._rdb.wait(0)
        elif self._error is not None and self._error_before_stream():
            raise self._error
        path = self._rdb.path if isinstance(self._rdb, FileSink) else None
        return SnapshotInfo(path, self._snapshot_size, self._mark is not None, self._snapshot_seconds)

    def _error_before_stream(self) -> bool:
        return isinstance(self._error, LinkLostError) and self._error.snapshot_complete is False

    def read_commands(self, max_count: int = 1000, timeout: float | None = None) -> list[StreamCommand]:
        """Up to max_count commands, waiting up to `timeout` seconds for the first; [] on timeout. Raises the link's
        error (LinkLostError, ...) once every command received before it has been returned."""
        out: list[StreamCommand] = []
        parser = self._parser
        parser.parse(out, max_count)
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(out) < max_count and not (out and self._stream.pending == 0):
            data = self._more(bool(out), deadline)
            if not data:
                break
            parser.feed(data)
            parser.parse(out, max_count)
        return out

    def read_split(self, max_count: int, timeout: float | None, plan: Callable[[bytes], PassPlan],
                   hot: Callable[[], bool], rewrite: Rewrite | None = None) -> Iterator[RawRun | StreamCommand]:
        """Like read_commands, but consecutive commands that pass `plan` come as one RawRun of the source's own bytes
        (nothing parsed into tuples, nothing to re-encode), the others one by one. `hot()` says whether commands
        may pass at all now; it is asked again after each command yielded one by one (whose handling by the caller
        may change it: a MULTI, a SELECT of a database that is not followed). A command `rewrite` turns into one
        command's bytes stays in its run, as those bytes."""
        parser = self._parser
        count = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for part in parser.split(max_count - count, plan, hot, rewrite):
                count += part.commands if type(part) is RawRun else 1
                yield part
            if count >= max_count or (count and self._stream.pending == 0):
                return
            data = self._more(bool(count), deadline)
            if not data:
                return
            parser.feed(data)

    def _more(self, got: bool, deadline: float | None) -> bytes:
        """The next stream bytes: at once when the caller already has commands, else waiting until the deadline;
        b"" when there are none. A closed or failed link raises, unless the caller has commands to handle first."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self._stream.get(RECV, 0 if got else left)
        except Closed:
            if got:
                return b""
            raise MigrationError(f"the replication link to source {self.endpoint} is closed") from None
        except MigrateError:
            if got:
                return b""  # the error is raised at the next call, after these commands
            raise

    def commands(self, timeout: float | None = None) -> Iterator[StreamCommand]:
        """Every command, as it comes; ends when the link is closed, raises when it is lost."""
        while not self._stop.is_set():
            try:
                yield from self.read_commands(1000, timeout if timeout is not None else TICK)
            except MigrationError:
                if self._stop.is_set():
                    return
                raise

    def ack(self, offset: int, flush: bool = False) -> None:
        """The target has applied the stream up to `offset`: report it in the next REPLCONF ACK (now if flush)."""
        if offset > self._parser.offset:
            raise ConfigError(f"cannot acknowledge offset {offset}: only {self._parser.offset} was read",
                              "acknowledge the offset of a command returned by read_commands")
        self._applied = max(self._applied, offset)
        with self._arrival_lock:
            while self._arrivals and self._arrivals[0][0] <= self._applied:
                self._arrivals.popleft()
        if flush:
            self._request_ack()

    def arrived_ms(self, offset: int) -> int | None:
        """Unix ms at which the stream byte at `offset` had arrived (within ARRIVAL_SPACING); None when unknown."""
        self._release_stale_sample()
        with self._arrival_lock:
            for at_offset, at in self._arrivals:
                if at_offset >= offset:
                    return int(at * 1000)
        return None

    def waiting_since(self) -> float | None:
        """Unix time at which the oldest received byte not yet acknowledged with ack() arrived (None: none waits)."""
        self._release_stale_sample()
        with self._arrival_lock:
            return self._arrivals[0][1] if self._arrivals and self._received > self._applied else None

    def _release_stale_sample(self) -> None:
        held = self._held_sample
        if held is not None and time.time() - held[1] >= ARRIVAL_SPACING:
            self._release_held_sample()

    @property
    def position(self) -> Position:
        """The consumed position (replid, offset of the last parsed command, its database)."""
        return Position(self.sync.replid, self._parser.offset, self._parser.db)

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def received(self) -> int:
        return self._received

    @property
    def error(self) -> MigrateError | None:
        return self._error

    def status(self) -> LinkStatus:
        files = self._stream.files if isinstance(self._stream, DiskSpool) else 0
        return LinkStatus(self._phase, self.sync.replid, self._received, self._parser.offset, self._applied,
                          self._received - self._parser.fed, self._received - self._applied, self._snapshot_size,
                          files, self._error.message if self._error else None)

    def close(self) -> None:
        """Stop the reader thread, close the connection and delete the spool's segment files (never the snapshot)."""
        self._stop.set()
        self._wake()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self._phase not in ("failed",):
            self._phase = "closed"
        for sink in (getattr(self, "_rdb", None), getattr(self, "_stream", None)):
            if sink is not None:
                sink.finish()
                if isinstance(sink, DiskSpool | MemoryQueue):
                    sink.discard()
        self._shutdown()

    def _shutdown(self) -> None:
        conn, self._conn, self._sock = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(OSError, rex.RedisError):
                conn.disconnect()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> ReplicaLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Stopped(Exception):
    pass


def _full_reason(requested: tuple[str, int] | None, replid: str) -> str:
    if requested is None:
        return "first sync"
    if requested[0] == replid:
        return (f"the primary's backlog no longer covers offset {requested[1]} "
                "(same replication id: too much was written since)")
    return (f"the primary's replication history changed (id {requested[0]} -> {replid}): "
            "it restarted without its data, failed over, or dropped its backlog")


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class _CommandParser:
    """RESP commands out of stream bytes, each with the offset of its last byte; SELECT tracked; GETACK answered.
    The bytes fed and not yet parsed are kept too, so a run of commands can be handed on as the source sent it."""

    def __init__(self, start: int, db: int, on_getack: Callable[[], None]) -> None:
        self._reader = hiredis.Reader()
        self.offset = start  # end of the last complete command
        self.fed = start  # end of the bytes fed
        self.db = db
        self._on_getack = on_getack
        self._pending = bytearray()  # the bytes received from offset `_base` on
        self._base = start
        self._given = start  # end of the bytes given to hiredis
        self._cut = (start, 0)  # the run being gathered: where its bytes since the last rewrite start, and its index
        self._parts: list[bytes | bytearray] = []  # the run's bytes up to its last rewrite
        self._rewritten = 0

    def feed(self, data: bytes) -> None:
        """Take received bytes; hiredis is given them FEED_BYTES at a time as it needs them (it moves what it has
        not parsed to the front of its buffer every 1 KiB parsed: a large buffer costs time in the square of its
        size)."""
        self._pending += data
        self.fed += len(data)

    def _refill(self) -> bool:
        """Feed hiredis the next bytes received; False when it has them all."""
        at = self._given - self._base
        n = min(FEED_BYTES, len(self._pending) - at)
        if n <= 0:
            return False
        self._reader.feed(bytes(self._pending[at:at + n]))
        self._given += n
        return True

    def _trim(self) -> None:
        """Forget the bytes before the parsed offset (cheap: a bytearray drops its head without moving the rest)."""
        del self._pending[:self.offset - self._base]
        self._base = self.offset

    def parse(self, out: list[StreamCommand], limit: int) -> None:
        self._trim()
        gets = self._reader.gets
        try:
            while len(out) < limit:
                reply = gets()
                if reply is False:
                    if self._refill():
                        continue
                    break
                command = self._command(reply)
                if command is not None:
                    out.append(command)
        except hiredis.ProtocolError as exc:
            raise self._invalid(exc) from None

    def split(self, limit: int, plan: Callable[[bytes], PassPlan], hot: Callable[[], bool],
              rewrite: Rewrite | None = None) -> Iterator[RawRun | StreamCommand]:
        """Up to `limit` commands as runs of those that pass `plan` (while `hot()`) and single commands. A command
        that does not pass but that `rewrite` turns into the bytes of one command stays in the run, as those."""
        self._trim()
        gets = self._reader.gets
        plans: dict[bytes, PassPlan] = {}
        try:
            while limit > 0:
                run: list[list[bytes]] = []
                self._cut, self._parts, self._rewritten = (self.offset, 0), [], 0
                reply = self._gather(run, limit, plan, plans, rewrite) if hot() else gets()
                if run or self._parts:
                    limit -= len(run) + self._rewritten
                    yield self._run(run)
                if reply is False and self._refill():
                    continue
                if reply is False or reply is None:
                    return
                command = self._command(reply)
                limit -= 1
                if command is not None:
                    yield command
        except hiredis.ProtocolError as exc:
            raise self._invalid(exc) from None

    def _gather(self, run: list[list[bytes]], limit: int, plan: Callable[[bytes], PassPlan],
                plans: dict[bytes, PassPlan], rewrite: Rewrite | None) -> Any:
        """Parse commands into `run` while they pass (or are rewritten); the command that does not (False: no
        complete command left, None: `limit` reached). The hot loop of a stream: one hiredis call and one test per
        command."""
        gets, append, get = self._reader.gets, run.append, plans.get
        while True:
            for _ in range(limit - len(run) - self._rewritten):
                reply = gets()
                if type(reply) is not list or not reply:
                    break
                q = get(reply[0])
                if q is None:
                    q = plans[reply[0]] = plan(reply[0])
                if q[0] or len(reply) == q[1] or (q[2] is not None and q[2](reply)):
                    append(reply)
                    continue
                splice = rewrite(reply) if rewrite is not None else None
                if splice is None:
                    return reply
                self._inline(run, reply, splice)
            else:
                return None
            if reply is not False or not self._refill():
                return reply

    def _inline(self, run: list[list[bytes]], reply: list[bytes], splice: Splice) -> None:
        """A rewritten command in the run: the source's bytes before it and those of its head that it keeps, then
        the bytes that replace the rest."""
        start, first = self._cut
        run.append(reply)  # measured with the commands before it (one sum in C), then taken out again
        end = start + resp_total(run[first:])
        run.pop()
        kept = end - splice[0]
        if kept > start:  # a bytearray slice: joined at the run's end, never copied on its own
            self._parts.append(self._pending[start - self._base:kept - self._base])
        self._parts.append(splice[1])
        self._cut = (end, len(run))
        self._rewritten += 1

    def _run(self, run: list[list[bytes]]) -> RawRun:
        start, first = self._cut  # the source's bytes since the last rewrite
        end = start + resp_total(run[first:])
        self.offset = end
        self._check_drift()
        data = bytes(self._pending[start - self._base:end - self._base])
        if self._parts:
            data = b"".join([*self._parts, data])
        return RawRun(data, len(run) + self._rewritten, end, self.db, run)

    def _command(self, reply: Any) -> StreamCommand | None:
        """One command parsed; None for a GETACK (answered here, never yielded)."""
        if type(reply) is not list or not reply:
            raise MigrationError(f"unexpected reply type in the replication stream at offset {self.offset}")
        argv = tuple(reply)
        self.offset += command_size(argv)
        self._check_drift()
        name = argv[0]
        if len(name) == 6 and name.upper() == b"SELECT":
            self.db = int(argv[1])
        elif len(name) == 8 and len(argv) > 1 and name.upper() == b"REPLCONF" and argv[1].upper() == b"GETACK":
            self._on_getack()
            return None
        return StreamCommand(argv, self.offset, self.db)

    def _check_drift(self) -> None:
        """After a command: the sizes added up so far must end where the bytes fed end or the next command starts
        (each command is an array, `*`)."""
        at = self.offset - self._base
        if self.offset > self.fed or (self.offset < self.fed and self._pending[at] != 0x2A):
            raise MigrationError(f"replication offset accounting drifted: parsed {self.offset}, received {self.fed}",
                                 "report this with the source's version")

    def _invalid(self, exc: Exception) -> MigrationError:
        return MigrationError(f"the replication stream is not valid RESP after offset {self.offset}: {exc}",
                              "report this with the source's version")


class _QueueReader(io.RawIOBase):
    """A memory queue as a raw binary stream (the snapshot read live)."""

    def __init__(self, queue: Sink) -> None:
        super().__init__()
        assert isinstance(queue, MemoryQueue)
        self._queue = queue
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._eof:
            return 0
        while True:
            try:
                data = self._queue.get(len(buffer), TICK)
            except Closed:
                self._eof = True
                return 0
            if data:
                buffer[:len(data)] = data
                return len(data)
