"""Apply translated units to a target over ONE pipelined raw connection, exactly once across a crash.

One connection keeps the source's global order across databases (FLUSHALL, SWAPDB, MOVE need it); SELECTs are
inserted where the database changes. Units are packed into batches bounded in bytes and commands (a batch goes over
by at most one unit: a unit, i.e. a source MULTI/EXEC group, is never split) and at most `window` batches are in
flight (sent, replies not read).

Exactly once (`marker=True`, the default): each batch is one MULTI ... EXEC that ends by writing the stream's marker
(marker.py) with the batch's end offset. The target commits the batch and the marker together or not at all, so after
any crash `read_marker` says exactly which offset the target holds, and a resumed stream restarts there: nothing is
applied twice (INCR, LPUSH) and nothing is lost. A lost connection is recovered the same way: reconnect, read the
marker, resend only the in-flight batches it does not cover. Without the marker, a crash between a batch's EXEC and
the caller's checkpoint applies that batch twice on resume: use it only where the target can be rebuilt from scratch.

Target error replies:
- Fatal, nothing of the batch applied (marker unchanged): an error when a command is queued (unknown command, wrong
  arity, OOM, NOPERM, READONLY) makes the server refuse the whole EXEC (EXECABORT). It means the translation does not
  fit the target or the target refuses writes: continuing would lose the batch. Raised with the command and its key.
- Per-command errors inside EXEC (WRONGTYPE, "not an integer", BUSYKEY, NOSCRIPT, XADD id too small, ...): the
  server applied the rest of the batch and the marker. The source ran the same command successfully, so the target's
  state already differs for that key; `on_error=stop` (default) records the key in tally.failed and raises after the
  batch is acknowledged (a resume continues after it); `on_error=record` records it and goes on (verify afterwards).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from typing import Any, Final

import hiredis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import translate
from migrate.errors import ConfigError, MigrationError
from migrate.logs import get_logger
from migrate.render import display_key
from migrate.run.tally import KeyIssue
from migrate.stream import table
from migrate.stream.marker import MARKER_DB, Marker, marker_key, marker_value, parse_marker
from migrate.stream.model import Argv, StreamTally, TargetCommand, Unit
from migrate.wire import Channel, is_error
from migrate.wire import pack_argv as pack

log = get_logger("migrate.stream")

MULTI: Final = pack((b"MULTI",))
EXEC: Final = pack((b"EXEC",))
QUEUED: Final = b"QUEUED"
OK: Final = b"OK"
RECV_BYTES: Final = 1 << 20
FATAL_PREFIXES: Final = ("OOM", "READONLY", "NOPERM", "NOAUTH", "LOADING", "MASTERDOWN", "MISCONF", "EXECABORT",
                         "BUSY ", "CROSSSLOT", "MOVED", "ASK ", "CLUSTERDOWN", "TRYAGAIN")

RAW: Final[Argv] = (b"<raw>",)  # stands for a command queued as raw bytes (Applier.apply_raw)

AppliedCallback = Callable[[int, int], None]
"""Called with (applied offset, source db at that offset) each time the target acknowledges a batch."""


class TargetLostError(MigrationError):
    """Reconnected after a lost connection, the target holds less than it had acknowledged (its marker is gone or
    older): it restarted without persisting everything, or was flushed. Resending the in-flight batches would hide
    the loss, so the caller must reposition the stream from `marker_offset` (None: from scratch)."""

    default_hint = "the target lost acknowledged writes: continue the stream from the target's marker, or resync"

    def __init__(self, message: str, marker_offset: int | None, expected_offset: int) -> None:
        super().__init__(message)
        self.marker_offset = marker_offset
        self.expected_offset = expected_offset


class TargetErrors(StrEnum):
    STOP = "stop"  # raise after the batch holding the error is acknowledged
    RECORD = "record"  # name the key in tally.failed and go on

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ApplyOptions:
    marker: bool = True  # each batch one MULTI/EXEC with the marker: exactly once across crashes
    marker_db: int = MARKER_DB
    batch_bytes: int = 1 << 20
    batch_commands: int = 1000
    window: int = 2  # batches in flight; at most window * (batch_commands + one unit) commands unacknowledged
    on_error: TargetErrors = TargetErrors.STOP

    def validate(self) -> ApplyOptions:
        if self.batch_bytes < 1 or self.batch_commands < 1 or self.window < 1:
            raise ConfigError("batch bytes, batch commands and window must be >= 1")
        if self.marker_db < 0:
            raise ConfigError("the marker database must be >= 0")
        return self


@dataclass
class _Batch:
    """One batch: its bytes, the commands its replies answer, and what it acknowledges."""

    parts: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    cmds: list[TargetCommand] = field(default_factory=list)  # every command sent, inserted SELECTs included
    groups: list[tuple[int, int]] = field(default_factory=list)  # without the marker: source groups, [start, end)
    commands: int = 0  # translated commands (SELECTs and the marker excluded)
    units: int = 0
    end_offset: int = 0
    source_db: int = 0
    data: bytes = b""
    raw: list[tuple[int, int, bytes]] = field(default_factory=list)  # (first cmd index, count, bytes): apply_raw

    @property
    def replies(self) -> int:
        return len(self.cmds) + 2 * len(self.groups)

    def argv(self, index: int) -> Argv:
        """The command at `index` of `cmds`; a command queued as raw bytes is parsed back (only to name it)."""
        argv = self.cmds[index][1]
        if argv is not RAW:
            return argv
        for first, count, data in self.raw:
            if first <= index < first + count:
                reader = hiredis.Reader()
                reader.feed(data)
                for _ in range(index - first):
                    reader.gets()
                return tuple(reader.gets())
        return argv


class Applier:
    """Applies units in order; `applied_offset` is the end offset of the last batch the target acknowledged."""

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings, stream_id: str,
                 options: ApplyOptions | None = None, *, tally: StreamTally | None = None,
                 on_applied: AppliedCallback | None = None, held_offset: int | None = None) -> None:
        """`held_offset`: the offset the target is known to hold when the applier starts (its marker, read by the
        caller); a recovery that then finds the marker gone or older raises TargetLostError."""
        self.options = (options or ApplyOptions()).validate()
        self.endpoint = endpoint
        self.settings = settings
        self.stream_id = stream_id
        self.key = marker_key(stream_id)
        self.tally = tally if tally is not None else StreamTally()
        self.on_applied = on_applied
        self.applied_offset: int | None = None
        home = self.options.marker_db if self.options.marker else 0
        self.link = Channel(endpoint, settings, "target", home)
        self._home = home
        self._db = home  # the database the connection is in once everything encoded so far has run
        self._batch = _Batch()
        self._inflight: deque[_Batch] = deque()
        self._marker_at = home  # where this batch's SWAPDBs have moved the marker key
        self.reconnects = 0  # connections lost and recovered through the marker
        self._held = held_offset  # the offset the target has acknowledged holding (None: nothing known yet)

    # -- public ---------------------------------------------------------------------------------------------------

    def apply(self, unit: Unit) -> None:
        """Queue one unit; a full batch is sent (and the oldest in-flight batch read) as needed."""
        self._add(unit)
        batch = self._batch
        if batch.nbytes >= self.options.batch_bytes or batch.commands >= self.options.batch_commands:
            self._send()

    def apply_raw(self, target_db: int, data: bytes, count: int, end_offset: int, source_db: int) -> None:
        """Queue `count` commands already encoded (`data`: canonical RESP, e.g. verbatim from an AOF), each one a
        unit of its own that the target takes as it is, in `target_db`: the bytes go out as read, never decoded nor
        re-encoded. Replies are checked like any other's; a refused command is parsed back to be named."""
        batch = self._batch
        if target_db != self._db:
            select = (b"SELECT", b"%d" % target_db)
            packed = pack(select)
            batch.parts.append(packed)
            batch.cmds.append((target_db, select))
            batch.nbytes += len(packed)
            self._db = target_db
        batch.raw.append((len(batch.cmds), count, data))
        batch.parts.append(data)
        batch.cmds += repeat((target_db, RAW), count)
        batch.nbytes += len(data)
        batch.commands += count
        batch.units += count
        batch.end_offset = end_offset
        batch.source_db = source_db
        if batch.nbytes >= self.options.batch_bytes or batch.commands >= self.options.batch_commands:
            self._send()

    def apply_all(self, units: Iterable[Unit]) -> int | None:
        """Apply every unit, then wait until the target acknowledged all of them; the applied offset. When producing
        the units fails (the translator refusing a command under --on-incompatible fail), the units before it are
        applied first, so the marker says exactly where the stream stopped, then the error is raised."""
        try:
            for unit in units:
                self.apply(unit)
        except BaseException:
            self.flush()
            raise
        return self.flush()

    def flush(self) -> int | None:
        """Send what is queued and read every reply: on return the target holds everything applied so far."""
        if self._batch.units:
            self._send()
        while self._inflight:
            self._receive()
        return self.applied_offset

    def read_marker(self) -> Marker | None:
        """The marker as the target holds it now, read over this connection (after flush, it equals the applied
        offset)."""
        self.flush()
        value = self._marker_get()
        return None if value is None else parse_marker(self.stream_id, value)

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Applier:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """A normal exit flushes what is queued; after an error only the connection is closed (the marker says what
        the target holds)."""
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()

    # -- building batches -----------------------------------------------------------------------------------------

    def _add(self, unit: Unit) -> None:
        batch = self._batch
        marker = self.options.marker
        group = unit.group and not marker and len(unit.commands) > 1
        if group:
            batch.parts.append(MULTI)
            batch.nbytes += len(MULTI)
            start = len(batch.cmds)
        parts, cmds = batch.parts, batch.cmds
        nbytes = 0
        db = self._db
        for target_db, argv in unit.commands:
            if target_db != db:
                select = (b"SELECT", b"%d" % target_db)
                data = pack(select)
                parts.append(data)
                cmds.append((target_db, select))
                nbytes += len(data)
                db = target_db
            data = pack(argv)
            parts.append(data)
            cmds.append((db, argv))
            nbytes += len(data)
            if marker and len(argv[0]) == 6 and argv[0].lower() == b"swapdb":
                self._follow_swap(argv)
        self._db = db
        if group:
            parts.append(EXEC)
            nbytes += len(EXEC)
            batch.groups.append((start, len(cmds)))
        batch.nbytes += nbytes
        batch.commands += len(unit.commands)
        batch.units += 1
        batch.end_offset = unit.end_offset
        batch.source_db = unit.source_db

    def _follow_swap(self, argv: Argv) -> None:
        if len(argv) == 3 and argv[1].isdigit() and argv[2].isdigit():
            a, b = int(argv[1]), int(argv[2])
            if self._marker_at in (a, b):
                self._marker_at = b if self._marker_at == a else a

    def _seal(self, batch: _Batch) -> None:
        """The batch's final bytes: in a MULTI/EXEC that ends with the marker, when the marker is on."""
        if not self.options.marker:
            batch.data = b"".join(batch.parts)
            return
        tail: list[TargetCommand] = []
        home = self._home
        if self._marker_at != home:  # a SWAPDB moved the previous marker away: delete it where it landed
            tail += [(self._marker_at, (b"SELECT", b"%d" % self._marker_at)), (self._marker_at, (b"DEL", self.key))]
            self._db = self._marker_at
        if self._db != home:
            tail.append((home, (b"SELECT", b"%d" % home)))
        value = marker_value(batch.end_offset, batch.source_db, int(time.time() * 1000))
        tail.append((home, (b"SET", self.key, value)))
        batch.cmds += tail
        batch.data = b"".join([MULTI, *batch.parts, *(pack(c) for _, c in tail), EXEC])
        self._db = home
        self._marker_at = home

    # -- sending and acknowledging --------------------------------------------------------------------------------

    def _send(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._seal(batch)
        batch.parts = []
        self._inflight.append(batch)
        try:
            self.link.send_packed(batch.data, batch.replies + (2 if self.options.marker else 0))
        except rex.ConnectionError as exc:
            self._recover(exc)
        while len(self._inflight) >= self.options.window:
            self._receive()

    def _receive(self) -> None:
        batch = self._inflight[0]
        count = batch.replies + (2 if self.options.marker else 0)
        try:
            replies = self.link.recv(count)
        except rex.ConnectionError as exc:
            self._recover(exc)
            return
        self._inflight.popleft()
        errors = self._check_marked(batch, replies) if self.options.marker else self._check_plain(batch, replies)
        self._acknowledge(batch)
        if errors and self.options.on_error is TargetErrors.STOP:
            db, argv, error = errors[0]
            raise MigrationError(
                f"the target refused {len(errors)} command(s) of the batch ending at source offset "
                f"{batch.end_offset}, first {describe(argv)} in db {db}: {error} (the rest of the batch is applied)",
                "the target's data differs from the source's for these keys: compare them (migrate verify); "
                "the stream resumes after this batch")

    def _acknowledge(self, batch: _Batch) -> None:
        self.applied_offset = self._held = batch.end_offset
        self.tally.applied_offset = batch.end_offset
        self.tally.applied_commands += batch.commands
        if self.on_applied is not None:
            self.on_applied(batch.end_offset, batch.source_db)

    def _check_marked(self, batch: _Batch, replies: list[Any]) -> list[tuple[int, Argv, str]]:
        """MULTI, QUEUED per command, EXEC's array: a refusal before EXEC means nothing was applied."""
        queued = replies[1:-1]
        if replies[0] != OK or queued.count(QUEUED) != len(queued) or not isinstance(replies[-1], list):
            self._refused(batch, replies)
        return self._errors(batch, 0, replies[-1])

    def _check_plain(self, batch: _Batch, replies: list[Any]) -> list[tuple[int, Argv, str]]:
        if not batch.groups:
            return self._errors(batch, 0, replies)
        errors: list[tuple[int, Argv, str]] = []
        at = 0  # reply index
        done = 0  # command index
        for start, end in batch.groups:
            errors += self._errors(batch, done, replies[at:at + start - done])
            at += start - done
            multi, queued, result = replies[at], replies[at + 1:at + 1 + end - start], replies[at + 1 + end - start]
            if multi != OK or queued.count(QUEUED) != len(queued) or not isinstance(result, list):
                self._refused(_Batch(cmds=batch.cmds[start:end], end_offset=batch.end_offset),
                              [multi, *queued, result])
            errors += self._errors(batch, start, result)
            at += 2 + end - start
            done = end
        return errors + self._errors(batch, done, replies[at:])

    def _errors(self, batch: _Batch, first: int, replies: list[Any]) -> list[tuple[int, Argv, str]]:
        """Per-command error replies (`replies` answer batch.cmds from `first` on): fatal kinds raise; the others are
        named in tally.failed."""
        out: list[tuple[int, Argv, str]] = []
        if not any(issubclass(kind, Exception) for kind in set(map(type, replies))):  # most batches: one pass in C
            return out
        for i in [i for i, reply in enumerate(replies) if isinstance(reply, Exception)]:
            reply = replies[i]
            db, argv = batch.cmds[first + i][0], batch.argv(first + i)
            text = str(reply)
            if text.startswith(FATAL_PREFIXES) or (argv[0] == b"SET" and argv[1] == self.key):
                raise _fatal(text, argv, db, self.endpoint)
            self.tally.failed.add(KeyIssue(db, key_of(argv), f"{command_name(argv)}: {text}"))
            out.append((db, argv, text))
        return out

    def _refused(self, batch: _Batch, replies: list[Any]) -> None:
        """A command refused when queued (EXECABORT): nothing of the transaction was applied."""
        for i, ((db, _), reply) in enumerate(zip(batch.cmds, replies[1:-1], strict=False)):
            if is_error(reply):
                raise _fatal(str(reply), batch.argv(i), db, self.endpoint,
                             f"; nothing of the batch ending at source offset {batch.end_offset} was applied")
        raise _fatal(str(replies[-1] if replies[0] == OK else replies[0]), (b"EXEC",), self._home, self.endpoint)

    # -- recovery -------------------------------------------------------------------------------------------------

    def _recover(self, exc: rex.ConnectionError) -> None:
        """Lost connection: with the marker, reconnect, acknowledge the in-flight batches the marker covers and
        resend the others; without it their outcome is unknown, so stop."""
        if not self.options.marker:
            raise MigrationError(
                f"lost the connection to the target with {len(self._inflight)} batch(es) unacknowledged: {exc}",
                "without the marker transaction their outcome is unknown; rebuild the target or rerun with the marker")
        delay = 0.2
        for attempt in range(1, max(1, self.settings.retries) + 1):
            try:
                self.link.close()
                value = self._marker_get()
                held = parse_marker(self.stream_id, value).offset if value is not None else None
                self._check_held(held)
                self._resend(held)
                self.reconnects += 1
                log.warning("stream target reconnected", attempt=attempt, marker_offset=held)
                return
            except rex.ConnectionError as again:
                exc = again
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise translate(exc, self.endpoint, "target") from exc

    def _check_held(self, held: int | None) -> None:
        """The marker must cover at least what the target acknowledged before: else the target lost writes."""
        if self._held is None or (held is not None and held >= self._held):
            return
        self._inflight.clear()
        found = "no marker" if held is None else f"its marker at offset {held}"
        raise TargetLostError(f"the target lost acknowledged writes: it holds {found}, it had acknowledged offset "
                              f"{self._held} (it restarted without persisting them, or was flushed)", held, self._held)

    def _resend(self, held: int | None) -> None:
        """Acknowledge the in-flight batches the marker covers; resend the others (they stay in flight, so a failure
        while resending leaves them to the next attempt)."""
        covered = [b for b in self._inflight if held is not None and b.end_offset <= held]
        self._inflight = deque(b for b in self._inflight if held is None or b.end_offset > held)
        for batch in covered:
            log.warning("batch committed before the connection was lost; its per-command replies are lost",
                        end_offset=batch.end_offset)
            self._acknowledge(batch)
        for batch in list(self._inflight):
            self.link.send_packed(batch.data, batch.replies + (2 if self.options.marker else 0))

    def _marker_get(self) -> bytes | None:
        if self.options.marker:  # every marked batch starts and ends in the marker's database
            reply = self.link.command(b"GET", self.key)
        else:
            reply = self.link.command(b"SELECT", b"%d" % self.options.marker_db)
            reply = self.link.command(b"GET", self.key)
            self.link.command(b"SELECT", b"%d" % self._db)
        if is_error(reply):
            raise translate(rex.ResponseError(str(reply)), self.endpoint, "target")
        return reply if reply is None or isinstance(reply, bytes) else None


def command_name(argv: Argv) -> str:
    return argv[0].decode("latin-1").upper()


def key_of(argv: Argv) -> str:
    entry = table.TABLE.get(argv[0].decode("latin-1").lower())
    at = entry.key_at if entry is not None else 1
    return display_key(argv[at]) if 0 < at < len(argv) else f"({command_name(argv)})"


def describe(argv: Argv) -> str:
    return f"{command_name(argv)} {key_of(argv)}"


def _fatal(text: str, argv: Argv, db: int, endpoint: Endpoint, tail: str = "") -> MigrationError:
    """A refusal that stops the stream: our error for its kind (OOM, NOPERM, READONLY...), naming the command."""
    error = translate(rex.ResponseError(text), endpoint, "target")
    what = f"{describe(argv)} in db {db}"
    if text.startswith(("ERR unknown command", "ERR unknown subcommand", "ERR wrong number")):
        return MigrationError(f"the target refused {what}: {text}{tail}",
                              "the translation table has no rule that fits this command to the target: report it")
    message = f"{error.message} ({what}){tail}"
    return type(error)(message, error.hint) if isinstance(error, MigrationError) else MigrationError(message)
