"""Strategy 1, live replay: SCAN the source, DUMP each key with its expiry, convert it for the target, RESTORE it.

Two threads per database: a reader (SCAN, the optional size probe, DUMP + PEXPIRETIME/PTTL, all pipelined per batch)
and the writer in the calling thread (conversion, pipelined RESTORE, big keys, checkpoint, progress). A bounded queue
between them overlaps the source's work with the target's and bounds memory to a few batches. The source only
receives read commands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final, TypeVar

from migrate.activity import Marks, read_marks
from migrate.config import ConnectionSettings
from migrate.connection import translate, with_retries
from migrate.errors import ConfigError, MigrationError
from migrate.facts.commands import has_command
from migrate.logs import get_logger
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import display_key
from migrate.rights import Context, check_rights
from migrate.run.bigkeys import BigKeyCopier
from migrate.run.checkpoint import Checkpoint, DbState, check_writable
from migrate.run.convert import Converter
from migrate.run.functions import copy_functions
from migrate.run.guard import MAX_RECOVERIES, Guard, TargetRestarted
from migrate.run.options import MiB, RunConfig, RunOptions
from migrate.run.progress import RunProgress
from migrate.run.pump import Pump
from migrate.run.ratelimit import RateLimiter
from migrate.run.result import DbReport, RunResult
from migrate.run.session import (
    check_writable_target,
    flushdb,
    open_servers,
    prepare_target_dbs,
    proto_max_bulk_len,
    source_dbs,
)
from migrate.run.tally import DbTally
from migrate.run.writer import Item, TargetWriter
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.sizes import memory_usage_commands
from migrate.wire import Channel, is_error, pack

log = get_logger(__name__)
T = TypeVar("T")

BATCH_BYTES: Final = 32 * MiB  # a SCAN page is cut into DUMP rounds of about this many (probed) bytes
CHUNK_BYTES: Final = 4 * MiB  # big keys: bytes per chunk read and written
WATCH_SECONDS: Final = 1.0  # how often the target's run_id is read during the copy (a restart is noticed)


@dataclass
class Page:
    cursor: int  # SCAN cursor after this page (0: the last page)
    keys: list[bytes]
    volatile: bool  # the database holds keys with a TTL: read each key's expiry


@dataclass
class Group:
    """Keys of one page to DUMP together (a page is cut in groups of about BATCH_BYTES) and the big ones."""

    cursor: int | None  # the page's cursor on its last group; None on the others
    small: list[bytes]
    big: dict[bytes, int]
    volatile: bool


@dataclass
class Batch:
    cursor: int | None  # SCAN cursor once this batch is written; None: more batches of the same page follow
    items: list[Item]


def replay(config: RunConfig) -> RunResult:
    started = time.monotonic()
    options = config.options
    source, target = open_servers(config)
    try:
        check_writable_target(target)
        dbs = source_dbs(options.selection, source)
        target_dbs = [options.selection.target_db(db) for db in dbs]
        target.check_databases(target_dbs)
        if not options.dry_run:
            check_writable(options.checkpoint)
        first = (dbs[0], target_dbs[0]) if dbs else (0, 0)
        check_rights("replay", {"source": (source, first[0]), "target": (target, first[1])},
                     Context(source.identity.capabilities, target.identity.capabilities, options.flush_target))
        checkpoint = _checkpoint(config, source, target, dbs)
        job = _Replay(config, source, target, checkpoint, Guard(source, target, checkpoint, dbs))
        job.prepare(target_dbs)
        functions = None
        if not checkpoint.functions_done:
            functions = copy_functions(source, target, config.common.connection,
                                       replace=options.replace or options.resume, dry_run=options.dry_run)
            checkpoint.functions_done = not options.dry_run
        before = source_marks(source)
        try:
            job.run(dbs)
        except MigrationError as exc:
            if not options.dry_run:
                exc.hint = f"{exc.hint}; the checkpoint {options.checkpoint} is kept: rerun with --resume"
            raise
        job.notes += source_activity(before, source_marks(source))
        job.notes += unselected(options.selection, source.identity.keyspace, dbs)
        if not options.dry_run:
            checkpoint.remove()  # finished: nothing to resume
        return RunResult(
            strategy="replay", source=source.identity.describe(), target=target.identity.describe(), executed=True,
            dry_run=options.dry_run, resumed=options.resume, seconds=time.monotonic() - started,
            dbs=tuple(DbReport.of(checkpoint.dbs[db].tally) for db in dbs), functions=functions,
            notes=tuple(job.notes))
    finally:
        source.close()
        target.close()


def source_marks(source: Server) -> Marks:
    return read_marks(source.client, source.settings, source.endpoint, source.role)


def source_activity(before: Marks, after: Marks) -> list[str]:
    """A point-in-time copy misses what the source took while it ran: say so, with the numbers."""
    change = after.changes_since(before)
    if change.unchanged:
        return []
    return [f"the source changed during the copy ({change.describe()}): keys written after they were copied are "
            "older on the target; run `migrate verify` to see them, or use --strategy sync to keep following the "
            "source's writes"]


def unselected(selection: KeySelection, keyspace: dict[int, int], dbs: list[int]) -> list[str]:
    """Source databases with keys that the selection leaves out, named so that a partial copy is never a surprise."""
    left = sorted(db for db, keys in keyspace.items() if keys and db not in dbs)
    if not left:
        return []
    held = ", ".join(f"db {db} ({keyspace[db]:,} keys)" for db in left)
    return [f"not copied (outside the selected databases): {held}"]


def fingerprint(config: RunConfig, source: Server, target: Server) -> dict[str, Any]:
    """What a resume must match: the servers (redacted) and the key selection."""
    sel = config.options.selection
    return {"strategy": "replay", "source": str(source.endpoint.with_db(0)), "target": str(target.endpoint.with_db(0)),
            "match": sel.match, "types": list(sel.types), "exclude": list(sel.exclude),
            "db_map": [list(p) for p in sel.db_map], "dbs": list(sel.dbs)}


def _checkpoint(config: RunConfig, source: Server, target: Server, dbs: list[int]) -> Checkpoint:
    options = config.options
    print_ = fingerprint(config, source, target)
    if options.resume:
        checkpoint = Checkpoint.load(options.checkpoint, print_)
        for db in dbs:
            if db not in checkpoint.dbs:
                raise ConfigError(f"checkpoint {options.checkpoint} does not cover source db {db}, which has keys "
                                  f"now", "start over without --resume, or select the databases with --db")
        return checkpoint
    target_dbs = [options.selection.target_db(db) for db in dbs]
    state = prepare_target_dbs(target, target_dbs, config)
    checkpoint = Checkpoint(options.checkpoint, print_, source_run_id=source.identity.run_id,
                            target_run_id=target.identity.run_id, flush_pending=list(state.to_flush))
    for db, target_db in zip(dbs, target_dbs, strict=True):
        # With the target db empty at the start (or --replace), any key found there later is one this run wrote.
        checkpoint.dbs[db] = DbState(DbTally(db, target_db), may_replace=target_db in state.empty or options.replace)
    if not options.dry_run:
        checkpoint.save()  # exists from the first second: a failure at the first batch still leaves it
    return checkpoint


class _Replay:
    def __init__(self, config: RunConfig, source: Server, target: Server, checkpoint: Checkpoint,
                 guard: Guard) -> None:
        self.config = config
        self.options: RunOptions = config.options
        self.settings: ConnectionSettings = config.common.connection
        self.source = source
        self.target = target
        self.checkpoint = checkpoint
        self.guard = guard
        self.notes: list[str] = []
        self.recovering = False  # the target restarted during this run: databases copied again replace keys
        self.watched_at = time.monotonic()
        bulk = self.max_value_bytes = proto_max_bulk_len(target)
        threshold = self.options.big_key_threshold
        self.restore_limit = min(bulk, threshold) if threshold else bulk
        self.max_command_bytes = min(DEFAULT_MAX_COMMAND_BYTES, bulk // 2)
        self.converter = Converter(target.identity.capabilities, self.max_command_bytes)
        self.limiter = RateLimiter(self.options.rate_limit)

    def prepare(self, target_dbs: list[int]) -> None:
        """On resume: check the checkpoint against the servers as they are, and remove a killed run's leftovers."""
        if not self.options.resume:
            return
        self.notes += self.guard.reconcile()
        removed = self.guard.remove_temp_keys(target_dbs)
        if removed:
            self.notes.append(f"removed {removed} temporary keys the interrupted run left on the target")
        self.checkpoint.save()

    def run(self, dbs: list[int]) -> None:
        """Copy every database; if the target restarted meanwhile, copy again what it lost (a bounded number of
        times), so that success is only reported for keys the target holds."""
        for attempt in range(MAX_RECOVERIES + 1):
            try:
                self._copy(dbs)
                if self.options.dry_run or not self.guard.target_changed():
                    return
            except TargetRestarted:
                pass
            if attempt == MAX_RECOVERIES:
                raise MigrationError(f"the target restarted {attempt + 1} times during the run",
                                     "make the target stable (memory, crashes, restarts) before migrating")
            notes = self.guard.reconcile()
            self.notes += notes or ["the target restarted during the run and still holds every key written (it "
                                    "persisted them)"]
            self.recovering = True
            if not self.options.dry_run:
                self.checkpoint.save()

    def _copy(self, dbs: list[int]) -> None:
        total = sum(self.source.identity.keyspace.get(db, 0) for db in dbs)
        done = sum(_processed(self.checkpoint.dbs[db].tally) for db in dbs)
        with RunProgress(self.options.show_progress, total) as progress:
            progress.advance(done, 0)
            for db in dbs:
                state = self.checkpoint.dbs[db]
                if state.done:
                    continue
                progress.describe(f"db {db}")
                self._db(db, state, progress)

    def _db(self, db: int, state: DbState, progress: RunProgress) -> None:
        target_db = self.options.selection.target_db(db)
        reader = SourceReader(Channel(self.source.endpoint, self.settings, "source", db), self.source, self.options,
                              self.limiter, self.settings)
        target_link = Channel(self.target.endpoint, self.settings, "target", target_db)
        copier = BigKeyCopier(Channel(self.source.endpoint, self.settings, "source", db), target_link,
                              self.source.identity, self.target.identity, self.settings, chunk_bytes=CHUNK_BYTES,
                              max_command_bytes=self.max_command_bytes, max_value_bytes=self.max_value_bytes)
        writer = TargetWriter(target_link, self.converter, self.options.on_incompatible, self.settings,
                              source_db=db, restore_limit=self.restore_limit, copier=copier,
                              types=frozenset(self.options.selection.types), dry_run=self.options.dry_run)
        replace = self.options.replace or (state.may_replace and (self.options.resume or self.recovering))
        pump = Pump(reader.batches(state.cursor))
        page = state.tally.fresh()
        try:
            for batch in pump:
                if batch.items:
                    self._flush_before_first_write(target_db)
                tally = state.tally.fresh()
                writer.write(batch.items, tally, replace=replace, retry_replace=state.may_replace)
                page.add(tally)
                progress.advance(len(batch.items), tally.bytes)
                if batch.cursor is None:
                    continue  # more of this SCAN page follows: the cursor cannot move yet
                # Only a fully written page counts, with its cursor: a failure leaves the checkpoint before it, and
                # a resume redoes the page without counting it twice.
                state.tally.add(page)
                page = state.tally.fresh()
                state.cursor = batch.cursor
                state.done = batch.cursor == 0
                self._page_done()
        finally:
            pump.stop()
            if not self.options.dry_run:
                self.checkpoint.save()
            for link in (reader.link, target_link, copier.source):
                link.close()
        if reader.probe_disabled:
            self.notes.append(f"db {db}: size probe unavailable ({reader.probe_disabled}); big keys were detected "
                              f"from their DUMP size")

    def _flush_before_first_write(self, target_db: int) -> None:
        """--flush-target empties a target database only once a key is about to be written into it."""
        if target_db not in self.checkpoint.flush_pending or self.options.dry_run:
            return
        flushdb(self.target, target_db)
        self.checkpoint.flush_pending.remove(target_db)
        self.checkpoint.save()

    def _page_done(self) -> None:
        if self.options.dry_run:
            return
        self.checkpoint.save_every(self.options.checkpoint_interval)
        if time.monotonic() - self.watched_at >= WATCH_SECONDS:
            self.watched_at = time.monotonic()
            if self.guard.target_changed():
                raise TargetRestarted


def _processed(tally: DbTally) -> int:
    return tally.copied + tally.expired + len(tally.skipped) + len(tally.busy)


class SourceReader:
    """Reads one source database in batches: SCAN, MEMORY USAGE (big keys), DUMP + expiry, pipelined."""

    def __init__(self, link: Channel, source: Server, options: RunOptions, limiter: RateLimiter,
                 settings: ConnectionSettings, scan_link: Channel | None = None) -> None:
        self.link = link  # DUMP and expiries
        # SCAN, INFO and the size probe (a cluster replica's reader gives a second READONLY link)
        self.scan_link = scan_link or Channel(link.endpoint, settings, "source", link.db)
        self.source = source
        self.options = options
        self.limiter = limiter
        self.settings = settings
        self.threshold = options.big_key_threshold
        self.probe = self.threshold > 0
        self.probe_disabled = ""
        ident = source.identity
        self.absolute_ttl = has_command(ident.product, ident.version, "PEXPIRETIME")
        self.ttl_head = b"*2\r\n$11\r\nPEXPIRETIME\r\n" if self.absolute_ttl else b"*2\r\n$4\r\nPTTL\r\n"
        sel = options.selection
        self.scan_tail = b""
        if sel.match:
            self.scan_tail += pack(["MATCH", sel.match])[4:]
        self.scan_tail += pack(["COUNT", limiter.batch_size(options.batch_size)])[4:]
        self.scan_argc = 2 + (2 if sel.match else 0) + 2
        if len(sel.types) == 1 and sel.types[0] != "module":  # server-side filter (SCAN TYPE, Redis 6.0+)
            self.scan_tail += pack(["TYPE", sel.types[0]])[4:]
            self.scan_argc += 2

    def _call(self, data: bytes, replies: int, what: str, link: Channel | None = None) -> list[Any]:
        use = link or self.link
        return with_retries(lambda: use.call(data, replies), self.settings, what, use.endpoint, "source")

    def _scan_request(self, cursor: int) -> bytes:
        """SCAN one page, and INFO keyspace: whether the database holds any key with a TTL."""
        c = b"%d" % cursor
        return b"*%d\r\n$4\r\nSCAN\r\n$%d\r\n%b\r\n%b%b" % (self.scan_argc, len(c), c, self.scan_tail, _INFO_KEYSPACE)

    def _scan_parse(self, reply: Any, info: Any) -> Page:
        if is_error(reply):
            raise translate(reply, self.link.endpoint, "source")
        next_cursor, keys = reply
        if self.options.selection.exclude:
            wanted = self.options.selection.wants_key
            keys = [k for k in keys if wanted(k)]
        return Page(int(next_cursor), keys, _volatile(info, self.link.db))

    def scan(self, cursor: int) -> Page:
        return self._scan_parse(*self._call(self._scan_request(cursor), 2, "SCAN", self.scan_link))

    def groups(self, cursor: int) -> Iterator[Group]:
        """Stage 1 (its own connection): SCAN pages from `cursor`, the rate limit, the size probe, the split."""
        while True:
            page = self.scan(cursor)
            self.limiter.acquire(len(page.keys))
            groups = self._split(page.keys)
            for i, (small, big) in enumerate(groups):
                yield Group(page.cursor if i == len(groups) - 1 else None, small, big, page.volatile)
            if page.cursor == 0:
                return
            cursor = page.cursor

    def batches(self, cursor: int) -> Iterator[Batch]:
        """Stage 2: DUMP + expiry per group, while stage 1 already scans and probes ahead in its own thread.

        Two connections keep the single-threaded source busy: it runs one stage's commands while we parse the other
        stage's replies.
        """
        pump: Pump[Group] = Pump(self.groups(cursor))
        try:
            for group in pump:
                yield Batch(group.cursor, self.fetch(group.small, group.big, group.volatile))
        finally:
            pump.stop()
            self.scan_link.close()

    def _split(self, keys: list[bytes]) -> list[tuple[list[bytes], dict[bytes, int]]]:
        """Cut a page into DUMP rounds of about BATCH_BYTES; keys over the threshold go to the chunked copier."""
        if not keys or not self.probe:
            return [(keys, {})]
        sizes = self.probe_sizes(keys)
        if sizes is None or (max(sizes) <= self.threshold and sum(sizes) <= BATCH_BYTES):
            return [(keys, {})]  # the common case, decided without a Python loop over the keys
        groups: list[tuple[list[bytes], dict[bytes, int]]] = [([], {})]
        used = 0
        for key, size in zip(keys, sizes, strict=True):
            if size > self.threshold:
                groups[-1][1][key] = size
                continue
            if used + size > BATCH_BYTES and groups[-1][0]:
                groups.append(([], {}))
                used = 0
            groups[-1][0].append(key)
            used += size
        return groups

    def probe_sizes(self, keys: list[bytes]) -> list[int] | None:
        if self.source.identity.capabilities.memory_usage_unsafe:  # an empty list would crash it (migrate.sizes)
            link = self.scan_link
            guarded = with_retries(lambda: memory_usage_commands(link, keys, True), self.settings, "LLEN",
                                   link.endpoint, "source")
            if guarded is None:
                self.probe = False
                self.probe_disabled = ("LLEN refused: MEMORY USAGE is never sent to a Redis before 7.0 without it "
                                       "(an empty list would crash the server)")
                log.warning("size probe disabled", reason=self.probe_disabled)
                return None
            data = b"".join(guarded)
        else:
            data = _commands(_MEMORY_USAGE, keys)
        replies = self._call(data, len(keys), "MEMORY USAGE", self.scan_link)
        error = None if set(map(type, replies)) <= _INT_OR_NONE else next(r for r in replies if is_error(r))
        if error is not None:
            self.probe = False
            self.probe_disabled = " ".join(str(error).split())[:120]
            log.warning("size probe disabled", reason=self.probe_disabled)
            return None
        return [r or 0 for r in replies]

    def fetch(self, small: list[bytes], big: dict[bytes, int], volatile: bool = True) -> list[Item]:
        """DUMP + expiry for small keys, expiry only for big ones (their value is read in chunks later).

        Without a key with a TTL in the database (INFO keyspace expires=0 when the page was read), no expiry is read:
        a TTL set after that is a change made after the read, like any other write during the run.
        """
        data, count = self._fetch_request(small, big, volatile)
        replies = self._call(data, count, "DUMP") if count else []  # none: only big keys without a TTL to read
        return self._fetch_parse(small, big, volatile, replies)

    def _fetch_request(self, small: list[bytes], big: dict[bytes, int], volatile: bool) -> tuple[bytes, int]:
        if not volatile:
            return _commands(_DUMP, small), len(small)
        pair = _DUMP + b"%b" + self.ttl_head + b"%b"
        data = b"".join([pair % (b, b) for b in _bulks(small)]) + _commands(self.ttl_head, list(big))
        return data, 2 * len(small) + len(big)

    def _fetch_parse(self, small: list[bytes], big: dict[bytes, int], volatile: bool,
                     replies: list[Any]) -> list[Item]:
        if not volatile:
            return self._parse_persistent(small, big, replies)
        now = int(time.time() * 1000)
        absolute = self.absolute_ttl
        items: list[Item] = []
        append = items.append
        for i, key in enumerate(small):
            payload, ttl = replies[2 * i], replies[2 * i + 1]
            if type(ttl) is not int or (payload is not None and type(payload) is not bytes):
                self._fail(key, payload if is_error(payload) else ttl)
            if ttl == -2 or payload is None:
                append((key, None, None, 0))  # expired or deleted since SCAN
            elif ttl == -1:
                append((key, payload, None, len(payload)))
            else:
                append((key, payload, ttl if absolute else now + ttl, len(payload)))
        for j, (key, size) in enumerate(big.items()):
            ttl = replies[2 * len(small) + j]
            if type(ttl) is not int:
                self._fail(key, ttl)
            expire_at = None if ttl == -1 else (ttl if absolute else now + ttl)
            append((key, None, expire_at, size if ttl != -2 else 0))
        return items

    def _parse_persistent(self, small: list[bytes], big: dict[bytes, int], replies: list[Any]) -> list[Item]:
        """Items built by zip in C: (key, payload or None when deleted since SCAN, no expiry, 0)."""
        if not set(map(type, replies)) <= _BYTES_OR_NONE:
            key, reply = next((k, r) for k, r in zip(small, replies, strict=True) if is_error(r))
            self._fail(key, reply)
        items: list[Item] = list(zip(small, replies, repeat(None), repeat(0)))
        items += [(key, None, None, size) for key, size in big.items()]
        return items

    def _fail(self, key: bytes, reply: Any) -> None:
        error = translate(reply, self.link.endpoint, "source")
        error.message = f"{error.message} (reading key {display_key(key)})"
        raise error


_INT_OR_NONE: Final = frozenset({int, type(None)})
_BYTES_OR_NONE: Final = frozenset({bytes, type(None)})
_DUMP: Final = b"*2\r\n$4\r\nDUMP\r\n"
_INFO_KEYSPACE: Final = b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n"
_MEMORY_USAGE: Final = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n"


def _bulks(keys: list[bytes]) -> list[bytes]:
    """Each key as a RESP bulk string."""
    return [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]


def _commands(head: bytes, keys: list[bytes]) -> bytes:
    """The same one-key command for every key, encoded with one C-level join (head + key, head + key, ...)."""
    if not keys:
        return b""
    return head + head.join(_bulks(keys))


def _volatile(info: Any, db: int) -> bool:
    """Whether INFO keyspace shows keys with a TTL in `db` (unreadable: assume so)."""
    if not isinstance(info, bytes):
        return True
    marker = b"db%d:" % db
    for line in info.splitlines():
        if line.startswith(marker):
            fields = dict(part.split(b"=", 1) for part in line[len(marker):].split(b",") if b"=" in part)
            return fields.get(b"expires", b"1") != b"0"
    return False  # no line: the database is empty
