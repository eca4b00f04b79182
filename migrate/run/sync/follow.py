"""What the strategies that follow a source's write stream until a cutover share (`sync`, which applies the stream
as a client, and `relay`, which forwards it to a target replicating from migrate): the checks before anything
starts, the job's life (status, reporter, stop or failure), the replication link retried while the source is away,
the resync record, the source's offset and the spool files of killed runs.

A job is a `FollowJob`: the strategy gives its `run()` (first sync, stream, cutover) and what its cutover does at
the cut point and at the end (migrate.run.sync.cutover calls them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, Protocol

from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import ConfigError, ConnectError, MigrateError, TargetNotEmptyError
from migrate.logs import get_logger
from migrate.replication import LinkOptions, RawRun, ReplicaLink, StreamCommand
from migrate.run.options import CutoverMode, RunConfig, RunOptions
from migrate.run.result import ResyncEvent, SyncReport
from migrate.run.sync.checkpoint import SyncCheckpoint
from migrate.run.sync.control import SyncControl
from migrate.run.sync.report import Reporter
from migrate.run.sync.state import SyncState
from migrate.selection import KeySelection
from migrate.server import Server
from migrate.stream import DbMap, Translator, Unit
from migrate.stream.marker import MARKER_DB
from migrate.wire import Channel, Splice

log = get_logger("migrate.sync")

RECONNECT_SECONDS: Final = 120.0  # a source or target that stays unreachable longer ends the job (resumable)
CHECKPOINT_SECONDS: Final = 1.0


def refuse_auto_cutover(options: RunOptions, sources: Sequence[Server]) -> None:
    """--cutover auto only where every source primary (one, or a cluster's) can pause writes alone."""
    if options.cutover is not CutoverMode.AUTO:
        return
    where = "the source" if len(sources) == 1 else "every source primary"
    for source in sources:
        if not source.identity.capabilities.has("client pause write"):
            raise ConfigError(f"--cutover auto needs CLIENT PAUSE WRITE on {where} (and CLIENT UNPAUSE, Redis 6.2+); "
                              f"{source.identity.label} at {source.endpoint} can only pause every client, reads "
                              "included, until a timeout",
                              "use --cutover manual: stop the application's writes, then run `migrate cutover`")


@dataclass(frozen=True)
class Scope:
    """The target databases of the job: checked empty at the start, emptied by --flush-target and full resyncs."""

    db_map: DbMap
    dbs: tuple[int, ...] | None  # None: every database (FLUSHALL)

    @classmethod
    def of(cls, selection: KeySelection) -> Scope:
        dbs = (tuple(sorted({selection.target_db(d) for d in selection.source_dbs({})}))
               if selection.dbs or selection.db_map else None)
        return cls(DbMap.from_selection(selection), dbs)

    def held(self, target: Server) -> dict[int, int]:
        """Keys per target database of the scope, now."""
        from migrate.run.session import dbsize

        if self.dbs is None:
            return {db: n for db, n in target.identity.keyspace.items() if n}
        return {db: n for db in self.dbs if (n := dbsize(target, db))}

    @staticmethod
    def refuse_held(held: dict[int, int], options: RunOptions) -> dict[int, int]:
        """`held` (keys per target database of the scope), refused when not empty unless --replace or --flush-target
        says what to do with those keys."""
        if held and not (options.replace or options.flush_target):
            listed = ", ".join(f"db {db} holds {n} keys" for db, n in sorted(held.items()))
            raise TargetNotEmptyError(f"target is not empty: {listed}")
        return held

    def describe(self) -> str:
        return "every database" if self.dbs is None else "db " + ", ".join(map(str, self.dbs))


def fingerprint(strategy: str, config: RunConfig, source: Server, target: Server) -> dict[str, Any]:
    """What binds a checkpoint to its job: the servers and the databases."""
    sel = config.options.selection
    return {"strategy": strategy, "source": str(source.endpoint.with_db(0)),
            "target": str(target.endpoint.with_db(0)), "db_map": [list(p) for p in sel.db_map], "dbs": list(sel.dbs)}


class FollowJob:
    """The state and the helpers every following job has; `run()` is the strategy's."""

    strategy = "sync"
    name = "source"  # a cluster source's follower: its shard's slots

    def __init__(self, config: RunConfig, source: Server, target: Server, state: SyncState, control: SyncControl,
                 reporter: Reporter) -> None:
        self.config = config
        self.options: RunOptions = config.options
        self.settings: ConnectionSettings = config.common.connection
        self.source = source
        self.target = target
        self.state = state
        self.control = control
        self.reporter = reporter
        self.scope = Scope.of(self.options.selection)
        self.link: ReplicaLink | None = None
        self.checkpoint: SyncCheckpoint | None = None
        self.replid: str | None = None
        self.applied = (0, 0)  # (source offset, source db there) the target holds
        self.resyncs: list[ResyncEvent] = []
        self.offset_client = Channel(source.endpoint, self.settings, "source", 0)  # the reporter thread's
        self.observer: Callable[[list[StreamCommand]], None] | None = None  # the cutover's grace period counts writes

    def run(self) -> SyncReport:
        raise NotImplementedError

    def pump(self, timeout: float = 0.2) -> int:
        """Read what the link holds and bring it to the target; recover from what was lost. The commands handled."""
        raise NotImplementedError

    def followed(self) -> Sequence[tuple[FollowJob, Endpoint]]:
        """The links the cutover pauses and drains, each with the primary to pause: this job's one."""
        return [(self, self.source.endpoint)]

    def markers(self) -> tuple[bytes, ...]:
        """The marker keys the job keeps on the target (left out of the cutover's key count): none here (a relay's
        offset is its replica's own), a sync's own (SyncJob)."""
        return ()

    def target_counts(self) -> dict[int, int]:
        """Keys per target database, the job's marker keys left out (the cutover's count)."""
        from migrate.run.sync.cutover import target_keyspace

        counts = target_keyspace(self.target_nodes(), self.settings)
        counts[MARKER_DB] = counts.get(MARKER_DB, 0) - self.marker_count()
        return counts

    def target_nodes(self) -> list[Endpoint]:
        """The target's servers holding keys (a cluster: its primaries)."""
        return [self.target.endpoint]

    def marker_count(self) -> int:
        """How many of the job's marker keys the target holds now."""
        markers = self.markers()
        if not markers:
            return 0
        channel = Channel(self.target.endpoint, self.settings, "target", MARKER_DB)
        try:
            return int(channel.command("EXISTS", *markers) or 0)
        finally:
            channel.close()

    def at_cut_point(self) -> None:
        """The cutover's drain reached the cut point, the source's writes are still paused."""

    def finish_cutover(self) -> None:
        """After the grace period: the last of the stream is on the target; end the job's hold on it."""

    def target_writable(self) -> bool:
        """Whether clients may write to the target now (the moment to repoint them, said in the status file)."""
        return True

    @property
    def resumable(self) -> bool:
        """Whether the checkpoint is kept for a --resume when the job ends before its cutover."""
        return True

    def failed(self, exc: BaseException) -> None:
        """The job is ending on `exc` (an error, or a stop): what the strategy must undo or say first."""

    def link_options(self) -> LinkOptions:
        raise NotImplementedError

    # -- connecting ---------------------------------------------------------------------------------------------------

    def connect(self, replid: str | None, offset: int, db: int) -> ReplicaLink:
        """A replication link (PSYNC replid offset+1, or PSYNC ? -1), retried while the source is unreachable."""
        options = self.link_options()
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.2
        while True:
            try:
                endpoint = self.source_endpoint()
                if replid is None:
                    return ReplicaLink(endpoint, self.settings, options=options)
                return ReplicaLink(endpoint, self.settings, replid=replid, offset=offset, db=db, options=options)
            except ConnectError as exc:
                if time.monotonic() + delay > deadline:
                    raise ConnectError(f"the source stayed unreachable for {RECONNECT_SECONDS:g} s: {exc.message}",
                                       "rerun with --resume once the source is back") from None
                log.warning("source unreachable, retrying", error=exc.message, in_seconds=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def source_endpoint(self) -> Endpoint:
        """The server to replicate from, asked at each connection attempt (a cluster shard's primary may change)."""
        return self.source.endpoint

    def record(self, kind: str, reason: str, offset: int) -> None:
        """One (re)start of the stream: full (a snapshot) or partial (continued from `offset`)."""
        self.resyncs.append(ResyncEvent(kind, reason, offset, time.time()))
        self.state.resync, self.state.resync_reason = kind, reason
        if kind == "full":
            self.state.full_resyncs += 1
        else:
            self.state.partial_resyncs += 1
        if self.checkpoint is not None:
            self.checkpoint.full_resyncs, self.checkpoint.partial_resyncs = (self.state.full_resyncs,
                                                                              self.state.partial_resyncs)
        log.warning("resync", kind=kind, reason=reason, offset=offset) if self.resyncs[1:] else \
            log.info(f"{self.strategy} started", kind=kind, reason=reason, offset=offset)

    # -- what the reporter and the cutover read --------------------------------------------------------------------

    def waiting_since(self) -> float | None:
        return self.link.waiting_since() if self.link is not None else None

    def read_source_offset(self, channel: Channel | None = None) -> int | None:
        """The source's master_repl_offset (INFO replication), or None when it cannot be read now. Without a channel
        it uses the reporter's own (a channel is never shared between threads)."""
        channel = channel or self.offset_client
        try:
            reply = channel.command("INFO", "replication")
        except Exception:  # reported as a stale figure, never a failure of the job
            channel.reset()
            return None
        return replication_offset(reply)

    def note(self, text: str) -> None:
        self.state.notes.append(text)
        log.warning(self.strategy, note=text)

    def close(self) -> None:
        for closer in (self.link, self.offset_client):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()


def translated(link: ReplicaLink, translator: Translator, limit: int, timeout: float) -> Iterator[RawRun | Unit]:
    """Up to `limit` commands of the stream, translated: runs of commands the target takes as they are come as the
    source's own bytes (never parsed into tuples nor re-encoded; they run in the translator's current database),
    the others as the translator's finished units. (The translator's tally counts the commands handled.)"""
    received: int | None = None
    runs: list[list[list[bytes]]] = []
    start = link.position.offset

    def rewrite(argv: list[bytes]) -> Splice | None:
        nonlocal received
        if received is None:
            received = link.arrived_ms(start + 1)
        return translator.splice(argv, received)

    try:
        for part in link.read_split(limit, timeout, translator.quick_plan,
                                    lambda: translator.followed and not translator.in_group, rewrite):
            if type(part) is RawRun:
                runs.append(part.parsed)
                yield part
                continue
            assert type(part) is StreamCommand
            if received is None:
                received = link.arrived_ms(part.offset)
            unit = translator.feed(part.argv, part.offset, received)
            if unit is not None:
                yield unit
    finally:  # counted once per call, in C: a stream that alternates runs and single commands has many short runs
        translator.count_passed(Counter(map(itemgetter(0), chain.from_iterable(runs))))


class Driven(Protocol):
    """What `drive` runs: a FollowJob, or the followers of a cluster source together."""

    state: SyncState
    reporter: Reporter

    @property
    def resumable(self) -> bool: ...

    def run(self) -> SyncReport: ...

    def failed(self, exc: BaseException) -> None: ...

    def close(self) -> None: ...


def drive(job: Driven, checkpoint: Path) -> SyncReport:
    """Run the job with its reporter; whatever ends it, the job is closed, the status file says how it ended, and a
    failure's hint says how to go on."""
    state = job.state
    try:
        return job.run()
    except (KeyboardInterrupt, MigrateError) as exc:
        job.failed(exc)
        state.state = "stopped" if isinstance(exc, KeyboardInterrupt) or exc.exit_code == 130 else "failed"
        state.error = None if state.state == "stopped" else getattr(exc, "message", str(exc))
        if isinstance(exc, MigrateError) and state.state == "failed" and job.resumable:
            exc.hint = f"{exc.hint}; the checkpoint {checkpoint} is kept: rerun with --resume"
        raise
    finally:
        job.close()
        job.reporter.stop()


def remove_leftovers(folder: Path, prefix: str) -> None:
    """Snapshot files and stream spools of jobs that were killed (their process is gone): `<prefix><pid>...`."""
    for path in folder.glob(f"{prefix}*"):
        pid = path.name.removeprefix(prefix).split(".")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        log.info("removing a killed job's spool", path=str(path))
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replication_offset(info: Any) -> int | None:
    """master_repl_offset from an INFO replication reply (bytes)."""
    if not isinstance(info, bytes):
        return None
    for line in info.splitlines():
        if line.startswith(b"master_repl_offset:"):
            return int(line.split(b":", 1)[1])
    return None
