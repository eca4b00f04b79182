"""Loading RDB records into a target, shared by every reload input (an RDB file, a replication snapshot, a cluster
source's snapshot per primary, the RDB part of an AOF: its base file or its preamble) and by `--strategy sync` (the
snapshot its replication link received).

A file is checked first (`check_snapshot`: truncated, corrupt, or doomed under --on-incompatible fail, while the target
is untouched). Records stream from an RdbReader (`scan()`), are grouped into batches per source database in a pump
thread and written by one TargetWriter per database (a connection to a standalone target, or a slot router over a
cluster target): the same per-key conversion, policy and counting as the live replay. Empty collections are counted
and named, never sent (a server loading a file skips them: migrate.rdb.empty); functions and module data outside keys
are set aside in `Extras`.

    check_snapshot(path, config, target)
    with RdbReader(str(path)) as reader:
        loaded = load_snapshot(config, target, reader, total=keys)
    load_functions(target, settings, loaded.extras.functions)

Several snapshots into one target share a `KeyLoader` (its writers and tallies) and one progress.
Existing keys on the target follow --replace (RESTORE without REPLACE answers BUSYKEY: the key is reported busy).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from migrate.cluster.router import SlotRouter
from migrate.cluster.sides import check_cluster_dbs
from migrate.cluster.topology import Topology
from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import BadInputError, ProblemsFound
from migrate.facts.capabilities import Capabilities
from migrate.facts.types import logical_type, type_name
from migrate.rdb.dump import build_dump
from migrate.rdb.empty import EmptyCheck
from migrate.rdb.empty import reason as empty_reason
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.precheck import Precheck, precheck
from migrate.rdb.reader import KeyTuple, RdbReader
from migrate.rdb.records import End, FunctionRecord, ModuleAux, Record
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import display_key
from migrate.run.convert import Converter
from migrate.run.options import OnIncompatible, RunConfig, RunOptions
from migrate.run.progress import RunProgress
from migrate.run.pump import Pump
from migrate.run.ratelimit import RateLimiter
from migrate.run.result import FunctionsReport
from migrate.run.session import proto_max_bulk_len
from migrate.run.tally import DbTally, KeyIssue
from migrate.run.targets import DirectTarget, RoutedTarget, TargetLink
from migrate.run.writer import Item, TargetWriter
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.wire import Channel

BatchCallback = Callable[[int, int], None]
"""Called after each batch is written with (keys in the batch, payload bytes)."""


@dataclass
class Loaded:
    """A batch of one source database's keys, in file order, and the empty collections met in it."""

    db: int
    items: list[Item]
    empty: list[tuple[bytes, str]] = field(default_factory=list)  # (key, why) of empty collections: not written


@dataclass
class Extras:
    """What an RDB holds besides keys: function libraries (loaded after the keys), module data outside keys (never
    loaded: named), the EOF record (its checksum)."""

    functions: list[bytes] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    end: End | None = None


@dataclass
class LoadOutcome:
    tallies: dict[int, DbTally]  # per source database
    extras: Extras


class KeyLoader:
    """Writes Loaded batches to their target databases, one writer per source database (a connection, or a slot
    router over a cluster target); `tallies` counts every key per source database, over every snapshot loaded."""

    def __init__(self, config: RunConfig, target: Server, target_topology: Topology | None = None) -> None:
        self.config = config
        self.target = target
        self.topology = target_topology
        bulk = proto_max_bulk_len(target)
        threshold = config.options.big_key_threshold
        self.converter = Converter(target.identity.capabilities, min(DEFAULT_MAX_COMMAND_BYTES, bulk // 2))
        self.restore_limit = min(bulk, threshold) if threshold else bulk
        self.writers: dict[int, TargetWriter] = {}
        self.tallies: dict[int, DbTally] = {}
        self.extras = Extras()

    def load(self, reader: RdbReader, progress: RunProgress, on_batch: BatchCallback | None = None) -> None:
        """One snapshot into the target; a bad checksum at its end raises."""
        load_records(reader.scan(), reader.rdb_version, self, progress, self.extras, on_batch)
        end = self.extras.end
        if end is not None and end.checksum_ok is False:
            raise BadInputError(f"the snapshot's checksum does not match (stored {end.checksum:#x}, computed "
                                f"{end.computed:#x})", "the snapshot is corrupt: take a new one")

    def writer(self, source_db: int) -> TargetWriter:
        """The writer of a source database (opened on first use)."""
        writer = self.writers.get(source_db)
        if writer is None:
            options = self.config.options
            target_db = options.selection.target_db(source_db)
            writer = self.writers[source_db] = TargetWriter(
                self._target(target_db), self.converter, options.on_incompatible, self.config.common.connection,
                source_db=source_db, restore_limit=self.restore_limit, copier=None,
                types=frozenset(options.selection.types), dry_run=False)
            self.tallies[source_db] = DbTally(source_db, target_db)
        return writer

    def write(self, batch: Loaded) -> None:
        writer = self.writer(batch.db)
        tally = self.tallies[batch.db]
        tally.empty += [KeyIssue(batch.db, display_key(key), why) for key, why in batch.empty]
        # A key already there: --replace overwrites it, else it is reported busy (after a flush, it came from this
        # load: a db merged by --db-map). A batch resent after a lost connection overwrites its own keys.
        writer.write(batch.items, tally, replace=self.config.options.replace, retry_replace=True)

    def _target(self, db: int) -> TargetLink:
        settings = self.config.common.connection
        if self.topology is not None:
            check_cluster_dbs(self.topology, [db], "target", settings)
            return RoutedTarget(SlotRouter(self.topology, settings, db=db, role="target"))
        self.target.check_databases([db])
        return DirectTarget(Channel(self.target.endpoint, settings, "target", db))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.target.close()


def load_snapshot(config: RunConfig, target: Server, reader: RdbReader, *, total: int | None,
                  description: str = "reloading", on_batch: BatchCallback | None = None,
                  target_topology: Topology | None = None) -> LoadOutcome:
    """Write every key record of `reader` in the selection into the target (a cluster: each key to its slot's
    primary); raise on a bad checksum at the end."""
    loader = KeyLoader(config, target, target_topology)
    try:
        with RunProgress(config.options.show_progress, total, description) as progress:
            loader.load(reader, progress, on_batch)
    finally:
        loader.close()
    return LoadOutcome(loader.tallies, loader.extras)


def check_snapshot(path: Path, config: RunConfig, target: Server | Capabilities) -> Precheck:
    """Read the whole file before anything is written (or flushed): truncated, corrupt or holding keys the run would
    have to fail on, it is refused while the target is still untouched."""
    options = config.options
    capabilities = target.identity.capabilities if isinstance(target, Server) else target
    try:
        check = precheck(path, capabilities, lossy=options.on_incompatible is not OnIncompatible.FAIL,
                         wanted=wanted_records(options.selection))
    except RdbFormatError as exc:
        raise BadInputError(f"the snapshot {path} is unusable: {exc.message}; the target was not touched") from None
    if check.incompatible_total and options.on_incompatible is OnIncompatible.FAIL:
        raise ProblemsFound(_incompatible_message(check), "use --on-incompatible skip or lossy to load the rest; "
                            "`migrate preflight --rdb-file FILE` lists them all")
    return check


def _incompatible_message(check: Precheck) -> str:
    shown = "; ".join(f"db {db} {display_key(key)}: {why}" for db, key, why in check.incompatible[:5])
    more = f" (and {check.incompatible_total - 5:,} more)" if check.incompatible_total > 5 else ""
    return (f"{check.incompatible_total:,} keys of the snapshot cannot be loaded into the target: {shown}{more}; "
            "nothing was flushed or written")


def load_records(records: Iterable[KeyTuple | Record], rdb_version: int, loader: KeyLoader,
                 progress: RunProgress, extras: Extras, on_batch: BatchCallback | None = None) -> None:
    """Load every key record of one RDB (file, snapshot or AOF part) through `loader`; other records go to `extras`."""
    pump: Pump[Loaded] = Pump(record_batches(records, rdb_version, loader.config.options, loader.converter, extras))
    try:
        for batch in pump:
            loader.write(batch)
            nbytes = sum(len(i[1] or b"") for i in batch.items)
            progress.advance(len(batch.items) + len(batch.empty), nbytes)
            if on_batch is not None:
                on_batch(len(batch.items) + len(batch.empty), nbytes)
    finally:
        pump.stop()


def record_batches(records: Iterable[KeyTuple | Record], version: int, options: RunOptions, converter: Converter,
                   extras: Extras) -> Iterator[Loaded]:
    """Key records as batches per source database; functions and module data outside keys go to `extras`."""
    wanted = wanted_records(dataclasses.replace(options.selection, types=()))  # types: filtered after conversion
    types = options.selection.types
    limiter = RateLimiter(options.rate_limit)
    size = limiter.batch_size(options.batch_size)
    extras.end = None  # this snapshot's end (several are loaded one after the other)
    empty = EmptyCheck(version)
    probes = empty.probes
    batch = Loaded(-1, [])
    for item in records:
        if type(item) is tuple:
            _, db, key, type_byte, expire, _, _, body, _, _, _ = item
            if wanted is not None and not wanted(db, key, ""):
                continue
            if db != batch.db or len(batch.items) >= size:
                if batch.items or batch.empty:
                    limiter.acquire(len(batch.items))
                    yield batch
                batch = Loaded(db, [])
            if probes[type_byte] is not None:
                kind = empty.kind(type_byte, body)
                if kind is not None:
                    if not types or logical_type(type_byte, version) in types:
                        batch.empty.append((key, empty_reason(kind, type_name(type_byte, version))))
                    continue
            payload = restore_payload(converter, type_byte, body, version)
            batch.items.append((key, payload, expire, len(payload)))
        elif isinstance(item, FunctionRecord):
            extras.functions.append(item.code)
        elif isinstance(item, ModuleAux):
            extras.notes.append(f"module data outside keys ({item.module_type}) is not loaded: recreate it on the "
                                f"target (e.g. search indexes)")
        elif isinstance(item, End):
            extras.end = item
    if batch.items or batch.empty:
        yield batch


def restore_payload(converter: Converter, type_byte: int, body: bytes, rdb_version: int) -> bytes:
    """A RESTORE payload for an RDB record, stamped directly with the target's version when it would be restamped."""
    decided = converter.cached.get((type_byte, rdb_version))
    version = decided.restamp_to if decided is not None and decided.restamp_to is not None else rdb_version
    return build_dump(type_byte, body, version)


def wanted_records(selection: KeySelection) -> Callable[[int, bytes, str], bool] | None:
    """Whether a record of a file is in the selection: (db, key, logical type); None: every record is."""
    dbs = set(selection.source_dbs({})) if (selection.dbs or selection.db_map) else None
    match = redis_glob(selection.match) if selection.match else None
    if dbs is None and match is None and not selection.exclude and not selection.types:
        return None

    def wanted(db: int, key: bytes, logical: str) -> bool:
        return ((dbs is None or db in dbs) and (match is None or match.fullmatch(key) is not None)
                and selection.wants_key(key) and selection.wants_type(logical))
    return wanted


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


def load_functions(target: Server, settings: ConnectionSettings, codes: list[bytes]) -> FunctionsReport | None:
    """FUNCTION LOAD REPLACE of each library (several snapshots of one cluster carry the same ones: loaded once)."""
    codes = list(dict.fromkeys(codes))
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
