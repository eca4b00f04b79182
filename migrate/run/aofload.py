"""Reload from an AOF (`migrate run --strategy reload --from-aof PATH`): the files in the order a server loads them,
each file's RDB part (a base file, or a preamble) through the same key loading as --from-rdb (migrate.run.load),
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

import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final, Protocol

import hiredis
from hiredis import pack_command

from migrate.aof import AofInput, AofReader, FileEnd, Truncation, open_aof_input
from migrate.aof.commands import RUN_BYTES, RUN_COMMANDS, CommandRun, CommandStream
from migrate.aof.discover import AofFileInfo
from migrate.errors import BadInputError, ProblemsFound
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.precheck import precheck
from migrate.rdb.reader import RdbReader
from migrate.render import display_key
from migrate.run.load import Extras, KeyLoader, load_functions, load_records, wanted_records
from migrate.run.options import OnIncompatible, RunConfig
from migrate.run.progress import RunProgress
from migrate.run.result import CommandsReport, FunctionsReport
from migrate.server import Server
from migrate.stream import Applier, ApplyOptions, DbMap, StreamTally, TargetProfile, Translator, Unit
from migrate.stream.model import Argv
from migrate.stream.translator import QuickPlan

STREAM_ID: Final = "reload-aof"
SHOWN: Final = 5  # keys named in a refusal (the report of a run names them all)
PLAN_ENTRIES: Final = 1_000_000  # (start, end, count) entries the check pass keeps for the load: 24 MB at most
TRANSLATE: Final = -1
_first: Final = itemgetter(0)
APPLY: Final = ApplyOptions(marker=False)


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
    plans: dict[str, FilePlan] = field(default_factory=dict)  # file name -> how the load goes through its commands


@dataclass(frozen=True)
class RdbPart:
    """What was read of a file's RDB part: where its commands start, its keys, those the target cannot hold."""

    end_offset: int
    keys: int
    incompatible: tuple[tuple[int, str, str], ...]  # (db, key as displayed, why) of the first ones
    incompatible_total: int
    module_aux: tuple[str, ...] = ()


class FilePlan:
    """How the load goes through one file's commands, found by the check pass: a flat array of (start, end, count)
    entries in file order. count > 0: a run of that many commands the target takes as they are, forwarded as the
    bytes the file holds and never parsed again; count == TRANSLATE: one command for the translator. The plan covers
    the commands up to `covered_up_to`; any after it (the plan outgrew its memory budget) are parsed at load time.
    The file's last command is always translated: the exact parser read it, and its bytes may not be canonical.
    `names`: the forwarded commands per name as spelled (for the report)."""

    def __init__(self, start: int, budget: int) -> None:
        self.entries = array("q")
        self.covered_up_to = start
        self.names: dict[bytes, int] = {}
        self.budget = budget  # entries left
        self.full = budget <= 0
        self._last: tuple[int, int, bytes] | None = None  # the run that ends the file: entry index, last offset, name

    def run(self, start: int, end: int, count: int, names: dict[bytes, int],
            last_command: tuple[int, bytes] | None = None) -> None:
        """`count` commands the target takes as they are, [start, end) of the file; `last_command` (its offset and
        name) when the run ends the file: that command is kept apart by `finish`."""
        if not self._add(start, end, count):
            return
        for name, n in names.items():
            self.names[name] = self.names.get(name, 0) + n
        if last_command is not None:
            self._last = (len(self.entries) - 3, *last_command)

    def translate(self, offset: int, end: int) -> None:
        self._add(offset, end, TRANSLATE)

    def finish(self) -> FilePlan:
        """The file's last command goes to the translator when it ends a run (the exact parser read it)."""
        if self._last is None:
            return self
        index, offset, name = self._last
        if index != len(self.entries) - 3:
            return self  # a command to translate came after the run: the run does not end the file
        end, count = self.entries[index + 1], self.entries[index + 2]
        if count == 1:
            self.entries[index + 2] = TRANSLATE
        else:
            self.entries[index + 1] = offset
            self.entries[index + 2] = count - 1
            self.entries.extend((offset, end, TRANSLATE))  # within the budget: it replaces nothing it did not have
        self.names[name] -= 1
        return self

    def _add(self, start: int, end: int, count: int) -> bool:
        if self.full or self.budget <= 0:
            self.full = True
            return False
        self.entries.extend((start, end, count))
        self.covered_up_to = end
        self.budget -= 1
        return True


@dataclass
class AofLoad:
    """The outcome of a load: per-database tallies (RDB keys and RESTOREs), extras, the command report."""

    loader: KeyLoader
    extras: Extras = field(default_factory=Extras)
    functions: FunctionsReport | None = None
    commands: CommandsReport | None = None
    stream: StreamTally | None = None
    applier: Applier = field(init=False)
    restored: int = 0  # RESTOREs of the AOF loaded through the per-key path


def open_input(config: RunConfig) -> AofInput:
    assert config.options.from_aof is not None
    return open_aof_input(config.options.from_aof)


# -- the check pass, before the flush -----------------------------------------------------------------------------


def check_aof(aof: AofInput, config: RunConfig, target: Server, rdb_parts: Mapping[str, RdbPart] | None = None,
              profile: TargetProfile | None = None) -> AofCheck:
    """Read the whole input as a server would load it; refuse it (BadInputError, exit 6) where a server refuses to
    start, and under --on-incompatible fail (ProblemsFound, exit 5) when keys or commands cannot be taken.
    `rdb_parts`: RDB parts already read (by the transcoder of --load-via replication), by file name; `profile`: the
    target's, read beforehand (then the target is not asked anything: it may be busy loading)."""
    options = config.options
    judge = options.on_incompatible is OnIncompatible.FAIL
    translator = Translator(profile or TargetProfile.of(target.client), policy=OnIncompatible.SKIP,
                            db_map=DbMap.from_selection(options.selection))
    reader = AofReader(aof, capture_payload=False)
    plans: dict[str, FilePlan] = {}
    budget = PLAN_ENTRIES
    rdb_ends: dict[str, int] = {}
    stops: dict[str, int] = {}
    incompatible: list[tuple[int, str, str]] = []
    incompatible_total = rdb_keys = 0
    module_aux: set[str] = set()
    for index, info in enumerate(aof.files):
        start = 0
        if info.format == "rdb":
            part = (rdb_parts or {}).get(info.name) or _check_rdb_part(info, config, target)
            rdb_ends[info.name] = start = part.end_offset
            rdb_keys += part.keys
            incompatible += part.incompatible
            incompatible_total += part.incompatible_total
            module_aux.update(part.module_aux)
        if info.format == "empty":
            stops[info.name] = 0
            continue
        translator.new_client()  # every file is replayed by a new client, in database 0
        plan = FilePlan(start, budget)
        stops[info.name] = _check_commands(reader, info, start, index == len(aof.files) - 1, translator, plan)
        if reader.canonical.get(info.name) and translator.db_map.identity:
            plans[info.name] = plan.finish()
            budget = plan.budget
    skipped = translator.tally.skipped
    incompatible += [(i.db, i.key, i.reason) for i in skipped.issues]
    incompatible_total += skipped.count
    if judge and incompatible_total:
        refuse_incompatible(incompatible, incompatible_total, "keys or commands of the AOF", "--aof-dir PATH")
    return AofCheck(aof, rdb_ends, stops, reader.truncation, reader.commands, rdb_keys, tuple(sorted(module_aux)),
                    plans)


def _check_rdb_part(info: AofFileInfo, config: RunConfig, target: Server) -> RdbPart:
    options = config.options
    try:
        with open(info.path, "rb", buffering=0) as fh:
            found = precheck(fh, target.identity.capabilities,
                             lossy=options.on_incompatible is not OnIncompatible.FAIL,
                             wanted=wanted_records(options.selection))
            return RdbPart(found.end_offset, found.keys, tuple((db, display_key(key), why)
                                                               for db, key, why in found.incompatible),
                           found.incompatible_total, found.module_aux)
    except RdbFormatError as exc:
        raise BadInputError(f"the RDB part of the AOF file {info.name} is unusable: {exc.message}; the target was "
                            "not touched", "a server refuses to load it too: restore the file from a backup") from None


def _check_commands(reader: AofReader, info: AofFileInfo, start: int, is_last_file: bool, translator: Translator,
                    plan: FilePlan) -> int:
    """Read a file's commands (the reader raises what a server refuses); translate, to judge them, those the target
    may not take as they are; plan the load. Returns where the loaded commands end. The commands that pass come
    mostly as CommandRuns (parsed and measured at once); single ones (the file's last command, one after a command
    the translator takes) are gathered into runs here."""
    stop = start
    quick: dict[bytes, QuickPlan] = {}
    feed = translator.feed
    run_start = run_end = count = last = 0
    name = b""
    names: dict[bytes, int] = {}

    def hot() -> bool:  # a run may hold commands only where they go out as they are
        return translator.followed and not translator.in_group

    events = reader.command_part(info, start, is_last_file, raw=True, runs=(translator.quick_plan, hot))
    for event in events:
        if type(event) is CommandRun:
            if count:
                plan.run(run_start, run_end, count, names)
                count, names = 0, {}
            plan.run(event.start, event.end, len(event.commands), Counter(map(_first, event.commands)))
        elif type(event) is tuple:
            offset, end, argv = event
            name = argv[0]
            q = quick.get(name)
            if q is None:
                q = quick[name] = translator.quick_plan(name)
            if hot() and (q[0] or len(argv) == q[1] or (q[2] is not None and q[2](argv))):
                if count and (offset != run_end or count >= RUN_COMMANDS or end - run_start > RUN_BYTES):
                    plan.run(run_start, run_end, count, names)
                    count, names = 0, {}
                if not count:
                    run_start = offset
                count += 1
                run_end = end
                last = offset
                names[name] = names.get(name, 0) + 1
                continue
            if count:
                plan.run(run_start, run_end, count, names)
                count, names = 0, {}
            feed(argv, end)
            plan.translate(offset, end)
        elif isinstance(event, FileEnd):
            stop = event.loaded_up_to  # the byte after the last command the server applies
    if count:
        plan.run(run_start, run_end, count, names, last_command=(last, name))
    return stop


def refuse_incompatible(incompatible: Sequence[tuple[int, str, str]], total: int, what: str, inspect: str) -> None:
    """ProblemsFound naming the first keys the target cannot take, and their count: nothing was flushed."""
    shown = "; ".join(f"db {db} {key}: {why}" for db, key, why in incompatible[:SHOWN])
    more = f" (and {total - SHOWN:,} more)" if total > SHOWN else ""
    raise ProblemsFound(f"{total:,} {what} cannot be loaded into the target: {shown}{more}; nothing was flushed",
                        f"use --on-incompatible skip or lossy to load the rest; `migrate preflight {inspect} "
                        "--target ...` lists what the target lacks")


# -- the load, after the flush ------------------------------------------------------------------------------------


def load_aof(check: AofCheck, config: RunConfig, target: Server, progress: RunProgress) -> AofLoad:
    options = config.options
    settings = config.common.connection
    load = AofLoad(KeyLoader(config, target))
    translator = Translator(TargetProfile.of(target.client), policy=options.on_incompatible,
                            db_map=DbMap.from_selection(options.selection))
    load.stream = translator.tally
    applier = Applier(target.endpoint, settings, STREAM_ID, APPLY, tally=translator.tally)
    load.applier = applier
    try:
        for info in check.input.files:
            if info.format == "rdb":
                _load_rdb_part(info, load, progress)
                load.functions = _merge(load.functions, load_functions(target, settings, load.extras.functions))
                load.extras.functions = []
            restored = load_commands(check, info, translator, applier, progress, restore=lambda u: _restore(u, load))
            load.restored += restored
        applier.flush()
    finally:
        applier.close()
        load.loader.close()
    load.commands = report(check, translator.tally, load.restored)
    return load


class CommandSink(Protocol):
    """Where a file's commands go: the pipelined applier (--load-via commands), or a replication stream."""

    def apply(self, unit: Unit) -> None: ...

    def apply_raw(self, target_db: int, data: bytes, count: int, end_offset: int, source_db: int) -> None: ...

    def flush(self) -> object: ...


def load_commands(check: AofCheck, info: AofFileInfo, translator: Translator, sink: CommandSink,
                  progress: RunProgress, restore: Callable[[Unit], int] | None = None) -> int:
    """One file's commands (after its RDB part) into `sink`, as the check pass planned them; `restore`: the per-key
    path for the AOF's RESTOREs (else they go to the sink, as translated). The RESTOREs given to `restore`."""
    if info.format == "empty":
        return 0
    translator.new_client()
    start, stop = check.rdb_ends.get(info.name, 0), check.stops[info.name]
    with _CommandLoad(info, translator, sink, progress, restore) as commands:
        plan = check.plans.get(info.name)
        if plan is not None:
            commands.planned(plan)
            start = plan.covered_up_to
        if start < stop:
            commands.parsed(start, stop)
    return commands.restored


class _CommandLoad:
    """One file's commands into the target: the planned part (runs forwarded as read, the rest translated), then
    whatever the plan does not cover, parsed (runs of commands the target takes as they are still forwarded)."""

    def __init__(self, info: AofFileInfo, translator: Translator, sink: CommandSink, progress: RunProgress,
                 restore: Callable[[Unit], int] | None) -> None:
        self.info = info
        self.translator = translator
        self.sink = sink
        self.restore = restore
        self.restored = 0
        self.progress = progress
        self.fd = os.open(info.path, os.O_RDONLY)

    def __enter__(self) -> _CommandLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def forward(self, start: int, end: int, count: int) -> None:
        translator = self.translator
        self.sink.apply_raw(translator.target_db(translator.db) or 0, os.pread(self.fd, end - start, start),
                               count, end, translator.db)
        self.progress.advance(count, end - start)

    def planned(self, plan: FilePlan) -> None:
        entries = plan.entries
        i, n = 0, len(entries)
        while i < n:
            start, end, count = entries[i], entries[i + 1], entries[i + 2]
            if count != TRANSLATE:
                self.forward(start, end, count)
                i += 3
                continue
            j = i  # consecutive commands to translate: one read
            while j + 3 < n and entries[j + 5] == TRANSLATE and entries[j + 3] == end and end - start < RUN_BYTES:
                j += 3
                end = entries[j + 1]
            self.translated(self._commands(start, end, (j - i) // 3 + 1), end)
            i = j + 3
        self.translator.count_passed(plan.names)

    def _commands(self, start: int, end: int, count: int) -> list[Argv]:
        """The commands of [start, end): canonical RESP (hiredis), else (the file's last command) by the exact
        rules."""
        parsed = _parse(os.pread(self.fd, end - start, start), count)
        if parsed is None:
            parsed = [argv for _, _, argv in CommandStream(self.info.path, self.info.name, start, stop=end, fast=False)]
        if len(parsed) != count:
            raise BadInputError(f"the AOF file {self.info.name} changed after it was checked",
                                "take a stable copy of the AOF and reload again")
        return parsed

    def translated(self, commands: list[Argv], end: int) -> None:
        feed = self.translator.feed
        for argv in commands:
            self.unit(feed(argv, end))
        self.progress.advance(len(commands), 0)

    def unit(self, unit: Unit | None) -> None:
        if unit is None:
            return
        if (self.restore is not None and len(unit.commands) == 1 and not unit.group
                and _is_restore(unit.commands[0][1][0])):
            self.sink.flush()  # a RESTORE goes through the per-key path: everything before it is applied first
            self.restored += self.restore(unit)
        else:
            self.sink.apply(unit)

    def parsed(self, start: int, stop: int) -> None:
        """Commands parsed here (a file the check pass could not plan): runs the target takes as they are are still
        forwarded as read, while the parser's fast path proves them canonical (a target reads only canonical RESP the
        way the server that wrote the file did)."""
        translator = self.translator
        quick: dict[bytes, QuickPlan] = {}
        names: dict[bytes, int] = {}
        run_start = run_end = count = 0
        stream = CommandStream(self.info.path, self.info.name, start, stop=stop)
        for offset, end, argv in stream:
            name = argv[0]
            q = quick.get(name)
            if q is None:
                q = quick[name] = translator.quick_plan(name)
            if ((q[0] or len(argv) == q[1] or (q[2] is not None and q[2](argv))) and translator.followed
                    and not translator.in_group and stream.exact_from is None):  # canonical bytes only
                if count and (offset != run_end or count >= RUN_COMMANDS):
                    self.forward(run_start, run_end, count)
                    count = 0
                if not count:
                    run_start = offset
                count += 1
                run_end = end
                names[name] = names.get(name, 0) + 1
                continue
            if count:
                self.forward(run_start, run_end, count)
                count = 0
            self.unit(translator.feed(argv, end))
            self.progress.advance(1, 0)
        if count:
            self.forward(run_start, run_end, count)
        translator.count_passed(names)


def _load_rdb_part(info: AofFileInfo, load: AofLoad, progress: RunProgress) -> None:
    try:
        with open(info.path, "rb", buffering=0) as fh, RdbReader(fh) as rdb:
            load_records(rdb.scan(), rdb.rdb_version, load.loader, progress, load.extras)
    except RdbFormatError as exc:  # checked before the flush: the file changed since
        raise BadInputError(f"the RDB part of the AOF file {info.name} is unusable: {exc.message}",
                            "the file changed after it was checked: take a stable copy of the AOF") from None


def _parse(data: bytes, count: int) -> list[Argv] | None:
    """`count` commands in canonical RESP and nothing else, or None (hiredis reads them otherwise than the server)."""
    reader = hiredis.Reader()
    reader.feed(data)
    try:
        commands = [reader.gets() for _ in range(count)]
        rest = reader.gets()
    except hiredis.ProtocolError:
        return None
    if rest is not False or reader.has_data():
        return None
    out = []
    for reply in commands:
        if type(reply) is not list or not reply or any(type(a) is not bytes for a in reply):
            return None
        out.append(tuple(reply))
    if sum(len(pack_command(argv)) for argv in out) != len(data):
        return None  # lengths that were not canonical
    return out


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


def report(check: AofCheck, tally: StreamTally, restored: int) -> CommandsReport:
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
