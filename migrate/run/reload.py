"""Strategy 2, flush-and-reload: snapshot the source (replication download, or --from-rdb FILE), flush the target, load
every key through the same per-key conversion, batching and progress as the live replay.

The plan (what is snapshotted, flushed and loaded, an estimated duration from a measured sample, the rollback note) is
produced first; nothing is flushed or written without --yes. The RDB is streamed through the reader: never all in
memory, never written to our disk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

from migrate.aof import AofInput
from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import BadInputError, MigrateError, ProblemsFound
from migrate.identity import config_value, refuse_same_server
from migrate.logs import get_logger
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.precheck import Precheck, precheck
from migrate.rdb.reader import RdbReader
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import display_key
from migrate.rights import Context, check_rights
from migrate.run.aofload import check_aof, load_aof, open_input
from migrate.run.aofload import commands_of as aof_commands
from migrate.run.aofload import describe as describe_aof
from migrate.run.convert import CachedPlan, Converter, signature
from migrate.run.options import OnIncompatible, RunConfig, RunOptions
from migrate.run.progress import RunProgress
from migrate.run.rdbload import Extras, KeyLoader, load_functions, load_records, restore_payload, wanted_records
from migrate.run.result import CommandsReport, DbReport, FunctionsReport, RunResult
from migrate.run.session import check_writable_target, doomed_stream
from migrate.run.snapshot import ReplicationSnapshot
from migrate.run.spool import check_space, spool_folder, spooled_snapshot
from migrate.run.tally import DbTally
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.stream import StreamTally, TargetProfile, Translator
from migrate.wire import Channel, is_error, pack

log = get_logger(__name__)

SAMPLE_KEYS: Final = 2000
PlanSink = Callable[[tuple[str, ...]], None]


def reload(config: RunConfig, on_plan: PlanSink | None = None) -> RunResult:
    started = time.monotonic()
    common, options = config.common, config.options
    settings = common.connection
    with ExitStack() as stack:
        target = Server("target", common.require_target(), settings)
        stack.callback(target.close)
        source = None
        aof = open_input(config) if options.from_aof is not None else None  # a bad input: refused before anything
        if options.from_file is None:
            source = Server("source", common.require_source(), settings)
            stack.callback(source.close)
            refuse_same_server(source.identity, target.identity, options.selection.database_pairs())
        check_writable_target(target)
        _check_rights(config, source, target)
        plan = _plan(config, source, target, aof)
        if on_plan is not None:
            on_plan(plan)
        what = str(options.from_file) if options.from_file else source.identity.describe() if source else "?"
        if not options.yes or options.dry_run:
            note = "nothing done: dry run" if options.dry_run else "nothing done: rerun with --yes to execute"
            return RunResult("reload", what, target.identity.describe(), executed=False, dry_run=options.dry_run,
                             resumed=False, seconds=time.monotonic() - started, plan=plan, notes=(note,))
        done = _execute_aof(config, target, aof) if aof is not None else _execute(config, source, target)
        return RunResult("reload", what, target.identity.describe(), executed=True, dry_run=False, resumed=False,
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


def _check_rights(config: RunConfig, source: Server | None, target: Server) -> None:
    options = config.options
    sides: dict[str, tuple[Server, int]] = {"target": (target, options.selection.target_db(0))}
    if source is not None:
        sides["source"] = (source, 0)
    check_rights("reload", sides, Context(source.identity.capabilities if source else None,
                                           target.identity.capabilities, options.flush_target,
                                           from_file=source is None, from_aof=options.from_aof is not None))


# -- the plan ---------------------------------------------------------------------------------------------------------


def _plan(config: RunConfig, source: Server | None, target: Server, aof: AofInput | None) -> tuple[str, ...]:
    options = config.options
    if aof is not None:
        lines = [describe_aof(aof), _aof_check_line(options)]
    else:
        lines = [_snapshot_line(options, source), _check_line(options)]
    lines.append(_flush_line(options.selection, target, source))
    lines.append(f"load: every key through the per-key conversion (as is, restamped, or rewritten with commands), "
                 f"batches of {options.batch_size}, --on-incompatible {options.on_incompatible}")
    if aof is not None:
        lines.append(f"load: then the AOF's commands, translated for {target.identity.label} (databases, MULTI/EXEC "
                     "blocks kept atomic, relative expiries made absolute, RESTOREs through the per-key conversion) "
                     "and pipelined")
        lines.append(_aof_estimate(config, target, aof))
    else:
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


def _aof_check_line(options: RunOptions) -> str:
    judged = (", and for keys and commands the target cannot take (--on-incompatible fail stops here, naming them)"
              if options.on_incompatible is OnIncompatible.FAIL else "")
    return ("check: before anything is flushed, the AOF is read in full as a server loads it (manifest, every file, "
            f"RDB parts and their checksums, a torn tail){judged}")


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


def _sample_file(options: RunOptions, converter: Converter) -> tuple[list[bytes], int]:
    assert options.from_rdb is not None
    payloads: list[bytes] = []
    with RdbReader(options.from_rdb) as reader, contextlib.suppress(RdbFormatError):  # reported by the check
        for item in reader.scan():
            if type(item) is tuple:
                payloads.append(restore_payload(converter, item[3], item[7], reader.rdb_version))
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


def _execute_aof(config: RunConfig, target: Server, aof: AofInput) -> _Done:
    options = config.options
    check = check_aof(aof, config, target)
    _flush(target, config.common.connection, _target_dbs(options.selection, None))
    try:
        with RunProgress(options.show_progress, check.commands + check.rdb_keys, "reloading") as progress:
            load = load_aof(check, config, target, progress)
    except MigrateError as exc:  # the target was flushed: every error from here on says so first
        _say_flushed(exc)
        raise
    return _Done(load.loader.tallies, load.extras.notes, load.functions, load.commands, load.stream)


def _say_flushed(exc: MigrateError) -> None:
    exc.message = f"the target was flushed and holds a partial load: {exc.message}"
    exc.hint = f"{exc.hint}; reload again once the cause is fixed (the target's data was replaced)"


def _execute(config: RunConfig, source: Server | None, target: Server) -> _Done:
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
            tallies, extras = _load(config, source, target, reader, stack)
            functions = load_functions(target, config.common.connection, extras.functions)
        except MigrateError as exc:  # the target was flushed: every error from here on says so first
            _say_flushed(exc)
            raise
        return _Done(tallies, extras.notes, functions)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _load(config: RunConfig, source: Server | None, target: Server, reader: RdbReader,
          stack: ExitStack) -> tuple[dict[int, DbTally], Extras]:
    loader = KeyLoader(config, target)
    stack.callback(loader.close)
    extras = Extras()
    total = sum(source.identity.keyspace.values()) if source is not None else None
    progress = stack.enter_context(RunProgress(config.options.show_progress, total, "reloading"))
    load_records(reader.scan(), reader.rdb_version, loader, progress, extras)
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
                         wanted=wanted_records(options.selection))
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
