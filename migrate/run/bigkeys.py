"""Big keys: copied in pieces with type-native reads and writes, never one payload over the target's limits.

A key whose size (MEMORY USAGE, or its DUMP payload) is over the threshold is not DUMPed whole: it is read in chunks
(GETRANGE, LRANGE, SSCAN, ZRANGE by rank, HSCAN, XRANGE + XINFO/XPENDING for streams), each chunk sized from the key's
average element size so memory stays bounded, and written into a temporary key in the same cluster slot that is
RENAMEd over the real key at the end (migrate.rdb.rewrite's scheme): the real key is never seen half-written, and a
run killed mid-key leaves only a temporary key that expires by itself within the hour. Every written command is under
`max_command_bytes`.

What commands cannot rebuild is said per key: field TTLs on a target without HPEXPIREAT go through the
--on-incompatible policy; stream consumer seen/active times are listed as changed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from migrate.config import ConnectionSettings
from migrate.connection import translate, with_retries
from migrate.errors import MigrationError, ValueTooBigError
from migrate.facts.commands import has_command
from migrate.facts.types import CORE_TYPES
from migrate.identity import ServerIdentity
from migrate.rdb.rewrite import TEMP_KEY_TTL_MS, Command, batched, command_bytes, temp_key
from migrate.run.policy import Incompatibility, Verdict
from migrate.run.targets import TargetLink, as_target
from migrate.run.transactions import key_of
from migrate.wire import Channel, is_error, pack

MIN_COUNT: Final = 10
MAX_COUNT: Final = 10_000


@dataclass(frozen=True)
class BigOutcome:
    status: str  # copied | vanished | busy | skipped | filtered
    logical: str = ""
    nbytes: int = 0
    changed: tuple[str, ...] = ()  # what was not kept (listed as changed)


Judge = Callable[[Incompatibility], Verdict]


class BigKeyCopier:
    def __init__(self, source: Channel, target: Channel | TargetLink, source_id: ServerIdentity,
                 target_id: ServerIdentity, settings: ConnectionSettings, *, chunk_bytes: int, max_command_bytes: int,
                 max_value_bytes: int) -> None:
        self.source = source
        self.target = as_target(target)
        self.source_id = source_id
        self.target_id = target_id
        self.settings = settings
        self.chunk_bytes = chunk_bytes
        self.max_command_bytes = max_command_bytes
        self.max_value_bytes = max_value_bytes  # the target's proto-max-bulk-len: no string or element is longer

    def copy(self, key: bytes, expire_at_ms: int | None, size_hint: int, *, replace: bool,
             types: frozenset[str], judge: Judge) -> BigOutcome:
        """Copy one key; a transient failure restarts the key from scratch with a fresh temporary key."""
        return with_retries(lambda: self._copy_once(key, expire_at_ms, size_hint, replace, types, judge),
                            self.settings, f"copy big key {key[:60]!r}", self.target.endpoint, "target")

    def _copy_once(self, key: bytes, expire_at_ms: int | None, size_hint: int, replace: bool,
                   types: frozenset[str], judge: Judge) -> BigOutcome:
        if not replace and self._write([("EXISTS", key)])[0]:
            return BigOutcome("busy")
        logical = _text(self._read("TYPE", key))
        if logical == "none":
            return BigOutcome("vanished")
        if types and logical not in types and not (logical not in CORE_TYPES and "module" in types):
            return BigOutcome("filtered", logical)
        if logical not in CORE_TYPES:
            judge(Incompatibility(key, f"module type {logical!r}: module values are not converted"))
            return BigOutcome("skipped", logical)
        if logical == "string" and int(self._read("STRLEN", key)) > self.max_value_bytes:
            return self._too_big(key, logical, judge)
        tmp = temp_key(key)
        try:
            return self._into_temp(key, tmp, logical, expire_at_ms, size_hint, judge)
        except ValueTooBigError:  # an element over the target's limit: the key cannot exist there
            self._discard(tmp)
            return self._too_big(key, logical, judge)
        except BaseException:
            self._discard(tmp)
            raise

    def _too_big(self, key: bytes, logical: str, judge: Judge) -> BigOutcome:
        judge(Incompatibility(key, f"a value of this {logical} is longer than the target's proto-max-bulk-len "
                                   f"({self.max_value_bytes} bytes)"))
        return BigOutcome("skipped", logical)

    def _into_temp(self, key: bytes, tmp: bytes, logical: str, expire_at_ms: int | None, size_hint: int,
                   judge: Judge) -> BigOutcome:
        job = _Job(self, key, tmp, size_hint)
        getattr(job, "copy_" + logical)()
        job.flush()
        if not self._read("EXISTS", key):  # deleted or expired on the source while we copied it
            self._discard(tmp)
            return BigOutcome("vanished", logical)
        if job.incompatible and judge(Incompatibility(key, "the target cannot hold " + ", ".join(job.incompatible),
                                                      tuple(job.incompatible), writable=True)) is Verdict.SKIP:
            self._discard(tmp)
            return BigOutcome("skipped", logical)
        finish: Command = ("PEXPIREAT", key, expire_at_ms) if expire_at_ms is not None else ("PERSIST", key)
        self._write([("RENAME", tmp, key), finish])
        return BigOutcome("copied", logical, job.sent, tuple(job.changed))

    def _discard(self, tmp: bytes) -> None:
        with contextlib.suppress(Exception):  # best effort: the temporary key expires by itself
            self.target.keyed(tmp, [pack(("DEL", tmp))])

    def _read(self, *args: Any) -> Any:
        reply = with_retries(lambda: self.source.command(*args), self.settings, f"read {args[0]}",
                             self.source.endpoint, "source")
        if is_error(reply):
            raise translate(reply, self.source.endpoint, "source")
        return reply

    def _write(self, commands: Sequence[Command]) -> list[Any]:
        # Every command of one copy is on the key or its temporary key: one slot, one node of a cluster.
        replies = self.target.keyed(key_of(commands[0]), [pack(c) for c in commands])
        for command, reply in zip(commands, replies, strict=True):
            if is_error(reply):
                error = translate(reply, self.target.endpoint, "target")
                if type(error) is MigrationError:  # not OOM / READONLY / NOPERM: say which command
                    error = MigrationError(f"target refused {_text(command[0])} while copying a big key: {reply}")
                raise error
        return replies


class _Job:
    """One big key being copied: reads chunks from the source, queues commands, flushes them by size."""

    def __init__(self, copier: BigKeyCopier, key: bytes, tmp: bytes, size_hint: int) -> None:
        self.c = copier
        self.key = key
        self.tmp = tmp
        self.size_hint = size_hint
        self.pending: list[Command] = []
        self.pending_bytes = 0
        self.sent = 0
        self.started = False
        self.incompatible: list[str] = []
        self.changed: list[str] = []

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def count_for(self, length: int) -> int:
        """Elements per read so one chunk is about chunk_bytes, from the key's average element size."""
        average = max(1, self.size_hint // max(1, length))
        return max(MIN_COUNT, min(MAX_COUNT, self.c.chunk_bytes // average))

    def put(self, command: Command) -> None:
        self.pending.append(command)
        size = command_bytes(command)
        self.pending_bytes += size
        if not self.started:
            # The temporary key expires by itself if this run dies before the RENAME.
            self.pending.append(("PEXPIRE", self.tmp, TEMP_KEY_TTL_MS))
            self.started = True
        if self.pending_bytes >= self.c.chunk_bytes or len(self.pending) >= 1000:
            self.flush()

    def put_all(self, head: Command, items: Iterator[Sequence[Any]]) -> None:
        for command in batched(head, items, self.c.max_command_bytes):
            self.put(command)

    def flush(self) -> None:
        if self.pending:
            self.c._write(self.pending)
            self.sent += self.pending_bytes
            self.pending, self.pending_bytes = [], 0

    def has(self, command: str) -> bool:
        return has_command(self.c.target_id.product, self.c.target_id.version, command)

    # -- types ------------------------------------------------------------------------------------------------------

    def copy_string(self) -> None:
        length = int(self.c._read("STRLEN", self.key))
        step = max(1, self.c.max_command_bytes - command_bytes(("APPEND", self.tmp, b"")))
        step = min(step, self.c.chunk_bytes)
        self.put(("SET", self.tmp, self.c._read("GETRANGE", self.key, 0, step - 1) if length else b""))
        for at in range(step, length, step):
            self.put(("APPEND", self.tmp, self.c._read("GETRANGE", self.key, at, at + step - 1)))

    def copy_list(self) -> None:
        length = int(self.c._read("LLEN", self.key))
        count = self.count_for(length)
        for start in range(0, length, count):
            items = self.c._read("LRANGE", self.key, start, start + count - 1)
            self.put_all(("RPUSH", self.tmp), ((i,) for i in items))

    def copy_set(self) -> None:
        count = self.count_for(int(self.c._read("SCARD", self.key)))
        for members in self._scan("SSCAN", count):
            self.put_all(("SADD", self.tmp), ((m,) for m in members))

    def copy_zset(self) -> None:
        length = int(self.c._read("ZCARD", self.key))
        count = self.count_for(length)
        for start in range(0, length, count):
            flat = self.c._read("ZRANGE", self.key, start, start + count - 1, "WITHSCORES")
            # Scores come back as the server's exact text (%.17g, inf): passed on unchanged.
            self.put_all(("ZADD", self.tmp), ((flat[i + 1], flat[i]) for i in range(0, len(flat), 2)))

    def copy_hash(self) -> None:
        count = self.count_for(int(self.c._read("HLEN", self.key)))
        field_ttls = self.c.source_id.hash_field_ttl
        for flat in self._scan("HSCAN", count):
            self.put_all(("HSET", self.tmp), ((flat[i], flat[i + 1]) for i in range(0, len(flat), 2)))
            if field_ttls and flat:
                self._field_ttls(flat[0::2])

    def _field_ttls(self, names: list[bytes]) -> None:
        times = self.c._read("HPEXPIRETIME", self.key, "FIELDS", len(names), *names)
        by_time: dict[int, list[bytes]] = {}
        for name, at in zip(names, times, strict=True):
            if int(at) > 0:
                by_time.setdefault(int(at), []).append(name)
        if not by_time:
            return
        if not self.c.target_id.hash_field_ttl:
            if "field TTLs" not in self.incompatible:
                self.incompatible.append("field TTLs")
            return
        for at, fields in by_time.items():
            self.put(("HPEXPIREAT", self.tmp, at, "FIELDS", len(fields), *fields))

    def _scan(self, command: str, count: int) -> Iterator[list[bytes]]:
        cursor = b"0"
        while True:
            cursor, items = self.c._read(command, self.key, cursor, "COUNT", count)
            yield items
            if cursor == b"0":
                return

    # -- streams ----------------------------------------------------------------------------------------------------

    def copy_stream(self) -> None:
        info = _pairs(self.c._read("XINFO", "STREAM", self.key))
        length = int(info[b"length"])
        last_id = info[b"last-generated-id"]
        if length == 0:
            self.put(("XADD", self.tmp, "MAXLEN", 0, last_id if last_id != b"0-0" else b"0-1", "_", b""))
        count = self.count_for(length)
        start = b"-"
        while length:
            entries = self.c._read("XRANGE", self.key, start, "+", "COUNT", count)
            for entry_id, fields in entries:
                self.put(("XADD", self.tmp, entry_id, *fields))
            if len(entries) < count:
                break
            start = _next_id(entries[-1][0])
        self.put(self._xsetid(info, last_id))
        for group in self.c._read("XINFO", "GROUPS", self.key):
            self._group(_pairs(group))

    def _xsetid(self, info: dict[bytes, Any], last_id: bytes) -> Command:
        if b"entries-added" not in info or not self.has("XSETID ENTRIESADDED"):
            return ("XSETID", self.tmp, last_id)
        return ("XSETID", self.tmp, last_id, "ENTRIESADDED", info[b"entries-added"], "MAXDELETEDID",
                info.get(b"max-deleted-entry-id") or b"0-0")

    def _group(self, group: dict[bytes, Any]) -> None:
        name = group[b"name"]
        create: Command = ("XGROUP", "CREATE", self.tmp, name, group[b"last-delivered-id"])
        if group.get(b"entries-read") is not None and self.has("XGROUP CREATE ENTRIESREAD"):
            create = (*create, "ENTRIESREAD", group[b"entries-read"])
        self.put(create)
        consumers = [_pairs(c)[b"name"] for c in self.c._read("XINFO", "CONSUMERS", self.key, name)]
        if consumers and "consumer seen-time and active-time" not in self.changed:
            self.changed.append("consumer seen-time and active-time")
        if self.has("XGROUP CREATECONSUMER"):
            for consumer in consumers:
                self.put(("XGROUP", "CREATECONSUMER", self.tmp, name, consumer))
        self._pending(name)

    def _pending(self, group: bytes) -> None:
        start, count = b"-", 1000
        now = int(time.time() * 1000)
        while True:
            rows = self.c._read("XPENDING", self.key, group, start, "+", count)
            claims: dict[tuple[bytes, int, int], list[bytes]] = {}
            for entry_id, consumer, idle, deliveries in rows:
                claims.setdefault((consumer, now - int(idle), int(deliveries)), []).append(entry_id)
            for (consumer, at, deliveries), ids in claims.items():
                self.put(("XCLAIM", self.tmp, group, consumer, 0, *ids, "TIME", at, "RETRYCOUNT", deliveries,
                          "FORCE", "JUSTID"))
            if len(rows) < count:
                return
            start = _next_id(rows[-1][0])


def _next_id(entry_id: bytes) -> bytes:
    """The smallest stream id after `entry_id` (exclusive ranges with "(" need Redis 6.2; this works on 6.0)."""
    ms, _, seq = entry_id.partition(b"-")
    return b"%d-%d" % (int(ms), int(seq) + 1)


def _pairs(flat: list[Any]) -> dict[bytes, Any]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
