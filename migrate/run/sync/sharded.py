"""--strategy sync from a cluster source into a standalone target: one follower per source primary (docs/sync.md,
"A cluster source").

    primary A --PSYNC--> ShardFollower A --(MULTI ... SET marker:A EXEC)--\
    primary B --PSYNC--> ShardFollower B --(MULTI ... SET marker:B EXEC)---+--> target
    primary C --PSYNC--> ShardFollower C --(MULTI ... SET marker:C EXEC)--/

Each follower is a SyncJob of its own (snapshot, translated stream, exactly once through its own marker key, partial
or full resync, its own checkpoint) with four differences, all because the target also holds the other shards' keys:

- A full resync of one shard cannot empty the target: it deletes the target's keys of that shard's slots (a SCAN of
  the target, the slot of each key computed here), then loads the shard's snapshot again.
- FLUSHALL or FLUSHDB on one primary empties only that primary: the follower does the same, by deleting the keys of
  its slots, then moves its marker past the command (a crash in between repeats the deletion, which is harmless).
- A failover: the link to the old primary breaks (or it becomes a replica); each reconnection reads the slot map
  again and continues on the primary that owns the shard's slots now, by partial resync (the promoted replica
  continues the old primary's replication history).
- A resharding of the source while it is followed (slots of one shard moving to another) would reorder a key's writes
  between two streams (its DEL on one, its RESTORE on the other): the slot map is checked every TOPOLOGY_SECONDS and
  at each reconnection, and a change fails the sync (resumable once the resharding is over: its shards resync).

The cutover (migrate.run.sync.cutover) pauses the writes of every primary, drains every link up to its own cut
point, compares the key counts summed over the primaries, unpauses them all, then runs the grace period.
One thread drives every follower in turn: the links receive into their spools in the background, so a follower that
waits (its snapshot loading) does not hold the others' streams back on the source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from migrate.cluster.sides import refuse_same_cluster, require_ready
from migrate.cluster.topology import Shard, SlotRange, Topology, discover, ranges_text
from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import ConfigError, ConnectError, MigrationError
from migrate.identity import refuse_same_server
from migrate.logs import get_logger
from migrate.rdb.rewrite import CLUSTER_SLOTS, key_slot
from migrate.rights import check_rights
from migrate.run.checkpoint import check_writable, read_sealed, sealed, write_atomic
from migrate.run.options import RunConfig
from migrate.run.result import DbReport, FunctionsReport, ResyncEvent, RunResult, ShardSyncReport, SyncReport
from migrate.run.spool import check_space, spool_folder
from migrate.run.sync.api import SyncJob, replication_refused, rights_context
from migrate.run.sync.control import SyncControl
from migrate.run.sync.cutover import summed_keyspace, target_keyspace
from migrate.run.sync.follow import RECONNECT_SECONDS, Scope, drive, refuse_auto_cutover, remove_leftovers
from migrate.run.sync.report import Reporter
from migrate.run.sync.state import SyncState
from migrate.run.tally import DbTally
from migrate.server import Server
from migrate.stream import MARKER_DB, Applier, TargetCommand, Unit, is_marker_key
from migrate.stream.slotapply import SlotApplier
from migrate.wire import Channel

log = get_logger("migrate.sync")

MANIFEST_FORMAT: Final = "sync-cluster-1"
TOPOLOGY_SECONDS: Final = 5.0  # how often the source's slot map is read again (a resharding fails the sync)
SCAN_COUNT: Final = 1000
FLUSHES: Final = frozenset({b"flushall", b"flushdb"})


def sync_cluster(config: RunConfig, control: SyncControl, seed: Server, target: Server, started: float,
                 target_topology: Topology | None) -> RunResult:
    """Follow every primary of the cluster `seed` belongs to until one cutover of them all (into a standalone
    target, or a cluster: `target_topology`)."""
    options, settings = config.options, config.common.connection
    topology = discover(config.common.seeds("source"), settings, role="source")
    if not isinstance(topology, Topology):
        raise ConfigError("the source stopped being a cluster node while it was read", "rerun")
    require_ready(topology, "source", settings)
    if target_topology is not None:
        refuse_same_cluster(topology, target_topology)
    check_writable(options.checkpoint)
    primaries: list[Server] = []
    job: ClusterSyncJob | None = None
    try:
        for shard in topology.shards:
            primaries.append(Server("source", shard.primary.endpoint, settings))
        for primary in primaries:
            refuse_same_server(primary.identity, target.identity, options.selection.database_pairs())
            refusal = replication_refused(primary)
            if refusal is not None:
                raise ConfigError(f"the source primary {primary.endpoint} refuses replication ({refusal}): a cluster "
                                  "source is followed through replication only",
                                  "grant the source user +psync +replconf, or use --strategy replay")
            check_rights("sync", {"source": (primary, 0), "target": (target, MARKER_DB)},
                         rights_context(config, primary, target))
        refuse_auto_cutover(options, primaries)
        state = SyncState(f"{topology.product} {topology.version} cluster of {len(topology.shards)} primaries "
                          f"(via {seed.endpoint})", target.identity.describe(), shards=[])
        reporter = Reporter(state, options.status_file, options.metrics_address).start()
        job = ClusterSyncJob(config, topology, primaries, target, state, control, reporter, target_topology)
        report = drive(job, options.checkpoint)
        return RunResult("sync", state.source, state.target, executed=True, dry_run=False, resumed=options.resume,
                         seconds=time.monotonic() - started, dbs=job.db_reports(), functions=job.functions(),
                         notes=tuple(state.notes), sync=report)
    finally:
        for server in [f.source for f in job.followers] if job is not None else primaries:
            server.close()  # a follower that followed a failover closed the primary it left


def clear_slots(nodes: Sequence[Endpoint], settings: ConnectionSettings, owned: bytes,
                dbs: Sequence[int] | None) -> int:
    """Delete the keys of the target's `nodes` (a server, or a cluster's primaries) whose slot is marked in `owned`
    (16384 flags), in `dbs` (None: every database that has keys); marker keys stay. The number deleted."""
    deleted = 0
    for node in nodes:
        deleted += sum(_clear_db(node, settings, owned, db) for db in (dbs if dbs is not None else
                                                                        _keyed_dbs(node, settings)))
    return deleted


def _keyed_dbs(node: Endpoint, settings: ConnectionSettings) -> list[int]:
    channel = Channel(node, settings, "target", 0)
    try:
        return sorted(summed_keyspace([channel.command(b"INFO", b"keyspace")]))
    finally:
        channel.close()


def _clear_db(node: Endpoint, settings: ConnectionSettings, owned: bytes, db: int) -> int:
    deleted = 0
    channel = Channel(node, settings, "target", db)
    try:
        cursor = b"0"
        while True:
            cursor, keys = channel.command(b"SCAN", cursor, b"COUNT", SCAN_COUNT)
            doomed = [k for k in keys if owned[key_slot(k)] and not is_marker_key(k)]
            if doomed:
                deleted += int(channel.command(b"UNLINK", *doomed))
            if cursor == b"0":
                return deleted
    finally:
        channel.close()


class ShardFollower(SyncJob):
    """A SyncJob following one source primary into a target that also holds the other shards' keys."""

    def __init__(self, job: ClusterSyncJob, shard: Shard, source: Server) -> None:
        state = SyncState(source.identity.describe(), job.target.identity.describe(), tally=job.state.tally,
                          notes=job.state.notes)
        super().__init__(job.config, source, job.target, state, job.control, job.reporter)
        self.cluster = job
        self.ranges = shard.ranges
        self.name = ranges_text(shard.ranges)
        slug = self.name.replace(",", "_")
        self.stream_id = f"sync:{slug}"
        self.checkpoint_path = shard_checkpoint(job.options.checkpoint, slug)
        folder = spool_folder(self.options.spool_dir)
        self.snapshot_path = folder / f"migrate-sync-{state.pid}.{slug}.rdb"
        self.stream_dir = folder / f"migrate-sync-{state.pid}.{slug}.stream"
        owned = bytearray(CLUSTER_SLOTS)
        for r in shard.ranges:
            owned[r.start:r.end + 1] = b"\x01" * r.count
        self.owned = bytes(owned)

    def fingerprint(self) -> dict[str, Any]:
        return {**self.cluster.fingerprint(), "shard": self.name}

    def note(self, text: str) -> None:
        super().note(f"shard {self.name}: {text}")

    def source_endpoint(self) -> Endpoint:
        """The primary that owns the shard's slots now (a failover moves them), read from the cluster."""
        endpoint = owner(self.cluster.read_topology(), self.ranges).primary.endpoint
        if endpoint != self.source.endpoint:
            old, self.source = self.source, Server("source", endpoint, self.settings)
            stale, self.offset_client = self.offset_client, Channel(endpoint, self.settings, "source", 0)
            for closer in (old, stale):
                with contextlib.suppress(Exception):
                    closer.close()
            self.note(f"its primary moved from {old.endpoint.address} to {endpoint.address} (a failover): following "
                      "the new one")
        return endpoint

    def empty_scope(self, reason: str) -> None:
        deleted = clear_slots(self.target_nodes(), self.settings, self.owned, self.scope.dbs)
        self.note(f"full resync ({reason}): the target's {deleted} keys of these slots deleted, the shard loaded again")

    def unit_sink(self, applier: Applier | SlotApplier) -> Callable[[Unit], None]:
        apply = applier.apply

        def sink(unit: Unit) -> None:
            for _, argv in unit.commands:
                if argv[0].lower() in FLUSHES:
                    self._flush_shard(applier, unit)
                    return
            apply(unit)
        return sink

    def _flush_shard(self, applier: Applier | SlotApplier, unit: Unit) -> None:
        """FLUSHALL / FLUSHDB on this primary: the keys of its slots deleted on the target, the unit's commands after
        it applied, the marker moved past it. The unit's commands before it are dropped: they wrote keys of these
        slots, which the flush deletes. (A crash in between repeats the deletion: harmless.)"""
        applier.flush()
        cleared: set[int] | None = set()
        kept: list[TargetCommand] = []
        for db, argv in unit.commands:
            name = argv[0].lower()
            if name == b"flushall":
                cleared, kept = None, []
            elif name == b"flushdb":
                if cleared is not None:
                    cleared.add(db)
                kept = [(d, a) for d, a in kept if d != db]
            else:
                kept.append((db, argv))
        deleted = clear_slots(self.target_nodes(), self.settings, self.owned,
                              self.scope.dbs if cleared is None else sorted(cleared))
        self.note(f"{'FLUSHALL' if cleared is None else 'FLUSHDB'} on the shard's primary at offset "
                  f"{unit.end_offset}: the target's {deleted} keys of these slots deleted")
        applier.apply(Unit(tuple(kept), unit.end_offset, unit.source_db, unit.group))
        applier.flush()

    def shard_report(self, cut: int | None) -> ShardSyncReport:
        return ShardSyncReport(self.name, self.source.endpoint.address, self.replid, self.applied[0],
                               self.state.full_resyncs, self.state.partial_resyncs, cut)

    def document(self) -> dict[str, Any]:
        st = self.state
        return {"slots": self.name, "primary": self.source.endpoint.address, "phase": st.phase, "replid": self.replid,
                "received_offset": st.received_offset, "applied_offset": self.applied[0], "resync": st.resync,
                "full_resyncs": st.full_resyncs, "partial_resyncs": st.partial_resyncs}


def follower(job: ClusterSyncJob, shard: Shard, source: Server, target_topology: Topology | None) -> ShardFollower:
    if target_topology is None:
        return ShardFollower(job, shard, source)
    from migrate.run.sync.into_cluster import ShardIntoCluster

    return ShardIntoCluster(job, shard, source).into(target_topology)


def owner(topology: Topology, ranges: Sequence[SlotRange]) -> Shard:
    """The shard holding exactly `ranges` in `topology`; ConnectError while its primary is failing or absent (the
    caller retries), MigrationError when the slots moved to other shards (a resharding)."""
    shard = topology.owner(ranges[0].start)
    if shard is None or shard.primary.failing:
        raise ConnectError(f"no live primary owns slots {ranges_text(ranges)} (a failover in progress)")
    if shard.ranges != tuple(ranges):
        raise MigrationError(f"the source cluster was resharded during the sync: slots {ranges_text(ranges)} of one "
                             f"primary are now {ranges_text(shard.ranges)}, so a key's writes could reach the target "
                             "out of order through two streams",
                             "let the resharding finish, then rerun with --resume (the shards whose slots changed "
                             "are loaded again)")
    return shard


def shard_checkpoint(path: Path, slug: str) -> Path:
    return path.with_name(f"{path.name}.shard-{slug}")


class ClusterSyncJob:
    """Every follower, their shared figures, the manifest that binds a resume to the same shards, and the cutover."""

    strategy = "sync"
    resumable = True

    def __init__(self, config: RunConfig, topology: Topology, primaries: Sequence[Server], target: Server,
                 state: SyncState, control: SyncControl, reporter: Reporter,
                 target_topology: Topology | None = None) -> None:
        self.config = config
        self.options = config.options
        self.settings = config.common.connection
        self.topology = topology
        self.seeds = list(dict.fromkeys([*config.common.seeds("source"), *topology.seeds()]))
        self.target = target
        self.state = state
        self.control = control
        self.reporter = reporter
        self.scope = Scope.of(self.options.selection)
        self.followers = [follower(self, shard, primary, target_topology)
                          for shard, primary in zip(topology.shards, primaries, strict=True)]
        self._checked = time.monotonic()
        state.gather = self._gather

    # -- the whole sync ---------------------------------------------------------------------------------------------

    def run(self) -> SyncReport:
        from migrate.run.sync.cutover import cut_over_when_asked

        check_space([f.source for f in self.followers], spool_folder(self.options.spool_dir))
        self.reporter.source_offset = self._source_offset
        self.reporter.waiting_since = self._waiting_since
        if self.options.resume:
            self._resume()
        else:
            self._start()
        cutover = cut_over_when_asked(self)
        cuts = dict(cutover.shard_cuts)
        self.state.phase, self.state.state = "done", "done"
        for f in self.followers:
            f.state.phase, f.state.state = "done", "done"
            assert f.checkpoint is not None
            f.checkpoint.remove()
        self.options.checkpoint.unlink(missing_ok=True)
        resyncs = sorted((dataclasses.replace(e, reason=f"shard {f.name}: {e.reason}") for f in self.followers
                          for e in f.resyncs), key=lambda e: e.at)
        return SyncReport("replication", None, sum(f.applied[0] for f in self.followers), tuple[ResyncEvent, ...](
            resyncs), self.state.tally.to_dict(), self.state.snapshot_loads, cutover,
            shards=tuple(f.shard_report(cuts.get(f.name)) for f in self.followers))

    def _start(self) -> None:
        options = self.options
        first = self.followers[0]  # the target's side is the same for every follower
        held = self.scope.refuse_held(first.target_held(), options)
        if held and options.flush_target:
            first.flush_scope()
            self.note(f"--flush-target: target {self.scope.describe()} emptied")
        owns = not held or options.flush_target
        write_atomic(options.checkpoint, sealed({"format": MANIFEST_FORMAT, "fingerprint": self.fingerprint(),
                                                 "shards": [f.name for f in self.followers]}))
        for f in self.followers:
            f.open_checkpoint(owns)
        links = [f.connect(None, 0, 0) for f in self.followers]  # every primary makes its snapshot at once
        for f, link in zip(self.followers, links, strict=True):
            f.first_sync(link)

    def _resume(self) -> None:
        data = read_sealed(self.options.checkpoint, MANIFEST_FORMAT, "a checkpoint of `migrate run --strategy sync` "
                           "from a cluster source", self.fingerprint(), "resume with the same source cluster, target "
                           "and databases, or start over without --resume")
        names = [f.name for f in self.followers]
        if list(data.get("shards") or []) != names:
            raise ConfigError(f"the source cluster's shards changed since the interrupted sync (then slots "
                              f"{'; '.join(data.get('shards') or [])}, now {'; '.join(names)})",
                              "start over without --resume (--flush-target --yes empties the target first)")
        remove_leftovers(spool_folder(self.options.spool_dir), "migrate-sync-")
        for f in self.followers:
            f.resume()

    def fingerprint(self) -> dict[str, Any]:
        sel = self.options.selection
        return {"strategy": "sync", "source": "cluster", "target": str(self.target.endpoint.with_db(0)),
                "db_map": [list(p) for p in sel.db_map], "dbs": list(sel.dbs)}

    # -- following -------------------------------------------------------------------------------------------------

    def pump(self, timeout: float = 0.2) -> int:
        """Each follower in turn, its share of `timeout` at most waiting for its link."""
        share = timeout / len(self.followers)
        handled = sum(f.pump(share) for f in self.followers)
        if self.state.phase in ("snapshot", "streaming"):
            self.state.phase = "snapshot" if any(f.state.phase == "snapshot" for f in self.followers) else "streaming"
        if time.monotonic() - self._checked >= TOPOLOGY_SECONDS:
            self._check_topology()
        return handled

    def read_topology(self) -> Topology:
        """The source cluster's slot map now, from any of its nodes (ConnectError while none answers)."""
        topology = discover(self.seeds, self.settings, role="source")
        if not isinstance(topology, Topology):
            raise MigrationError("a source node answered as a standalone server: the source is no longer the cluster "
                                 "the sync started on")
        return topology

    def _check_topology(self) -> None:
        self._checked = time.monotonic()
        with contextlib.suppress(ConnectError):  # unreachable now: the followers' own link losses say so
            topology = self.read_topology()
            for f in self.followers:
                with contextlib.suppress(ConnectError):
                    owner(topology, f.ranges)

    def followed(self) -> list[tuple[ShardFollower, Endpoint]]:
        """Every follower with the primary that owns its slots now: the ones the cutover pauses (a failover in
        progress is waited out, RECONNECT_SECONDS at most)."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                topology = self.read_topology()
                return [(f, owner(topology, f.ranges).primary.endpoint) for f in self.followers]
            except ConnectError:
                if time.monotonic() > deadline:
                    raise
                self.pump(0.5)

    def target_counts(self) -> dict[int, int]:
        """Keys per target database, every follower's marker keys left out."""
        counts = target_keyspace(self.followers[0].target_nodes(), self.settings)
        counts[MARKER_DB] = counts.get(MARKER_DB, 0) - sum(f.marker_count() for f in self.followers)
        return counts

    def note(self, text: str) -> None:
        self.state.notes.append(text)
        log.warning("sync", note=text)

    def at_cut_point(self) -> None:
        """Nothing to do at the cut point: the target takes writes all along."""

    def target_writable(self) -> bool:
        return True

    def finish_cutover(self) -> None:
        for f in self.followers:
            f.finish_cutover()

    def failed(self, exc: BaseException) -> None:
        """Nothing to undo: every follower's checkpoint and marker say where it stands."""

    def close(self) -> None:
        for f in self.followers:
            with contextlib.suppress(Exception):
                f.close()

    # -- what the reporter shows -----------------------------------------------------------------------------------

    def _gather(self) -> None:
        """The figures of every follower summed into the job's state (the reporter's thread, before each document)."""
        st, states = self.state, [f.state for f in self.followers]
        st.received_offset = sum(s.received_offset for s in states)
        st.applied_offset = sum(f.applied[0] for f in self.followers)
        for name in ("snapshot_bytes", "snapshot_keys_loaded", "snapshot_loads", "full_resyncs", "partial_resyncs",
                     "source_reconnects", "target_reconnects"):
            setattr(st, name, sum(getattr(s, name) for s in states))
        totals = [s.snapshot_keys_total for s in states]
        st.snapshot_keys_total = None if None in totals else sum(t or 0 for t in totals)
        st.shards = [f.document() for f in self.followers]

    def _source_offset(self) -> int | None:
        offsets = [f.read_source_offset() for f in self.followers]
        return None if None in offsets else sum(o or 0 for o in offsets)

    def _waiting_since(self) -> float | None:
        since = [s for f in self.followers if (s := f.waiting_since()) is not None]
        return min(since) if since else None

    # -- the result ------------------------------------------------------------------------------------------------

    def db_reports(self) -> tuple[DbReport, ...]:
        merged: dict[int, DbTally] = {}
        for f in self.followers:
            for db, tally in f.tallies.items():
                merged.setdefault(db, DbTally(tally.source_db, tally.target_db)).add(tally)
        return tuple(DbReport.of(t) for _, t in sorted(merged.items()))

    def functions(self) -> FunctionsReport | None:
        return next((f.functions for f in self.followers if f.functions is not None), None)
