"""Reload as migrate's replica (`--strategy reload --load-via replication`): the target runs `REPLICAOF <migrate>`;
migrate, as its primary (migrate.replication.ReplicaServer), sends the snapshot (an RDB file or a live standalone
source's snapshot, or the RDB part of an AOF: a base file or a preamble) as the full sync, transcoded for the target
release as it is read (rdb.transcode: the target loads it with its own loader, no RESTORE per key); from an AOF, the
commands follow as the replication stream, translated as --load-via commands translates them
(aofload.load_commands); then migrate waits until the target acknowledges the last byte, and makes it a primary again
(REPLICAOF NO ONE, its own settings back).

    RDB --> transcode --$EOF: chunks (the last held back)--> target (loads while they arrive)
        [AOF commands --> check pass (aofload.check_aof)] ---> the last chunk and the end mark --> target online
        [AOF commands --> Translator / runs as read --> RespWriter --> stream --> target --> GETACK]
        --> REPLICAOF NO ONE

Nothing is replaced before the whole input is checked: the sync's last chunk and its end mark are held back until
the transcoder has read every key (the file's checksum included) and, from an AOF, the check pass every command. A
replica keeps its data until its sync's payload ends (it writes the payload to disk first); an empty target is set to
`repl-diskless-load on-empty-db` for the load, so that it loads the keys while they arrive, and it empties itself
again when the sync breaks. A refused input thus leaves the target as it was. The target's `repl-timeout` is raised
for the load: it waits for the last chunk while the check runs.

A replica answers nothing to its primary: a command the target refuses shows only in its error counter (INFO stats
total_error_replies), read before and after; a rise fails the run (the hint: --load-via commands names each refused
command). A replica ignores maxmemory: the used memory is compared with maxmemory once everything is loaded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from migrate.aof import AofInput
from migrate.errors import BadInputError, ConfigError, MigrateError, MigrationError
from migrate.identity import config_value
from migrate.logs import get_logger
from migrate.rdb.crc import crc64
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import Source
from migrate.rdb.target import TargetFormat
from migrate.rdb.transcode import TranscodeReport, transcode_chunks
from migrate.replication import PrimaryOptions, PrimaryState, ReplicaServer
from migrate.run.aofload import AofCheck, RdbPart, check_aof, load_commands, refuse_incompatible, report
from migrate.run.options import OnIncompatible, RunConfig
from migrate.run.progress import RunProgress
from migrate.run.relay.api import BACKLOG_BYTES, CONNECT_SECONDS, refuse_tls_replication, relay_address
from migrate.run.relay.target import TargetReplica, where
from migrate.run.result import CommandsReport, FunctionsReport
from migrate.run.tally import DbTally, KeyIssue
from migrate.server import Server
from migrate.stream import DbMap, StreamTally, TargetProfile, Translator, Unit
from migrate.stream.resp import RespWriter

log = get_logger("migrate.reload")

STEP_SECONDS: Final = 1.0  # a wait on the target's replication is checked this often
LOST_SECONDS: Final = 10.0  # a target whose link to migrate stays down this long fails the load
HOLD_TIMEOUT: Final = 3600  # the target's repl-timeout during the load: it waits for the last chunk during the check
FLUSH_BYTES: Final = 1 << 20  # stream bytes gathered per write to the target
KNOBS: Final = ("repl-diskless-load", "repl-timeout")


@dataclass
class ReplicaLoad:
    """What a load through replication did: per-database tallies of the snapshot (or the AOF's RDB part), the notes,
    the function libraries, and from an AOF the command report."""

    tallies: dict[int, DbTally] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    commands: CommandsReport | None = None
    stream: StreamTally | None = None
    rdb: TranscodeReport | None = None
    functions: FunctionsReport | None = None


def load_via_replication(aof: AofInput, config: RunConfig, target: Server) -> ReplicaLoad:
    """Check and load the AOF as migrate's replica; raises a MigrateError subclass (the target made a primary again
    first, its data untouched when the error comes before the sync's last chunk)."""
    first = aof.files[0]
    rdb = _RdbInput(first.path, first.name, f"the RDB part of the AOF file {first.name}") \
        if first.format == "rdb" else None
    return _load(_Job(config, target, rdb, aof))


def load_snapshot_via_replication(source: Source, name: str, config: RunConfig, target: Server,
                                  keys: int | None = None) -> ReplicaLoad:
    """Load one RDB snapshot (a file, or a stream read as it arrives; `keys` it holds, when known) as migrate's
    replica: its checks are the transcoder's, done before the sync's last chunk."""
    return _load(_Job(config, target, _RdbInput(source, name, name, keys), None))


@dataclass(frozen=True)
class _RdbInput:
    source: Source  # a path, or a binary stream
    name: str  # for the transcoder's messages
    what: str  # in errors: "the RDB part of the AOF file ...", "the snapshot of ..."
    keys: int | None = None  # how many it holds, when known (a live source): the progress bar's total


def _load(job: _Job) -> ReplicaLoad:
    config, target = job.config, job.target
    address = relay_address(config.options.relay_address, target)
    refuse_tls_replication(target, "--load-via replication", "--load-via commands")
    job.replica.read_settings()
    try:
        server = ReplicaServer(PrimaryOptions(host=address[0], port=address[1], username=job.replica.masteruser,
                                              password=job.replica.password, backlog_bytes=BACKLOG_BYTES))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {where(address)} for the target: {exc.strerror or exc}",
                          "give --relay-address an address of this machine and a free port") from None
    with server:
        try:
            return job.run(server)
        except MigrateError as exc:
            if job.released and not job.loaded:
                exc.message = (f"the target was sent its whole sync: its data may be replaced, by a partial load: "
                               f"{exc.message}")
                exc.hint = f"{exc.hint}; reload again once the cause is fixed"
            raise
        finally:
            job.restore()


class _Job:
    def __init__(self, config: RunConfig, target: Server, rdb: _RdbInput | None, aof: AofInput | None) -> None:
        self.config = config
        self.options = config.options
        self.target = target
        self.rdb = rdb
        self.aof = aof
        self.replica = TargetReplica(target, config.common.connection)
        self.format = TargetFormat.from_identity(target.identity)
        self.profile = TargetProfile.of(target.client)  # read now: a target loading from the sync answers nothing
        self.knobs: dict[str, str] = {}  # the target's settings changed for the load, as they were
        self.check: AofCheck | None = None
        self.result = ReplicaLoad()
        self.released = False  # the sync's last chunk was sent: the target's data is replaced from here on
        self.loaded = False  # the target acknowledged the last byte

    def run(self, server: ReplicaServer) -> ReplicaLoad:
        errors = self._errors()
        self._set_knobs()
        self.replica.attach(server.address)
        self._wait_psync(server)
        sent = server.full_sync(self._chunks(), timeout=CONNECT_SECONDS)
        self._until(server, server.wait_online, "loading the snapshot")
        log.info("target loaded the snapshot", bytes=sent.rdb_bytes, seconds=round(sent.seconds, 3))
        if self.aof is not None:
            self._stream(server)
        self.loaded = True
        self._report()
        self._detach()
        self._judge(errors)
        return self.result

    # -- the full sync --------------------------------------------------------------------------------------------

    def _until(self, server: ReplicaServer, wait: Callable[[float], object], doing: str) -> None:
        """`wait` (a ReplicaServer wait) in steps, --sync-timeout at most. A target whose link to migrate stays down
        LOST_SECONDS (killed, restarted, or asking for a sync this load cannot give) fails the load then, not at the
        timeout; a link back within them continues from the backlog (+CONTINUE)."""
        deadline = time.monotonic() + self.options.sync_timeout
        down_since: float | None = None
        while True:
            try:
                wait(STEP_SECONDS)
                return
            except MigrationError as exc:
                last = exc.message
            status, now = server.status(), time.monotonic()
            if status.state in (PrimaryState.TRANSFER, PrimaryState.LOADING, PrimaryState.ONLINE):
                down_since = None
            elif down_since is None:
                down_since = now
            elif now - down_since >= LOST_SECONDS:
                raise MigrationError(f"the target's replication link to migrate went down while {doing} "
                                     f"({status.last_error or 'no reason seen'})",
                                     "read the target's log (a restart, an out-of-memory kill, a refused sync)")
            if now > deadline:
                raise MigrationError(f"the target did not finish {doing} within {self.options.sync_timeout:g} s "
                                     f"({last})", "raise --sync-timeout for a large load, or read the target's log")

    def _wait_psync(self, server: ReplicaServer) -> None:
        try:
            server.wait_psync(CONNECT_SECONDS)
        except MigrationError:
            link = self.replica.replication().link
            raise MigrationError(f"the target did not ask migrate at {where(server.address)} for its sync within "
                                 f"{CONNECT_SECONDS:g} s (its link: {link}); nothing was loaded",
                                 "check that the target can reach that address (--relay-address), or use "
                                 "--load-via commands") from None

    def _chunks(self) -> Iterator[bytes]:
        """The RDB transcoded, its last chunk held back until the whole input is checked (the replica keeps its
        data until the sync's end, which ReplicaServer sends after the last chunk)."""
        parts: dict[str, RdbPart] = {}
        if self.rdb is None:
            held = empty_rdb(self.format)
        else:
            held = yield from self._transcoded(self.rdb)
            report_ = self.result.rdb
            assert report_ is not None
            parts[self.rdb.name] = _part(report_)
        if self.aof is not None:
            self.check = check_aof(self.aof, self.config, self.target, rdb_parts=parts, profile=self.profile)
        elif self.rdb is not None and self.options.on_incompatible is OnIncompatible.FAIL:
            part = parts[self.rdb.name]
            if part.incompatible_total:
                refuse_incompatible(part.incompatible, part.incompatible_total, "keys of the snapshot",
                                    "--rdb-file FILE")
        self.released = True
        yield held

    def _transcoded(self, rdb: _RdbInput) -> Generator[bytes, None, bytes]:
        """The transcoder's chunks but the last, which it returns; the bytes read shown as they go."""
        stream = transcode_chunks(rdb.source, self.format, _policy(self.options.on_incompatible))
        held = None
        shown = (0, 0)
        try:
            with RunProgress(self.options.show_progress, rdb.keys, "full sync") as progress:
                for chunk in stream:
                    if held is not None:
                        yield held
                    held = chunk
                    now = stream.progress()
                    progress.advance(now[0] - shown[0], now[1] - shown[1])
                    shown = now
        except RdbFormatError as exc:
            raise BadInputError(f"{rdb.what} is unusable: {exc.message}; the target was not touched",
                                "a server refuses to load it too: restore the file from a backup") from None
        assert stream.report is not None and held is not None
        self.result.rdb = stream.report
        return held

    # -- the stream -----------------------------------------------------------------------------------------------

    def _stream(self, server: ReplicaServer) -> None:
        check = self.check
        assert check is not None
        translator = Translator(self.profile, policy=self.options.on_incompatible,
                                db_map=DbMap.from_selection(self.options.selection))
        sink = _StreamSink(server, translator.tally)
        with RunProgress(self.options.show_progress, check.commands, "streaming") as progress:
            for info in check.input.files:
                load_commands(check, info, translator, sink, progress)
            sink.flush()
        offset = server.request_ack()
        self._until(server, lambda timeout: server.wait_ack(offset, timeout), "applying the AOF's commands")
        self.result.stream = translator.tally
        self.result.commands = report(check, translator.tally, 0)

    def _report(self) -> None:
        rdb = self.result.rdb
        if rdb is not None:
            self.result.tallies = tallies(rdb)
            self.result.notes += [f"module data outside keys ({name}) is not loaded: recreate it on the target (e.g. "
                                  "search indexes)" for name in rdb.module_aux_dropped]
            dropped = ", ".join(rdb.functions_dropped)
            if rdb.functions or dropped:
                self.result.functions = FunctionsReport(len(rdb.functions), f"left out: {dropped}" if dropped else "")

    # -- the end --------------------------------------------------------------------------------------------------

    def _detach(self) -> None:
        self.replica.detach()
        self.restore()

    def _judge(self, errors_before: int | None) -> None:
        """Errors the target counted while it replicated, and memory over maxmemory: failures, named."""
        errors = self._errors()
        if errors_before is not None and errors is not None and errors > errors_before:
            raise MigrationError(f"the target refused {errors - errors_before} command(s) of the AOF while it "
                                 "replicated them (its error counter, INFO stats total_error_replies, rose): the "
                                 "target holds the load without their effect",
                                 "read the target's log, or reload with --load-via commands, which names every "
                                 "refused command")
        memory = self._info("memory")
        used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        if limit and used > limit:
            raise MigrationError(f"the target holds the whole load but uses {used:,} bytes, over its maxmemory "
                                 f"{limit:,} (a replica ignores maxmemory): its next writes may evict keys or be "
                                 "refused", "raise the target's maxmemory (CONFIG SET maxmemory) before it takes "
                                 "writes, or load into a larger target")

    def _errors(self) -> int | None:
        value = self._info("stats").get("total_error_replies")
        return None if value is None else int(value)

    def _info(self, section: str) -> dict[str, Any]:
        return dict(self.target.client.info(section))

    # -- the target's settings ------------------------------------------------------------------------------------

    def _set_knobs(self) -> None:
        for name in KNOBS:
            value = config_value(self.target.client, name)
            if value is None:
                raise MigrationError(f"the target does not let this user read {name} (CONFIG GET)",
                                     "grant CONFIG GET and CONFIG SET for the load, or use --load-via commands")
            self.knobs[name] = value
        empty = not self._keys()
        if empty:  # load while the sync arrives; an empty replica empties itself again when the sync breaks
            self._set("repl-diskless-load", "on-empty-db")
        if int(self.knobs["repl-timeout"]) < HOLD_TIMEOUT:
            self._set("repl-timeout", str(HOLD_TIMEOUT))

    def _keys(self) -> int:
        return sum(int(v.get("keys", 0)) for v in self._info("keyspace").values() if isinstance(v, dict))

    def _set(self, name: str, value: str) -> None:
        try:
            self.target.client.config_set(name, value)
        except Exception as exc:  # an error reply: say which setting
            raise MigrationError(f"the target refused CONFIG SET {name}: {' '.join(str(exc).split())[:200]}",
                                 "grant CONFIG SET for the load, or use --load-via commands") from None

    def restore(self) -> None:
        """The target a primary again with its own settings (after a failure too; what cannot be done is logged)."""
        if self.replica.attached is not None:
            done, what = self.replica.detach_quietly()
            if not done:
                log.error("the target is still migrate's replica", detail=what)
        for name, value in list(self.knobs.items()):
            with contextlib.suppress(MigrateError, Exception):
                self.target.client.config_set(name, value)
            del self.knobs[name]


class _StreamSink:
    """The AOF's commands as the target's replication stream (aofload.CommandSink): translated units encoded with
    their SELECTs, runs forwarded as the file's bytes; written to the primary about a megabyte at a time."""

    def __init__(self, server: ReplicaServer, tally: StreamTally) -> None:
        self.server = server
        self.tally = tally
        self.writer = RespWriter(db=-1)  # after a full sync the first command selects its database
        self.parts: list[bytes] = []
        self.size = 0

    def apply(self, unit: Unit) -> None:
        data = self.writer.encode(unit)
        if data:
            self._add([data], len(unit.commands))

    def apply_raw(self, target_db: int, data: bytes, count: int, end_offset: int, source_db: int) -> None:
        self._add(self.writer.raw(target_db, data), count)

    def _add(self, parts: list[bytes], commands: int) -> None:
        self.parts += parts
        self.size += sum(map(len, parts))
        self.tally.applied_commands += commands
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.server.append(b"".join(self.parts), self.writer.db)
            self.parts, self.size = [], 0


def empty_rdb(target: TargetFormat) -> bytes:
    """An RDB of the target's version holding nothing (an AOF without an RDB part still needs a full sync)."""
    body = target.magic + b"\xff"
    return body + crc64(body).to_bytes(8, "little")


def _policy(policy: OnIncompatible) -> str:
    """The transcoder's policy: under fail it skips and lists, and the check pass refuses what it listed (every key
    named, not the first only, and before the sync's last chunk)."""
    return "skip" if policy is OnIncompatible.FAIL else str(policy)


def _part(report_: TranscodeReport) -> RdbPart:
    skipped = report_.skipped
    return RdbPart(report_.input_bytes, report_.keys_read,
                   tuple((n.db, n.key, f"{n.type_name}: {n.detail}") for n in skipped.listed), skipped.total,
                   report_.module_aux_dropped)


def tallies(report_: TranscodeReport) -> dict[int, DbTally]:
    """The RDB part's keys per database, as reload reports them (routes: byte for byte, or converted)."""
    out: dict[int, DbTally] = {}
    for counts in report_.dbs:
        tally = out[counts.db] = DbTally(counts.db, counts.db, copied=counts.keys_written)
        tally.by_route.update({"byte for byte": counts.keys_written - counts.converted,
                               "converted": counts.converted})
        for attr, named in (("skipped", report_.skipped), ("changed", report_.changed), ("empty", report_.empty)):
            getattr(tally, attr).extend(KeyIssue(n.db, n.key, f"{n.type_name}: {n.detail}")
                                        for n in named.listed if n.db == counts.db)
    return out
