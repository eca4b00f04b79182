"""Reload from an AOF (`migrate run --strategy reload --from-aof PATH`): the files in the order a server loads them,
each file's RDB part (a base file, or a preamble) through the same key loading as --from-rdb (migrate.run.rdbload),
its commands through the stream translation (migrate.stream: SELECT and --db-map, MULTI/EXEC kept atomic, relative
expiries made absolute, commands the target lacks under --on-incompatible) and the pipelined applier.

Before anything is flushed, `check_aof` reads the whole input at reader speed: a file a server refuses (a corrupt
command, a torn file that is not the last, a corrupt or torn RDB part, a manifest naming a missing file) stops the run
with the target untouched, and under --on-incompatible fail so do keys and commands the target cannot take (named,
first ones and a count). A torn tail of the last file is what a server drops at start-up (aof-load-truncated yes): the
check records where the last complete command ends, the load stops there and the report says so.

The applier runs without its marker transaction: a reload starts from a flushed target and cannot resume (after a
failure the next reload flushes again), so exactly-once across a crash buys nothing, and the marker would be a key the
source never had. RESTOREs of the AOF are loaded like RDB keys (per-key conversion, a refused payload rebuilt).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from migrate.aof import AofCommand, AofInput, AofReader, FileEnd, Truncation, open_aof_input
from migrate.aof.commands import CommandStream
from migrate.aof.discover import AofFileInfo
from migrate.errors import BadInputError, ProblemsFound
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.precheck import Precheck, precheck
from migrate.rdb.reader import RdbReader
from migrate.render import display_key
from migrate.run.options import OnIncompatible, RunConfig
from migrate.run.progress import RunProgress
from migrate.run.rdbload import Extras, KeyLoader, load_functions, load_records, wanted_records
from migrate.run.result import CommandsReport, FunctionsReport
from migrate.server import Server
from migrate.stream import Applier, ApplyOptions, DbMap, StreamTally, TargetProfile, Translator, Unit
from migrate.stream.model import Argv

STREAM_ID: Final = "reload-aof"
SHOWN: Final = 5  # keys named in a refusal (the report of a run names them all)
PROGRESS_EVERY: Final = 10_000
_SELECT_0: Final[Argv] = (b"SELECT", b"0")


@dataclass(frozen=True)
class AofCheck:
    """What the check pass found: each file's RDB end and command range, the torn tail, the counts."""

    input: AofInput
    rdb_ends: dict[str, int]  # file name -> where its RDB part ends (commands start there)
    stops: dict[str, int]  # file name -> where its loaded commands end (the file's size unless torn)
    truncation: Truncation | None
    commands: int
    rdb_keys: int
    module_aux: tuple[str, ...] = ()


@dataclass
class AofLoad:
    """The outcome of a load: per-database tallies (RDB keys and RESTOREs), extras, the command report."""

    loader: KeyLoader
    extras: Extras = field(default_factory=Extras)
    functions: FunctionsReport | None = None
    commands: CommandsReport | None = None
    stream: StreamTally | None = None


def open_input(config: RunConfig) -> AofInput:
    assert config.options.from_aof is not None
    return open_aof_input(config.options.from_aof)


# -- the check pass, before the flush -----------------------------------------------------------------------------


def check_aof(aof: AofInput, config: RunConfig, target: Server) -> AofCheck:
    """Read the whole input as a server would load it; refuse it (BadInputError, exit 6) where a server refuses to
    start, and under --on-incompatible fail (ProblemsFound, exit 5) when keys or commands cannot be taken."""
    options = config.options
    judge = options.on_incompatible is OnIncompatible.FAIL
    translator = (Translator(TargetProfile.of(target.client), policy=OnIncompatible.SKIP,
                             db_map=DbMap.from_selection(options.selection)) if judge else None)
    reader = AofReader(aof, capture_payload=False)
    rdb_ends: dict[str, int] = {}
    stops: dict[str, int] = {}
    incompatible: list[tuple[int, str, str]] = []
    incompatible_total = rdb_keys = 0
    module_aux: set[str] = set()
    for index, info in enumerate(aof.files):
        start = 0
        if info.format == "rdb":
            part = _check_rdb_part(info, config, target)
            rdb_ends[info.name] = start = part.end_offset
            rdb_keys += part.keys
            incompatible += [(db, display_key(key), why) for db, key, why in part.incompatible]
            incompatible_total += part.incompatible_total
            module_aux.update(part.module_aux)
        if info.format == "empty":
            stops[info.name] = 0
            continue
        if translator is not None and translator.db != 0:
            translator.feed(_SELECT_0, 0)  # every file is replayed by a new client, in database 0
        stops[info.name] = _check_commands(reader, info, start, index == len(aof.files) - 1, translator)
    if translator is not None:
        skipped = translator.tally.skipped
        incompatible += [(i.db, i.key, i.reason) for i in skipped.issues]
        incompatible_total += skipped.count
    if judge and incompatible_total:
        _refuse(incompatible, incompatible_total)
    return AofCheck(aof, rdb_ends, stops, reader.truncation, reader.commands, rdb_keys, tuple(sorted(module_aux)))


def _check_rdb_part(info: AofFileInfo, config: RunConfig, target: Server) -> Precheck:
    options = config.options
    try:
        with open(info.path, "rb", buffering=0) as fh:
            return precheck(fh, target.identity.capabilities,
                            lossy=options.on_incompatible is not OnIncompatible.FAIL,
                            wanted=wanted_records(options.selection))
    except RdbFormatError as exc:
        raise BadInputError(f"the RDB part of the AOF file {info.name} is unusable: {exc.message}; the target was "
                            "not touched", "a server refuses to load it too: restore the file from a backup") from None


def _check_commands(reader: AofReader, info: AofFileInfo, start: int, last: bool,
                    translator: Translator | None) -> int:
    """Read a file's commands (the reader raises what a server refuses); judge those the target may not take."""
    stop = start
    passes = translator.passes if translator is not None else None
    for event in reader.command_part(info, start, last):
        if isinstance(event, AofCommand):
            if translator is not None and passes is not None:
                argv = event.argv
                if not passes(argv[0].lower()):
                    translator.feed(argv, event.seq)
        elif isinstance(event, FileEnd):
            stop = event.loaded_up_to  # the byte after the last command the server applies
    return stop


def _refuse(incompatible: list[tuple[int, str, str]], total: int) -> None:
    shown = "; ".join(f"db {db} {key}: {why}" for db, key, why in incompatible[:SHOWN])
    more = f" (and {total - SHOWN:,} more)" if total > SHOWN else ""
    raise ProblemsFound(f"{total:,} keys or commands of the AOF cannot be loaded into the target: {shown}{more}; "
                        "nothing was flushed", "use --on-incompatible skip or lossy to load the rest; `migrate "
                        "preflight --aof-dir PATH --target ...` lists what the target lacks")


# -- the load, after the flush ------------------------------------------------------------------------------------


def load_aof(check: AofCheck, config: RunConfig, target: Server, progress: RunProgress) -> AofLoad:
    options = config.options
    settings = config.common.connection
    load = AofLoad(KeyLoader(config, target))
    translator = Translator(TargetProfile.of(target.client), policy=options.on_incompatible,
                            db_map=DbMap.from_selection(options.selection))
    load.stream = translator.tally
    restored = 0
    applier = Applier(target.endpoint, settings, STREAM_ID, ApplyOptions(marker=False), tally=translator.tally)
    try:
        for info in check.input.files:
            start = check.rdb_ends.get(info.name, 0)
            if info.format == "rdb":
                _load_rdb_part(info, load, progress)
                load.functions = _merge(load.functions, load_functions(target, settings, load.extras.functions))
                load.extras.functions = []
            if info.format == "empty":
                continue
            if translator.db != 0:
                translator.feed(_SELECT_0, 0)
            restored += _load_commands(info, start, check.stops[info.name], translator, applier, load, progress)
        applier.flush()
    finally:
        applier.close()
        load.loader.close()
    load.commands = _report(check, translator.tally, restored)
    return load


def _load_rdb_part(info: AofFileInfo, load: AofLoad, progress: RunProgress) -> None:
    try:
        with open(info.path, "rb", buffering=0) as fh, RdbReader(fh) as rdb:
            load_records(rdb.scan(), rdb.rdb_version, load.loader, progress, load.extras)
    except RdbFormatError as exc:  # checked before the flush: the file changed since
        raise BadInputError(f"the RDB part of the AOF file {info.name} is unusable: {exc.message}",
                            "the file changed after it was checked: take a stable copy of the AOF") from None


def _load_commands(info: AofFileInfo, start: int, stop: int, translator: Translator, applier: Applier,
                   load: AofLoad, progress: RunProgress) -> int:
    """Translate and apply one file's commands up to `stop` (what the check pass found loadable)."""
    restored = n = 0
    feed = translator.feed
    apply = applier.apply
    for _, end, argv in CommandStream(info.path, info.name, start, stop=stop):
        unit = feed(argv, end)
        n += 1
        if unit is not None:
            if len(unit.commands) == 1 and not unit.group and _is_restore(unit.commands[0][1][0]):
                applier.flush()  # a RESTORE goes through the per-key path: everything before it is applied first
                restored += _restore(unit, load)
            else:
                apply(unit)
        if n == PROGRESS_EVERY:
            progress.advance(n, 0)
            n = 0
    progress.advance(n, 0)
    return restored


def _is_restore(name: bytes) -> bool:
    return len(name) == 7 and name.upper() == b"RESTORE"


def _restore(unit: Unit, load: AofLoad) -> int:
    """A RESTORE of the AOF (normalized: absolute TTL): the per-key conversion, a refused payload rebuilt."""
    _, argv = unit.commands[0]
    if len(argv) < 4 or not argv[2].isdigit():
        return 0
    options = {a.upper() for a in argv[4:]}
    ttl = int(argv[2])
    expire_at = (ttl or None) if b"ABSTTL" in options else (int(time.time() * 1000) + ttl if ttl else None)
    writer = load.loader.writer(unit.source_db)
    tally = load.loader.tallies[unit.source_db]
    writer.write([(argv[1], argv[3], expire_at, len(argv[3]))], tally, replace=b"REPLACE" in options,
                 retry_replace=True)
    return 1


def _merge(a: FunctionsReport | None, b: FunctionsReport | None) -> FunctionsReport | None:
    if a is None or b is None:
        return a or b
    return FunctionsReport(a.libraries + b.libraries, "; ".join(n for n in (a.note, b.note) if n))


def _report(check: AofCheck, tally: StreamTally, restored: int) -> CommandsReport:
    truncation = ""
    t = check.truncation
    if t is not None:
        what = ("ends inside a MULTI/EXEC block (its " + f"{t.dropped_commands} commands are reverted)"
                if t.reason == "open-transaction" else "ends inside a command")
        truncation = (f"the AOF's last file {t.file} {what}: loaded up to offset {t.loaded_up_to:,} of {t.size:,} "
                      f"({t.dropped_bytes:,} bytes not loaded), as a server does with aof-load-truncated yes")
    return CommandsReport(tally.commands, tally.applied_commands, restored, dict(tally.rewritten),
                          dict(tally.dropped), dict(tally.filtered), tally.skipped.count, tally.changed.count,
                          tuple(f.name for f in check.input.files), truncation)


def describe(aof: AofInput) -> str:
    """The plan's line for the input."""
    files = ", ".join(f"{f.name} ({f.kind}, {f.format}{f' RDB {f.rdb_version}' if f.rdb_version else ''}, "
                      f"{f.size:,} bytes)" for f in aof.files)
    where = f"manifest {aof.manifest}" if aof.manifest else "single file"
    return f"snapshot: AOF {aof.path} ({aof.layout}, {where}): {files}"


def commands_of(aof: AofInput, limit: int) -> Iterator[tuple[Argv, int]]:
    """The first `limit` commands of the input with their sizes (for the plan's estimate)."""
    n = 0
    for info in aof.files:
        if info.format != "aof":
            continue
        for offset, end, argv in CommandStream(info.path, info.name):
            yield argv, end - offset
            n += 1
            if n >= limit:
                return
