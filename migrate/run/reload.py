"""Strategy 2, flush-and-reload: snapshot the source (replication download, or --from-rdb FILE), flush the target, load
every key through the same per-key conversion, batching and progress as the live replay.

The plan (what is snapshotted, flushed and loaded, an estimated duration from a measured sample, the rollback note) is
produced first; nothing is flushed or written without --yes. The RDB is streamed through the reader: never all in
memory, never written to our disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Final, cast

from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import BadInputError, MigrateError, ProblemsFound
from migrate.identity import config_value, refuse_same_server
from migrate.logs import get_logger
from migrate.rdb.dump import build_dump
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.precheck import Precheck, precheck
from migrate.rdb.reader import RdbReader
from migrate.rdb.records import End, FunctionRecord, ModuleAux
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import display_key
from migrate.rights import Context, check_rights
from migrate.run.convert import CachedPlan, Converter, signature
from migrate.run.options import OnIncompatible, RunConfig, RunOptions
from migrate.run.progress import RunProgress
from migrate.run.pump import Pump
from migrate.run.ratelimit import RateLimiter
from migrate.run.result import DbReport, FunctionsReport, RunResult
from migrate.run.session import check_writable_target, doomed_stream, proto_max_bulk_len
from migrate.run.snapshot import ReplicationSnapshot
from migrate.run.spool import check_space, spool_folder, spooled_snapshot
from migrate.run.tally import DbTally
from migrate.run.writer import Item, TargetWriter
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.wire import Channel, is_error, pack

log = get_logger(__name__)

SAMPLE_KEYS: Final = 2000
PlanSink = Callable[[tuple[str, ...]], None]


@dataclass
class Loaded:
    """A batch of one source database's keys, in file order."""

    db: int
    items: list[Item]


@dataclass
class Extras:
    functions: list[bytes] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    end: End | None = None


def reload(config: RunConfig, on_plan: PlanSink | None = None) -> RunResult:
    started = time.monotonic()
    common, options = config.common, config.options
    settings = common.connection
    with ExitStack() as stack:
        target = Server("target", common.require_target(), settings)
        stack.callback(target.close)
        source = None
        if options.from_rdb is None:
            source = Server("source", common.require_source(), settings)
            stack.callback(source.close)
            refuse_same_server(source.identity, target.identity, options.selection.database_pairs())
        check_writable_target(target)
        _check_rights(config, source, target)
        plan = _plan(config, source, target)
        if on_plan is not None:
            on_plan(plan)
        what = str(options.from_rdb) if options.from_rdb else source.identity.describe() if source else "?"
        if not options.yes or options.dry_run:
            note = "nothing done: dry run" if options.dry_run else "nothing done: rerun with --yes to execute"
            return RunResult("reload", what, target.identity.describe(), executed=False, dry_run=options.dry_run,
                             resumed=False, seconds=time.monotonic() - started, plan=plan, notes=(note,))
        tallies, extras = _execute(config, source, target)
        functions = _load_functions(target, settings, extras.functions)
        return RunResult("reload", what, target.identity.describe(), executed=True, dry_run=False, resumed=False,
                         seconds=time.monotonic() - started,
                         dbs=tuple(DbReport.of(t) for _, t in sorted(tallies.items())),
                         functions=functions, plan=plan, notes=tuple(extras.notes))
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _check_rights(config: RunConfig, source: Server | None, target: Server) -> None:
    options = config.options
    sides: dict[str, tuple[Server, int]] = {"target": (target, options.selection.target_db(0))}
    if source is not None:
        sides["source"] = (source, 0)
    check_rights("reload", sides, Context(source.identity.capabilities if source else None,
                                           target.identity.capabilities, options.flush_target,
                                           from_file=source is None))


# -- the plan ---------------------------------------------------------------------------------------------------------


def _plan(config: RunConfig, source: Server | None, target: Server) -> tuple[str, ...]:
    options = config.options
    lines = [_snapshot_line(options, source), _check_line(options)]
    lines.append(_flush_line(options.selection, target, source))
    lines.append(f"load: every key through the per-key conversion (as is, restamped, or rewritten with commands), "
                 f"batches of {options.batch_size}, --on-incompatible {options.on_incompatible}")
    lines.append(_estimate(config, source, target))
    lines.append("rollback: the flush deletes the target's current data and this tool cannot bring it back: back the "
                 "target up first (BGSAVE and keep its RDB file); the source is only read")
    return tuple(lines)


def _check_line(options: RunOptions) -> str:
    judged = ("and for keys the target cannot hold (--on-incompatible fail stops here, naming them)"
              if options.on_incompatible is OnIncompatible.FAIL else "")
    if options.from_rdb is not None or options.spool:
        where = "" if options.from_rdb is not None else f" in {spool_folder(options.spool_dir)}"
        return (f"check: before anything is flushed, the snapshot{where} is read in full for completeness and its "
                f"checksum {judged}".rstrip())
    return ("check: --no-spool streams the snapshot into the flushed target: if the stream breaks, the target is left "
            "partial (judged beforehand only from the source's modules and field TTLs)")


def _snapshot_line(options: RunOptions, source: Server | None) -> str:
    if options.from_rdb is not None:
        size = options.from_rdb.stat().st_size
        with RdbReader(options.from_rdb) as reader:
            return (f"snapshot: RDB file {options.from_rdb} ({size:,} bytes, {reader.magic} version "
                    f"{reader.rdb_version})")
    assert source is not None
    diskless = config_value(source.client, "repl-diskless-sync")
    delay = config_value(source.client, "repl-diskless-sync-delay")
    wait = f" after its repl-diskless-sync-delay of {delay} s" if delay and delay != "0" else ""
    where = (f"streamed diskless by the source{wait}" if diskless == "yes" else
             "written to the source's own disk first (its repl-diskless-sync is no)" if diskless == "no" else
             "diskless or not as the source is configured (repl-diskless-sync not readable)")
    keys = sum(source.identity.keyspace.values())
    return (f"snapshot: replication download (SYNC, like redis-cli --rdb) of {keys:,} keys from "
            f"{source.identity.describe()} at {source.endpoint}, {where}; nothing on the source is modified")


def _flush_line(selection: KeySelection, target: Server, source: Server | None) -> str:
    dbs = _target_dbs(selection, source)
    held = sum(target.identity.keyspace.values())
    if dbs is None:
        return f"flush: FLUSHALL on {target.identity.describe()} at {target.endpoint} (it holds {held:,} keys now)"
    listed = ", ".join(str(db) for db in dbs)
    keys = sum(target.identity.keyspace.get(db, 0) for db in dbs)
    return f"flush: FLUSHDB on target db {listed} of {target.identity.describe()} (they hold {keys:,} keys now)"


def _target_dbs(selection: KeySelection, source: Server | None) -> list[int] | None:
    """Target databases to flush; None: every one (FLUSHALL)."""
    if selection.dbs or selection.db_map:
        return sorted({selection.target_db(db) for db in selection.source_dbs({})})
    return None


def _estimate(config: RunConfig, source: Server | None, target: Server) -> str:
    """Time to read and convert a sample, plus the target's time to take the same bytes (sent as ECHO, a no-op)."""
    options = config.options
    converter = Converter(target.identity.capabilities, DEFAULT_MAX_COMMAND_BYTES)
    began = time.perf_counter()
    if options.from_rdb is not None:
        payloads, keys = _sample_file(options, converter)
    else:
        assert source is not None
        payloads, keys = _sample_source(source, config.common.connection, converter)
    read_s = time.perf_counter() - began
    if not payloads:
        return "estimate: not measured (no keys in the sample, or the source user may not SCAN and DUMP)"
    write_s = _echo_time(target, config.common.connection, payloads)
    per_key = (read_s + write_s) / len(payloads)
    seconds = per_key * keys
    return (f"estimate: about {keys:,} keys in {seconds:,.1f} s (measured on a sample of {len(payloads)} keys: "
            f"{read_s / len(payloads) * 1e6:.1f} µs/key to read and convert, {write_s / len(payloads) * 1e6:.1f} "
            f"µs/key for the target to take the bytes)")


def _sample_file(options: RunOptions, converter: Converter) -> tuple[list[bytes], int]:
    assert options.from_rdb is not None
    payloads: list[bytes] = []
    with RdbReader(options.from_rdb) as reader, contextlib.suppress(RdbFormatError):  # reported by the check
        for item in reader.scan():
            if type(item) is tuple:
                payloads.append(_payload(converter, item[3], item[7], reader.rdb_version))
                if len(payloads) >= SAMPLE_KEYS:
                    break
    consumed = max(1, reader.bytes_read)
    size = options.from_rdb.stat().st_size
    return payloads, int(len(payloads) * size / consumed) if len(payloads) >= SAMPLE_KEYS else len(payloads)


def _sample_source(source: Server, settings: ConnectionSettings, converter: Converter) -> tuple[list[bytes], int]:
    """DUMP a sample of the first database that has keys (a reload-only user may not SCAN or DUMP: no sample)."""
    keys = sum(source.identity.keyspace.values())
    db = next((db for db, count in sorted(source.identity.keyspace.items()) if count), None)
    if db is None:
        return [], keys
    link = Channel(source.endpoint, settings, "source", db)
    try:
        scanned = with_retries(lambda: link.command("SCAN", 0, "COUNT", SAMPLE_KEYS), settings, "SCAN",
                               source.endpoint, "source")
        names = [] if is_error(scanned) else scanned[1]
        data = b"".join(pack(("DUMP", k)) for k in names)
        dumps = with_retries(lambda: link.call(data, len(names)), settings, "DUMP", source.endpoint,
                             "source") if names else []
    finally:
        link.close()
    return [_converted(converter, dump) for dump in dumps if isinstance(dump, bytes)], keys


def _converted(converter: Converter, payload: bytes) -> bytes:
    decided = converter.cached.get(signature(payload)) or converter.decide(b"", payload, None)
    if isinstance(decided, CachedPlan) and decided.restamp_to is not None:
        return decided.restamp(payload)
    return payload


def _echo_time(target: Server, settings: ConnectionSettings, payloads: list[bytes]) -> float:
    link = Channel(target.endpoint, settings, "target", 0)
    try:
        data = b"".join(pack(("ECHO", p)) for p in payloads)
        began = time.perf_counter()
        link.call(data, len(payloads))
        return time.perf_counter() - began
    finally:
        link.close()


# -- execution --------------------------------------------------------------------------------------------------------


def _execute(config: RunConfig, source: Server | None, target: Server) -> tuple[dict[int, DbTally], Extras]:
    options = config.options
    with ExitStack() as stack:
        path = options.from_rdb
        if path is None and options.spool:
            assert source is not None
            folder = spool_folder(options.spool_dir)
            check_space(source, folder)
            path = stack.enter_context(spooled_snapshot(source, folder))
        stream: IO[bytes] | str
        if path is not None:
            _refuse_doomed_file(path, config, target)
            stream = str(path)
        else:
            assert source is not None
            _refuse_doomed_source(source, target, options)
            snapshot = ReplicationSnapshot(source.endpoint, config.common.connection)
            stream = cast(IO[bytes], stack.enter_context(snapshot))
        reader = stack.enter_context(RdbReader(stream))
        _flush(target, config.common.connection, _target_dbs(options.selection, source))
        try:
            return _load(config, source, target, reader, stack)
        except MigrateError as exc:  # the target was flushed: every error from here on says so first
            exc.message = f"the target was flushed and holds a partial load: {exc.message}"
            exc.hint = f"{exc.hint}; reload again once the cause is fixed (the target's data was replaced)"
            raise
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _load(config: RunConfig, source: Server | None, target: Server, reader: RdbReader,
          stack: ExitStack) -> tuple[dict[int, DbTally], Extras]:
    options = config.options
    bulk = proto_max_bulk_len(target)
    threshold = options.big_key_threshold
    max_command_bytes = min(DEFAULT_MAX_COMMAND_BYTES, bulk // 2)
    converter = Converter(target.identity.capabilities, max_command_bytes)
    loader = _Loader(config, target, converter, min(bulk, threshold) if threshold else bulk)
    stack.callback(loader.close)
    extras = Extras()
    total = sum(source.identity.keyspace.values()) if source is not None else None
    progress = stack.enter_context(RunProgress(options.show_progress, total, "reloading"))
    pump: Pump[Loaded] = Pump(_batches(reader, options, converter, extras))
    try:
        for batch in pump:
            loader.write(batch)
            progress.advance(len(batch.items), sum(len(i[1] or b"") for i in batch.items))
    finally:
        pump.stop()
    if extras.end is not None and extras.end.checksum_ok is False:
        raise BadInputError(f"the snapshot's checksum does not match (stored {extras.end.checksum:#x}, computed "
                            f"{extras.end.computed:#x})", "the snapshot is corrupt: take a new one")
    return loader.tallies, extras


def _refuse_doomed_file(path: Path, config: RunConfig, target: Server) -> None:
    """Read the whole file before the flush: truncated, corrupt or holding keys the run would have to fail on, it is
    refused while the target is still untouched."""
    options = config.options
    try:
        check = precheck(path, target.identity.capabilities, lossy=options.on_incompatible is not OnIncompatible.FAIL,
                         wanted=_wanted(options.selection))
    except RdbFormatError as exc:
        raise BadInputError(f"the snapshot {path} is unusable: {exc.message}; the target was not touched") from None
    if check.incompatible_total and options.on_incompatible is OnIncompatible.FAIL:
        raise ProblemsFound(_incompatible_message(check), "use --on-incompatible skip or lossy to load the rest; "
                            "`migrate preflight --rdb-file FILE` lists them all")


def _incompatible_message(check: Precheck) -> str:
    shown = "; ".join(f"db {db} {display_key(key)}: {why}" for db, key, why in check.incompatible[:5])
    more = f" (and {check.incompatible_total - 5:,} more)" if check.incompatible_total > 5 else ""
    return (f"{check.incompatible_total:,} keys of the snapshot cannot be loaded into the target: {shown}{more}; "
            "nothing was flushed")


def _refuse_doomed_source(source: Server, target: Server, options: RunOptions) -> None:
    """Streamed (--no-spool), the snapshot cannot be read before the flush: judge it from what the source says."""
    if options.on_incompatible is not OnIncompatible.FAIL:
        return
    reason = doomed_stream(source, target)
    if reason:
        raise ProblemsFound(f"the snapshot would fail to load: {reason}; nothing was flushed",
                            "use --on-incompatible skip or lossy, or drop --no-spool so the snapshot is checked key "
                            "by key")


def _flush(target: Server, settings: ConnectionSettings, dbs: list[int] | None) -> None:
    if dbs is None:
        with_retries(target.client.flushall, settings, "FLUSHALL on the target", target.endpoint, "target")
        log.warning("flushed", target=str(target.endpoint), dbs="all")
        return
    target.check_databases(dbs)
    for db in dbs:
        client = target.db_client(db)
        try:
            with_retries(client.flushdb, settings, f"FLUSHDB on target db {db}", target.endpoint, "target")
        finally:
            client.close()
    log.warning("flushed", target=str(target.endpoint), dbs=dbs)


def _payload(converter: Converter, type_byte: int, body: bytes, rdb_version: int) -> bytes:
    """A RESTORE payload for an RDB record, stamped directly with the target's version when it would be restamped."""
    decided = converter.cached.get((type_byte, rdb_version))
    version = decided.restamp_to if decided is not None and decided.restamp_to is not None else rdb_version
    return build_dump(type_byte, body, version)


def _wanted(selection: KeySelection) -> Callable[[int, bytes, str], bool] | None:
    """Whether a record of the file is in the selection: (db, key, logical type); None: every record is."""
    dbs = set(selection.source_dbs({})) if (selection.dbs or selection.db_map) else None
    match = redis_glob(selection.match) if selection.match else None
    if dbs is None and match is None and not selection.exclude and not selection.types:
        return None

    def wanted(db: int, key: bytes, logical: str) -> bool:
        return ((dbs is None or db in dbs) and (match is None or match.fullmatch(key) is not None)
                and selection.wants_key(key) and selection.wants_type(logical))
    return wanted


def _batches(reader: RdbReader, options: RunOptions, converter: Converter, extras: Extras) -> Iterator[Loaded]:
    """Key records as batches per source database; functions and module data outside keys go to `extras`."""
    wanted = _wanted(dataclasses.replace(options.selection, types=()))  # types: the writer filters, after conversion
    limiter = RateLimiter(options.rate_limit)
    size = limiter.batch_size(options.batch_size)
    version = reader.rdb_version
    batch = Loaded(-1, [])
    for item in reader.scan():
        if type(item) is tuple:
            _, db, key, type_byte, expire, _, _, body, _, _, _ = item
            if wanted is not None and not wanted(db, key, ""):
                continue
            if db != batch.db or len(batch.items) >= size:
                if batch.items:
                    limiter.acquire(len(batch.items))
                    yield batch
                batch = Loaded(db, [])
            payload = _payload(converter, type_byte, body, version)
            batch.items.append((key, payload, expire, len(payload)))
        elif isinstance(item, FunctionRecord):
            extras.functions.append(item.code)
        elif isinstance(item, ModuleAux):
            extras.notes.append(f"module data outside keys ({item.module_type}) is not loaded: recreate it on the "
                                f"target (e.g. search indexes)")
        elif isinstance(item, End):
            extras.end = item
    if batch.items:
        yield batch


def redis_glob(pattern: str) -> re.Pattern[bytes]:
    """A SCAN MATCH pattern as a regex over key bytes: * ? [abc] [^a-z] [!a-z] and backslash escapes."""
    out, i, raw = [], 0, pattern.encode()
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch == b"\\" and i + 1 < len(raw):
            out.append(re.escape(raw[i + 1:i + 2]))
            i += 2
            continue
        if ch == b"[":
            end = raw.find(b"]", i + 1)
            if end > i + 1:
                body = raw[i + 1:end]
                negate = body[:1] in (b"^", b"!")
                body = body[1:] if negate else body
                out.append(b"[" + (b"^" if negate else b"") + body.replace(b"\\", b"\\\\") + b"]")
                i = end + 1
                continue
        out.append(b".*" if ch == b"*" else b"." if ch == b"?" else re.escape(ch))
        i += 1
    return re.compile(b"".join(out), re.DOTALL)


class _Loader:
    """Writes Loaded batches to their target databases, one writer (and connection) per database."""

    def __init__(self, config: RunConfig, target: Server, converter: Converter, restore_limit: int) -> None:
        self.config = config
        self.target = target
        self.converter = converter
        self.restore_limit = restore_limit
        self.writers: dict[int, TargetWriter] = {}
        self.tallies: dict[int, DbTally] = {}

    def write(self, batch: Loaded) -> None:
        options = self.config.options
        target_db = options.selection.target_db(batch.db)
        writer = self.writers.get(batch.db)
        if writer is None:
            self.target.check_databases([target_db])
            link = Channel(self.target.endpoint, self.config.common.connection, "target", target_db)
            writer = self.writers[batch.db] = TargetWriter(
                link, self.converter, options.on_incompatible, self.config.common.connection, source_db=batch.db,
                restore_limit=self.restore_limit, copier=None, types=frozenset(options.selection.types),
                dry_run=False)
            self.tallies[batch.db] = DbTally(batch.db, target_db)
        tally = self.tallies[batch.db]
        # The target was flushed: a key already there came from this load (a db merged by --db-map): reported busy.
        writer.write(batch.items, tally, replace=options.replace, retry_replace=True)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.target.close()


def _load_functions(target: Server, settings: ConnectionSettings, codes: list[bytes]) -> FunctionsReport | None:
    if not codes:
        return None
    loaded, failed = 0, []
    for code in codes:
        try:
            with_retries(partial(target.client.execute_command, "FUNCTION", "LOAD", "REPLACE", code), settings,
                         "FUNCTION LOAD", target.endpoint, "target")
            loaded += 1
        except Exception as exc:  # reported: the keys are loaded already
            failed.append(" ".join(str(exc).split())[:120])
    return FunctionsReport(loaded, f"{len(failed)} not loaded: {'; '.join(failed)}" if failed else "")
