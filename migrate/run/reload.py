"""Strategy 2, flush-and-reload: snapshot the source (replication download, or --from-rdb FILE), flush the target, load
every key through the same per-key conversion, batching and progress as the live replay.

The plan (what is snapshotted, flushed and loaded, an estimated duration from a measured sample, the rollback note) is
produced first; nothing is flushed or written without --yes. The RDB is streamed through the reader: never all in
memory, never written to our disk.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

from migrate.aof import AofInput
from migrate.cluster.links import NodeLink
from migrate.cluster.sides import (
    Side,
    check_cluster_dbs,
    discover_side,
    primary_keyspace,
    refuse_same_cluster,
    require_ready,
)
from migrate.cluster.topology import Topology
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import translate, with_retries
from migrate.errors import ConfigError, MigrateError, ProblemsFound
from migrate.identity import config_value, refuse_same_server
from migrate.logs import get_logger
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.rights import Context, check_rights
from migrate.run.aofload import check_aof, load_aof, open_input
from migrate.run.aofload import commands_of as aof_commands
from migrate.run.aofload import describe as describe_aof
from migrate.run.convert import CachedPlan, Converter, signature
from migrate.run.load import (
    KeyLoader,
    LoadOutcome,
    check_snapshot,
    load_functions,
    restore_payload,
)
from migrate.run.options import LoadVia, OnIncompatible, RunConfig, RunOptions
from migrate.run.parallel_load import LoadTask, SnapshotPool
from migrate.run.progress import RunProgress
from migrate.run.replicaload import load_snapshot_via_replication, load_via_replication
from migrate.run.result import CommandsReport, DbReport, FunctionsReport, RunResult
from migrate.run.session import check_writable_target, doomed_stream, flush_dbs
from migrate.run.snapshot import ReplicationSnapshot
from migrate.run.spool import spool_folder, spooled_snapshots
from migrate.run.tally import DbTally
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.stream import StreamTally, TargetProfile, Translator
from migrate.wire import Channel, is_error, pack

log = get_logger(__name__)

SAMPLE_KEYS: Final = 2000
PlanSink = Callable[[tuple[str, ...]], None]


@dataclass
class Sides:
    """Both sides of a reload: a standalone server, or a cluster (its first primary stands for its identity)."""

    target: Server
    source: Server | None  # None: --from-rdb or --from-aof
    target_topology: Topology | None = None
    source_topology: Topology | None = None

    @property
    def source_nodes(self) -> list[Endpoint]:
        """Whose snapshots are loaded: every primary of a cluster source, else the source."""
        if self.source_topology is not None:
            return [s.primary.endpoint for s in self.source_topology.shards]
        return [self.source.endpoint] if self.source is not None else []

    @property
    def target_primaries(self) -> list[Endpoint]:
        if self.target_topology is not None:
            return [s.primary.endpoint for s in self.target_topology.shards]
        return [self.target.endpoint]

    def describe_source(self, options: RunOptions) -> str:
        if options.from_aof is not None:
            return str(options.from_aof)
        if options.from_rdb:
            return ", ".join(map(str, options.from_rdb))
        if self.source is None:
            return "?"
        return _cluster_label(self.source, self.source_topology)

    def describe_target(self) -> str:
        return _cluster_label(self.target, self.target_topology)


def _cluster_label(server: Server, topology: Topology | None) -> str:
    if topology is None:
        return server.identity.describe()
    return f"{server.identity.label} cluster, {len(topology.shards)} shards (RDB {server.identity.rdb_version or '?'})"


def open_sides(config: RunConfig, stack: ExitStack) -> Sides:
    """Both sides read from their seeds (a cluster from any node), checked before anything is planned."""
    common, options, settings = config.common, config.options, config.common.connection
    target_side = discover_side(common, "target")
    source_side = discover_side(common, "source") if not options.from_file else None
    for side, role in ((source_side, "source"), (target_side, "target")):
        if isinstance(side, Topology):
            require_ready(side, role, settings)
    if source_side is not None:
        refuse_same_cluster(source_side, target_side)

    def server(role: str, side: Side) -> Server:
        opened = Server(role, side.shards[0].primary.endpoint if isinstance(side, Topology) else side.endpoint,
                        settings)
        stack.callback(opened.close)
        return opened

    sides = Sides(server("target", target_side), server("source", source_side) if source_side else None,
                  target_side if isinstance(target_side, Topology) else None,
                  source_side if isinstance(source_side, Topology) else None)
    if sides.source is not None and sides.source_topology is None and sides.target_topology is None:
        refuse_same_server(sides.source.identity, sides.target.identity, options.selection.database_pairs())
    if sides.target_topology is None:
        check_writable_target(sides.target)
    else:
        dbs = _target_dbs(options.selection, sides.source)
        check_cluster_dbs(sides.target_topology, dbs if dbs is not None else [0], "target", settings)
    return sides


def reload(config: RunConfig, on_plan: PlanSink | None = None) -> RunResult:
    started = time.monotonic()
    options = config.options
    settings = config.common.connection
    with ExitStack() as stack:
        aof = open_input(config) if options.from_aof is not None else None  # a bad input: refused before anything
        sides = open_sides(config, stack)
        if aof is not None and sides.target_topology is not None:
            raise ConfigError("--from-aof into a cluster target is not supported: an AOF's commands are replayed on "
                              "one server", "load the AOF into a standalone server, then run a replay from it into "
                              "the cluster")
        if options.load_via is LoadVia.REPLICATION and (sides.target_topology or sides.source_topology):
            raise ConfigError("--load-via replication loads one snapshot into a standalone target: a cluster node "
                              "replicates only from a primary of its own cluster", "drop --load-via (each primary's "
                              "snapshot is then loaded by key, routed by slot)")
        source, target = sides.source, sides.target
        _check_rights(config, sides)
        plan = _plan(config, sides, aof)
        if on_plan is not None:
            on_plan(plan)
        what, where = sides.describe_source(options), sides.describe_target()
        if not options.yes or options.dry_run:
            note = "nothing done: dry run" if options.dry_run else "nothing done: rerun with --yes to execute"
            return RunResult("reload", what, where, executed=False, dry_run=options.dry_run,
                             resumed=False, seconds=time.monotonic() - started, plan=plan, notes=(note,))
        if aof is not None:
            done = _execute_aof(config, target, aof)
        elif options.load_via is LoadVia.REPLICATION:
            done = _execute_via_replication(config, sides)
        else:
            loaded = _execute(config, sides)
            done = _Done(loaded.tallies, loaded.extras.notes,
                         _load_functions(sides, settings, loaded.extras.functions))
        del source, target
        return RunResult("reload", what, where, executed=True, dry_run=False, resumed=False,
                         seconds=time.monotonic() - started, dbs=_db_reports(config, done), functions=done.functions,
                         plan=plan, notes=tuple(done.notes), commands=done.commands)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


@dataclass
class _Done:
    """What a load did: per source database tallies, the notes, functions and (from an AOF) the command part."""

    tallies: dict[int, DbTally]
    notes: list[str]
    functions: FunctionsReport | None = None
    commands: CommandsReport | None = None
    stream: StreamTally | None = None


def _db_reports(config: RunConfig, done: _Done) -> tuple[DbReport, ...]:
    """One report per source database; the keys the command translation skipped or changed join their database."""
    tallies = dict(done.tallies)
    if done.stream is not None:
        for attr in ("skipped", "changed"):
            for issue in getattr(done.stream, attr).issues:
                tally = tallies.get(issue.db)
                if tally is None:
                    tally = tallies[issue.db] = DbTally(issue.db, config.options.selection.target_db(issue.db))
                getattr(tally, attr).append(issue)
    return tuple(DbReport.of(t) for _, t in sorted(tallies.items()))


def _check_rights(config: RunConfig, both: Sides) -> None:
    options = config.options
    source, target = both.source, both.target
    sides: dict[str, tuple[Server, int]] = {"target": (target, options.selection.target_db(0))}
    if source is not None:
        sides["source"] = (source, 0)
    check_rights("reload", sides, Context(source.identity.capabilities if source else None,
                                           target.identity.capabilities, options.flush_target,
                                           from_file=source is None, from_aof=options.from_aof is not None,
                                           via_replication=options.load_via is LoadVia.REPLICATION,
                                           source_cluster=both.source_topology is not None,
                                           target_cluster=both.target_topology is not None))


# -- the plan ---------------------------------------------------------------------------------------------------------


def _plan(config: RunConfig, sides: Sides, aof: AofInput | None) -> tuple[str, ...]:
    options = config.options
    source, target = sides.source, sides.target
    if options.load_via is LoadVia.REPLICATION:
        return _replication_plan(config, sides, aof)
    if aof is not None:
        lines = [describe_aof(aof), _aof_check_line(options)]
    else:
        lines = [_snapshot_line(options, sides), _check_line(options)]
    lines.append(_flush_line(options.selection, sides))
    routed = (f", each key written to the target primary owning its slot ({len(sides.target_primaries)} primaries)"
              if sides.target_topology is not None else "")
    snapshots = 0 if aof is not None else len(options.from_rdb) or len(sides.source_nodes)
    workers = _workers(options, snapshots)
    what = "checked and loaded" if options.from_rdb or options.spool else "streamed and loaded"
    at_once = (f"; the {snapshots} snapshots {what} as tasks on the Dask scheduler {options.scheduler} (the files in "
               "a folder every worker reads)" if options.scheduler is not None else
               f"; the {snapshots} snapshots {what} at once by {workers} worker processes (--workers)"
               if workers > 1 else "; one snapshot after the other" if snapshots > 1 else "")
    lines.append(f"load: every key through the per-key conversion (as is, restamped, or rewritten with commands), "
                 f"batches of {options.batch_size}, --on-incompatible {options.on_incompatible}{routed}{at_once}")
    if aof is not None:
        lines.append(f"load: then the AOF's commands, translated for {target.identity.label} (databases, MULTI/EXEC "
                     "blocks kept atomic, relative expiries made absolute, RESTOREs through the per-key conversion) "
                     "and pipelined")
        lines.append(_aof_estimate(config, target, aof))
        if any(f.format == "rdb" for f in aof.files) and not (options.selection.dbs or options.selection.db_map):
            lines.append("tip: --load-via replication has the target load the RDB part with its own loader, as "
                         "migrate's replica (measured about 1.8x faster for half the keys in an RDB base; "
                         "docs/aof.md)")
    else:
        lines.append(_estimate(config, source, target, _source_keys(sides, config.common.connection)
                               if sides.source_topology is not None else None))
    lines.append("rollback: the flush deletes the target's current data and this tool cannot bring it back: back the "
                 "target up first (BGSAVE and keep its RDB file); the source is only read")
    return tuple(lines)


def _replication_plan(config: RunConfig, sides: Sides, aof: AofInput | None) -> tuple[str, ...]:
    options, target = config.options, sides.target
    held = sum(target.identity.keyspace.values())
    address = options.relay_address
    shown = f"{address[0]}:{address[1]}" if address else "a free loopback port"
    what = "the AOF's RDB part" if aof is not None else "the snapshot"
    while_sync = "while the sync goes, before its last chunk is sent (the target keeps its data until then)"
    judged = (", and for keys the target cannot hold (--on-incompatible fail stops here, naming them)"
              if options.on_incompatible is OnIncompatible.FAIL else "")
    lines = [describe_aof(aof) if aof is not None else _snapshot_line(options, sides),
             f"load: the target runs REPLICAOF migrate (listening on {shown}) and loads {what} as its full sync, "
             f"transcoded for {target.identity.label} as it is read (its own loader, no RESTORE per key)",
             _aof_check_line(options).replace("before anything is flushed", while_sync) if aof is not None else
             f"check: {while_sync}, the snapshot is read in full for completeness and its checksum{judged}",
             f"replace: the full sync replaces the whole dataset of {target.identity.describe()} at {target.endpoint} "
             f"(it holds {held:,} keys now), as FLUSHALL would"]
    if aof is not None:
        lines += [f"load: then the AOF's commands as the replication stream, translated for {target.identity.label} "
                  f"(databases, MULTI/EXEC blocks, relative expiries made absolute), --on-incompatible "
                  f"{options.on_incompatible}",
                  "errors: a replica answers nothing to its primary: a command the target refuses is found by its "
                  "error counter (the run fails, without naming it); --load-via commands names each"]
    now = ", ".join(f"{name} {config_value(target.client, name) or '(not readable)'}"
                    for name in ("repl-diskless-load", "repl-timeout"))
    lines += [f"then: REPLICAOF NO ONE, and the target's masterauth and settings as they were ({now}; should migrate "
              "be killed mid-load, run REPLICAOF NO ONE on the target and set those back)",
              "rollback: the full sync deletes the target's current data and this tool cannot bring it back: back the "
              "target up first (BGSAVE and keep its RDB file)"]
    return tuple(lines)


def _check_line(options: RunOptions) -> str:
    judged = ("and for keys the target cannot hold (--on-incompatible fail stops here, naming them)"
              if options.on_incompatible is OnIncompatible.FAIL else "")
    if options.from_rdb or options.spool:
        where = "" if options.from_rdb else f" in {spool_folder(options.spool_dir)}"
        return (f"check: before anything is flushed, each snapshot{where} is read in full for completeness and its "
                f"checksum {judged}".rstrip())
    return ("check: --no-spool streams the snapshot into the flushed target: if the stream breaks, the target is left "
            "partial (judged beforehand only from the source's modules and field TTLs)")


def _aof_check_line(options: RunOptions) -> str:
    judged = (", and for keys and commands the target cannot take (--on-incompatible fail stops here, naming them)"
              if options.on_incompatible is OnIncompatible.FAIL else "")
    return ("check: before anything is flushed, the AOF is read in full as a server loads it (manifest, every file, "
            f"RDB parts and their checksums, a torn tail){judged}")


def _snapshot_line(options: RunOptions, sides: Sides) -> str:
    if options.from_rdb:
        return "; ".join(_file_line(file) for file in options.from_rdb)
    source = sides.source
    assert source is not None
    if sides.source_topology is not None:
        nodes = ", ".join(e.address for e in sides.source_nodes)
        how = "all at once" if options.spool else "each as it is loaded"
        return (f"snapshot: replication download (SYNC) of each of the {len(sides.source_nodes)} primaries of the "
                f"{_cluster_label(source, sides.source_topology)} ({nodes}), {how}; nothing on the source is "
                "modified")
    diskless = config_value(source.client, "repl-diskless-sync")
    delay = config_value(source.client, "repl-diskless-sync-delay")
    wait = f" after its repl-diskless-sync-delay of {delay} s" if delay and delay != "0" else ""
    where = (f"streamed diskless by the source{wait}" if diskless == "yes" else
             "written to the source's own disk first (its repl-diskless-sync is no)" if diskless == "no" else
             "diskless or not as the source is configured (repl-diskless-sync not readable)")
    keys = sum(source.identity.keyspace.values())
    return (f"snapshot: replication download (SYNC, like redis-cli --rdb) of {keys:,} keys from "
            f"{source.identity.describe()} at {source.endpoint}, {where}; nothing on the source is modified")


def _file_line(file: Path) -> str:
    with RdbReader(file) as reader:
        return f"snapshot: RDB file {file} ({file.stat().st_size:,} bytes, {reader.magic} version {reader.rdb_version})"


def _flush_line(selection: KeySelection, sides: Sides) -> str:
    target, source = sides.target, sides.source
    dbs = _target_dbs(selection, source)
    held = sum(target.identity.keyspace.values())
    if sides.target_topology is not None:
        what = "FLUSHALL" if dbs is None else f"FLUSHDB of db {', '.join(map(str, dbs))}"
        return f"flush: {what} on each of the {len(sides.target_primaries)} primaries of the {sides.describe_target()}"
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


def _estimate(config: RunConfig, source: Server | None, target: Server, total: int | None = None) -> str:
    """Time to read and convert a sample, plus the target's time to take the same bytes (sent as ECHO, a no-op).
    A cluster's sample comes from its first primary; `total` is the whole cluster's key count."""
    options = config.options
    converter = Converter(target.identity.capabilities, DEFAULT_MAX_COMMAND_BYTES)
    began = time.perf_counter()
    if options.from_rdb:
        payloads, keys = _sample_file(options.from_rdb[0], converter)
    else:
        assert source is not None
        payloads, keys = _sample_source(source, config.common.connection, converter)
    read_s = time.perf_counter() - began
    if not payloads:
        return "estimate: not measured (no keys in the sample, or the source user may not SCAN and DUMP)"
    write_s = _echo_time(target, config.common.connection, payloads)
    per_key = (read_s + write_s) / len(payloads)
    keys = total if total is not None else keys
    seconds = per_key * keys
    return (f"estimate: about {keys:,} keys in {seconds:,.1f} s (measured on a sample of {len(payloads)} keys: "
            f"{read_s / len(payloads) * 1e6:.1f} µs/key to read and convert, {write_s / len(payloads) * 1e6:.1f} "
            f"µs/key for the target to take the bytes)")


def _aof_estimate(config: RunConfig, target: Server, aof: AofInput) -> str:
    """Time to read and translate a sample of the commands, plus the target's time to take their bytes (as ECHO)."""
    translator = Translator(TargetProfile.of(target.client), policy=OnIncompatible.SKIP)
    began = time.perf_counter()
    sample = list(aof_commands(aof, SAMPLE_KEYS))
    units = [u for u in (translator.feed(argv, 0) for argv, _ in sample) if u is not None]
    read_s = time.perf_counter() - began
    rdb = sum(f.size for f in aof.files if f.format == "rdb")
    if not sample:
        return f"estimate: not measured (no command file); the RDB part ({rdb:,} bytes) loads as --from-rdb does"
    payloads = [pack(argv) for unit in units for _, argv in unit.commands]
    write_s = _echo_time(target, config.common.connection, payloads) if payloads else 0.0
    per_command = (read_s + write_s) / len(sample)
    command_bytes = sum(f.size for f in aof.files if f.format == "aof")
    commands = int(len(sample) * command_bytes / max(1, sum(size for _, size in sample)))
    rdb_note = f"; the RDB part ({rdb:,} bytes) loads as --from-rdb does" if rdb else ""
    return (f"estimate: about {commands:,} commands in {per_command * commands:,.1f} s (measured on a sample of "
            f"{len(sample):,}: {read_s / len(sample) * 1e6:.1f} µs each to read and translate, "
            f"{write_s / len(sample) * 1e6:.1f} µs for the target to take the bytes){rdb_note}")


def _sample_file(file: Path, converter: Converter) -> tuple[list[bytes], int]:
    payloads: list[bytes] = []
    with RdbReader(file) as reader, contextlib.suppress(RdbFormatError):  # reported by the check
        for item in reader.scan():
            if type(item) is tuple:
                payloads.append(restore_payload(converter, item[3], item[7], reader.rdb_version))
                if len(payloads) >= SAMPLE_KEYS:
                    break
    consumed = max(1, reader.bytes_read)
    size = file.stat().st_size
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


def _execute_aof(config: RunConfig, target: Server, aof: AofInput) -> _Done:
    options = config.options
    if options.load_via is LoadVia.REPLICATION:
        loaded = load_via_replication(aof, config, target)
        return _Done(loaded.tallies, loaded.notes, loaded.functions, loaded.commands, loaded.stream)
    check = check_aof(aof, config, target)
    flush_dbs(target, _target_dbs(options.selection, None))
    try:
        with RunProgress(options.show_progress, check.commands + check.rdb_keys, "reloading") as progress:
            load = load_aof(check, config, target, progress)
    except MigrateError as exc:  # the target was flushed: every error from here on says so first
        _say_flushed(exc)
        raise
    return _Done(load.loader.tallies, load.extras.notes, load.functions, load.commands, load.stream)


def _execute_via_replication(config: RunConfig, sides: Sides) -> _Done:
    """One snapshot (--from-rdb FILE, or the standalone source's: spooled, or streamed with --no-spool) loaded by the
    target as migrate's replica."""
    options, target = config.options, sides.target
    if options.from_rdb:
        file = options.from_rdb[0]
        loaded = load_snapshot_via_replication(file, str(file), config, target)
    else:
        source = sides.source
        assert source is not None
        with ExitStack() as stack:
            if options.spool:
                (file,) = stack.enter_context(spooled_snapshots([source], spool_folder(options.spool_dir)))
                snapshot: Path | IO[bytes] = file
            else:
                snapshot = cast(IO[bytes], stack.enter_context(ReplicationSnapshot(source.endpoint,
                                                                                  config.common.connection)))
            loaded = load_snapshot_via_replication(snapshot, f"the snapshot of {source.endpoint}", config, target,
                                                   sum(source.identity.keyspace.values()))
    return _Done(loaded.tallies, loaded.notes, loaded.functions)


def _say_flushed(exc: MigrateError) -> None:
    exc.message = f"the target was flushed and holds a partial load: {exc.message}"
    exc.hint = f"{exc.hint}; reload again once the cause is fixed (the target's data was replaced)"


def _execute(config: RunConfig, sides: Sides) -> LoadOutcome:
    """Every snapshot checked (spooled or given) before the flush, then loaded: several at once in worker processes
    when there are several (see _workers), else one after the other."""
    options, settings = config.options, config.common.connection
    with ExitStack() as stack:
        files: list[Path] = list(options.from_rdb)
        streamed: list[Endpoint] = []
        nodes = [] if files else _node_servers(sides, settings, stack)
        workers = _workers(options, len(files) or len(nodes))
        pool = None
        if workers > 1 or options.scheduler is not None:  # started now: their start-up runs while snapshots are taken
            pool = SnapshotPool(workers, options.scheduler, settings.connect_timeout)
            stack.callback(pool.close)
        if not files and options.spool:
            files = stack.enter_context(spooled_snapshots(nodes, spool_folder(options.spool_dir)))
        elif not files:
            streamed = sides.source_nodes
            for node in nodes:
                _refuse_doomed_source(node, sides.target, options)
        if pool is not None:
            pool.check(files, config, sides.target.identity.capabilities)
        else:
            for file in files:
                check_snapshot(file, config, sides.target)
        _flush(sides, settings, _target_dbs(options.selection, sides.source))
        try:
            progress = stack.enter_context(RunProgress(options.show_progress, _source_keys(sides, settings),
                                                       "reloading"))
            if pool is not None:
                return _load_in(pool, config, sides, files, streamed, progress)
            loader = KeyLoader(config, sides.target, sides.target_topology)
            stack.callback(loader.close)
            for file in files:
                with RdbReader(str(file)) as reader:
                    loader.load(reader, progress)
            for endpoint in streamed:
                with ReplicationSnapshot(endpoint, settings) as snapshot, \
                        RdbReader(cast(IO[bytes], snapshot)) as reader:
                    loader.load(reader, progress)
            return LoadOutcome(loader.tallies, loader.extras)
        except MigrateError as exc:  # the target was flushed: every error from here on says so first
            _say_flushed(exc)
            raise
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _load_in(pool: SnapshotPool, config: RunConfig, sides: Sides, files: list[Path], streamed: list[Endpoint],
             progress: RunProgress) -> LoadOutcome:
    target, topology = sides.target.endpoint, sides.target_topology
    tasks = [LoadTask(i, config, target, topology, file=file) for i, file in enumerate(files)]
    tasks += [LoadTask(len(tasks) + i, config, target, topology, node=node) for i, node in enumerate(streamed)]
    outcome = pool.load(tasks, progress)
    what = "checked and loaded" if files else "loaded"
    outcome.extras.notes.append(f"{len(tasks)} snapshots {what} at once by {pool.workers} {pool.where}")
    return outcome


def _workers(options: RunOptions, snapshots: int) -> int:
    """Snapshots loaded at once (--workers, by default one per snapshot and at most one per CPU core). Files given
    with --from-rdb and --replace load one after the other: they may hold the same key, and then the last file's
    value is the one kept, as documented (a cluster's snapshots hold disjoint slots; without --replace a key held
    twice is reported busy whichever file comes first)."""
    if snapshots <= 1 or (options.from_rdb and options.replace):
        return 1
    wanted = options.workers or min(snapshots, os.cpu_count() or 1)
    return max(1, min(wanted, snapshots))


def _node_servers(sides: Sides, settings: ConnectionSettings, stack: ExitStack) -> list[Server]:
    """A Server per source node whose snapshot is taken (the source itself when standalone)."""
    if sides.source_topology is None:
        return [sides.source] if sides.source is not None else []
    servers = []
    for endpoint in sides.source_nodes:
        server = Server("source", endpoint, settings)
        stack.callback(server.close)
        servers.append(server)
    return servers


def _source_keys(sides: Sides, settings: ConnectionSettings) -> int | None:
    if sides.source_topology is not None:
        return sum(primary_keyspace(sides.source_topology, settings, "source").values())
    return sum(sides.source.identity.keyspace.values()) if sides.source is not None else None


def _refuse_doomed_source(source: Server, target: Server, options: RunOptions) -> None:
    """Streamed (--no-spool), the snapshot cannot be read before the flush: judge it from what the source says."""
    if options.on_incompatible is not OnIncompatible.FAIL:
        return
    reason = doomed_stream(source, target)
    if reason:
        raise ProblemsFound(f"the snapshot would fail to load: {reason}; nothing was flushed",
                            "use --on-incompatible skip or lossy, or drop --no-spool so the snapshot is checked key "
                            "by key")


def _flush(sides: Sides, settings: ConnectionSettings, dbs: list[int] | None) -> None:
    target = sides.target
    if sides.target_topology is not None:
        for endpoint in sides.target_primaries:
            for db in dbs or [0]:
                link = NodeLink(endpoint, settings, "target", db)
                try:
                    reply = with_retries(lambda: link.command("FLUSHALL" if dbs is None else "FLUSHDB"),  # noqa: B023
                                         settings, "flush a target primary", endpoint, "target")
                finally:
                    link.close()
                if is_error(reply):
                    raise translate(reply, endpoint, "target")
        log.warning("flushed", target=sides.describe_target(), primaries=len(sides.target_primaries),
                    dbs=dbs or "all")
        return
    flush_dbs(target, dbs)


def _load_functions(sides: Sides, settings: ConnectionSettings, codes: list[bytes]) -> FunctionsReport | None:
    """Function libraries of the snapshots (each shard's carries them: loaded once each) on every target primary."""
    codes = list(dict.fromkeys(codes))
    if not codes:
        return None
    if sides.target_topology is None:
        return load_functions(sides.target, settings, codes)
    report = None
    for endpoint in sides.target_primaries:
        target = Server("target", endpoint, settings)
        try:
            report = load_functions(target, settings, codes)
        finally:
            target.close()
    return report
