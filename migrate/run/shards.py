"""One unit of a sharded replay: one source database of one source shard (or of a standalone source), copied into the
target (one server, or every key routed by slot into a cluster), with its own checkpoint file.

A unit is a frozen, picklable description (`Unit`) and one function (`copy_unit`), so the same task runs in this
process, in a local worker process or on a Dask worker on another host: it reads the source's topology itself from the
seeds, finds its shard by its slot ranges, reads that shard's primary (or an in-sync replica), and keeps its progress
in `Unit.checkpoint` (a folder every worker shares). Run again with the same file, it continues from the SCAN cursor
saved there, unless the node it read from changed (a failover, a restart: a SCAN cursor only means something on its
node), in which case the shard starts over from cursor 0.

Failures: an error the unit cannot get past by retrying (a key the policy refuses, a full target, missing rights) is
returned in the outcome, not raised, so a scheduler does not retry it; a transient one (a node unreachable, the
cluster down for longer than the router waits) is raised, and the task is retried from its checkpoint. A source
failover during the copy (the old primary answers MOVED, or is gone) is followed inside the task: the topology is
read again and the shard is copied again from the start on its new node.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from migrate.cluster.errors import ClusterDownError, ClusterUnavailableError, RedirectLoopError
from migrate.cluster.links import NodeLink
from migrate.cluster.readers import replica_in_sync
from migrate.cluster.router import SlotRouter
from migrate.cluster.topology import NodeInfo, NodeRole, Shard, SlotRange, Topology, discover, read_topology
from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import ConnectError, MigrateError, MigrationError
from migrate.facts.releases import replica_loses_entries_read
from migrate.logs import get_logger
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.run.bigkeys import BigKeyCopier
from migrate.run.checkpoint import Checkpoint, DbState
from migrate.run.convert import Converter
from migrate.run.options import RunConfig
from migrate.run.pump import Pump
from migrate.run.ratelimit import RateLimiter
from migrate.run.replay import CHUNK_BYTES, SourceReader
from migrate.run.session import proto_max_bulk_len
from migrate.run.tally import DbTally
from migrate.run.targets import DirectTarget, RoutedTarget, TargetLink
from migrate.run.writer import TargetWriter
from migrate.server import Server
from migrate.wire import Channel

log = get_logger(__name__)

FOLLOW_FAILOVERS: Final = 3  # a shard copied again on a new node at most this many times per task
TOPOLOGY_WAIT: Final = 15.0  # seconds to wait for the cluster's view to show a failover after the old node failed
RETRYABLE: Final = (ConnectError, ClusterDownError, ClusterUnavailableError, RedirectLoopError)

Progress = Callable[[int, int], None]  # keys, bytes: called after every written batch (in-process runs only)


@dataclass(frozen=True)
class Unit:
    """What one task copies: source db `source_db` of the shard owning `ranges` (None: a standalone source)."""

    name: str  # the unit's key: its checkpoint file name (without .json)
    config: RunConfig  # the run: both sides' seeds, options, connection settings
    source_db: int
    target_db: int
    ranges: tuple[tuple[int, int], ...] | None
    target_cluster: bool
    checkpoint: Path
    fingerprint: dict[str, Any]  # what a resume must match (the run's fingerprint and this unit's name)
    may_replace: bool  # the target db was empty at the start (or --replace): resent or redone keys may replace
    rate_limit: float | None  # this unit's share of --rate-limit
    # The target may hold this unit's keys already (a resumed run, a unit copied again after the target lost keys):
    # they are replaced where the target db was empty at the start, not reported busy.
    recovering: bool = False

    @property
    def shard_text(self) -> str:
        return "standalone" if self.ranges is None else ",".join(str(SlotRange(a, b)) for a, b in self.ranges)


@dataclass(frozen=True)
class UnitOutcome:
    name: str
    tally: dict[str, Any]  # DbTally.to_dict() of everything this unit copied (resumed runs included)
    node: str  # the address of the node read ("" before it was found)
    seconds: float  # this attempt's copy time
    keys: int  # keys this attempt processed
    peak_rss_kib: int  # the worker process's peak resident memory
    cpu_seconds: float = 0.0  # CPU time of the worker process (every thread) during this attempt
    notes: tuple[str, ...] = ()
    resumed_at: int = 0  # the SCAN cursor this attempt started from
    error: tuple[str, str, str] | None = None  # (class name, message, hint) of an error retrying cannot fix

    @property
    def failed(self) -> bool:
        return self.error is not None


def copy_unit(unit: Unit, progress: Progress | None = None) -> UnitOutcome:
    """Copy one unit; see the module docstring for what is raised and what is returned."""
    job = _UnitJob(unit, progress)
    try:
        job.run()
    except RETRYABLE:
        raise
    except MigrateError as exc:
        return job.outcome((type(exc).__name__, exc.message, exc.hint))
    finally:
        job.close()
    return job.outcome(None)


@dataclass
class _UnitJob:
    unit: Unit
    progress: Progress | None
    notes: list[str] = field(default_factory=list)
    node: NodeInfo | None = None
    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)
    processed: int = 0
    resumed_at: int = 0
    resumed: bool = False  # the unit's checkpoint existed: keys of its last pages may be on the target already
    checkpoint: Checkpoint | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> ConnectionSettings:
        return self.unit.config.common.connection

    def run(self) -> None:
        checkpoint = self.checkpoint = self._load()
        state = checkpoint.dbs[self.unit.source_db]
        if state.done:
            return
        target_server, target = self._target()
        for attempt in range(FOLLOW_FAILOVERS + 1):
            endpoint, readonly, identity = self._source()
            recovering = False
            if checkpoint.source_run_id not in ("", identity):
                self._restart(state, "the shard's node changed since the checkpoint (failover or restart): its "
                                     "SCAN cursor is void, copied again from the start")
                recovering = True
            checkpoint.source_run_id = identity
            try:
                self._copy(state, endpoint, readonly, target_server, target, recovering or attempt > 0)
                return
            except MigrateError:
                if attempt == FOLLOW_FAILOVERS or not self._source_moved(endpoint):
                    raise
                self._restart(state, f"the shard's node {endpoint.address} stopped serving it during the copy "
                                     "(failover): copied again from the start on its new node")
                self._save()

    # -- the sides ------------------------------------------------------------------------------------------------

    def _load(self) -> Checkpoint:
        unit = self.unit
        if unit.checkpoint.exists():
            checkpoint = Checkpoint.load(unit.checkpoint, unit.fingerprint)
            self.resumed_at, self.resumed = checkpoint.dbs[unit.source_db].cursor, True
            return checkpoint
        checkpoint = Checkpoint(unit.checkpoint, unit.fingerprint)
        checkpoint.dbs[unit.source_db] = DbState(DbTally(unit.source_db, unit.target_db),
                                                 may_replace=unit.may_replace)
        self._save_to(checkpoint)
        return checkpoint

    def _source(self) -> tuple[Endpoint, bool, str]:
        """The node to read (endpoint, READONLY needed) and its identity (node id and run id)."""
        common = self.unit.config.common
        if self.unit.ranges is None:
            server = Server("source", common.require_source(), self.settings)
            self._closers.append(server.close)
            return server.endpoint, False, server.identity.run_id
        node = self.node = self._pick(read_topology(common.seeds("source"), self.settings, role="source"))
        server = Server("source", node.endpoint, self.settings)
        server.close()
        return node.endpoint, node.role is NodeRole.REPLICA, f"{node.node_id}:{server.identity.run_id}"

    def _pick(self, topology: Topology) -> NodeInfo:
        """The shard's node to read: its primary, or with --read-from replica its first healthy replica."""
        shard = _shard_of(topology, self.unit.ranges or ())
        if shard is None:
            raise MigrationError(f"the source shard of slots {self.unit.shard_text} no longer exists (the source was "
                                 "resharded)", "rerun with --resume: shards whose slots changed are copied again")
        if self.unit.config.options.read_from == "replica":
            for replica in shard.replicas:
                if not replica.failing and self._in_sync(replica):
                    return replica
            log.warning("no replica in sync: reading the shard on its primary", shard=self.unit.shard_text)
        return shard.primary

    def _in_sync(self, replica: NodeInfo) -> bool:
        """The replica's own word (INFO replication): the cluster's gossip lags (docs/cluster.md)."""
        link = NodeLink(replica.endpoint, self.settings, "source", 0, readonly=True)
        try:
            return replica_in_sync(link)
        finally:
            link.close()

    def _source_moved(self, endpoint: Endpoint) -> bool:
        """After a failure: whether the shard is now served by another node (the topology is read again until it
        shows the change, or for TOPOLOGY_WAIT seconds)."""
        if self.unit.ranges is None:
            return False
        deadline = time.monotonic() + TOPOLOGY_WAIT
        while True:
            with contextlib.suppress(MigrateError):
                found = discover(self.unit.config.common.seeds("source"), self.settings, role="source")
                if isinstance(found, Topology) and found.health.ok:
                    node = self._pick(found)
                    if (node.endpoint.host, node.endpoint.port) != (endpoint.host, endpoint.port):
                        return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def _target(self) -> tuple[Server, TargetLink]:
        unit, common = self.unit, self.unit.config.common
        if unit.target_cluster:
            topology = read_topology(common.seeds("target"), self.settings, role="target")
            server = Server("target", topology.shards[0].primary.endpoint, self.settings)
            target: TargetLink = RoutedTarget(SlotRouter(topology, self.settings, db=unit.target_db, role="target"))
        else:
            server = Server("target", common.require_target(), self.settings)
            target = DirectTarget(Channel(server.endpoint, self.settings, "target", unit.target_db))
        self._closers += [server.close, target.close]
        return server, target

    # -- the copy -------------------------------------------------------------------------------------------------

    def _copy(self, state: DbState, endpoint: Endpoint, readonly: bool, target_server: Server, target: TargetLink,
              recovering: bool) -> None:
        unit, options, settings = self.unit, self.unit.config.options, self.settings
        source = Server("source", endpoint, settings)
        if readonly and replica_loses_entries_read(source.identity.product, source.identity.version):
            self._note_once(f"read on {source.identity.label} replicas, which do not hold a stream consumer group's "
                            "entries-read: copied as unknown (-1), so the target shows no lag for those groups "
                            "(read on the primaries to keep it)")
        links = [NodeLink(endpoint, settings, "source", unit.source_db, readonly=readonly) for _ in range(3)]
        bulk = proto_max_bulk_len(target_server)
        threshold = options.big_key_threshold
        max_command_bytes = min(DEFAULT_MAX_COMMAND_BYTES, bulk // 2)
        converter = Converter(target_server.identity.capabilities, max_command_bytes)
        reader = SourceReader(links[0], source, options, RateLimiter(unit.rate_limit), settings, scan_link=links[1])
        copier = BigKeyCopier(links[2], target, source.identity, target_server.identity, settings,
                              chunk_bytes=CHUNK_BYTES, max_command_bytes=max_command_bytes, max_value_bytes=bulk)
        writer = TargetWriter(target, converter, options.on_incompatible, settings, source_db=unit.source_db,
                              restore_limit=min(bulk, threshold) if threshold else bulk, copier=copier,
                              types=frozenset(options.selection.types), dry_run=options.dry_run)
        replace = options.replace or (state.may_replace and (recovering or self.resumed or unit.recovering))
        pump = Pump(reader.batches(state.cursor))
        page = state.tally.fresh()
        try:
            for batch in pump:
                tally = state.tally.fresh()
                writer.write(batch.items, tally, replace=replace, retry_replace=state.may_replace)
                page.add(tally)
                self.processed += len(batch.items)
                if self.progress is not None:
                    self.progress(len(batch.items), tally.bytes)
                if batch.cursor is None:
                    continue  # more of this SCAN page follows: the cursor cannot move yet
                state.tally.add(page)
                page = state.tally.fresh()
                state.cursor, state.done = batch.cursor, batch.cursor == 0
                if not options.dry_run:
                    self._save_every(options.checkpoint_interval)
        finally:
            pump.stop()
            self._save()
            for link in links:
                link.close()
            source.close()
        if reader.probe_disabled:
            self.notes.append(f"size probe unavailable ({reader.probe_disabled}); big keys were detected from their "
                              "DUMP size")

    def _note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def _restart(self, state: DbState, why: str) -> None:
        state.cursor, state.done, state.tally = 0, False, state.tally.fresh()
        self.resumed_at = 0
        self.notes.append(f"shard {self.unit.shard_text}: {why}")
        log.warning("shard restarted", unit=self.unit.name, why=why)

    def _save_every(self, interval: float) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save_every(interval)

    def _save(self) -> None:
        if self.checkpoint is not None:
            self._save_to(self.checkpoint)

    def _save_to(self, checkpoint: Checkpoint) -> None:
        if not self.unit.config.options.dry_run:
            checkpoint.save()

    # -- the outcome ----------------------------------------------------------------------------------------------

    def outcome(self, error: tuple[str, str, str] | None) -> UnitOutcome:
        state = self.checkpoint.dbs[self.unit.source_db] if self.checkpoint is not None else None
        tally = state.tally if state is not None else DbTally(self.unit.source_db, self.unit.target_db)
        return UnitOutcome(self.unit.name, tally.to_dict(), self.node.address if self.node else "",
                           time.monotonic() - self.started, self.processed, peak_rss_kib(),
                           time.process_time() - self.cpu_started, tuple(self.notes), self.resumed_at, error)

    def close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()


def _shard_of(topology: Topology, ranges: tuple[tuple[int, int], ...]) -> Shard | None:
    wanted = tuple(SlotRange(a, b) for a, b in ranges)
    return next((s for s in topology.shards if s.ranges == wanted), None)


def peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def error_class(name: str) -> type[MigrateError]:
    """The class of an error a worker returned by name (every MigrateError subclass takes (message, hint))."""
    pending: list[type[MigrateError]] = [MigrateError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending += cls.__subclasses__()
    return MigrationError
