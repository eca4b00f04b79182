"""Strategy 4, sync: migrate is a replica of the source. The snapshot goes through the per-key conversion into the
target (as reload loads it, without a flush unless --flush-target), then the source's write stream is translated for
the target release and applied exactly once (a marker key in each MULTI/EXEC), until a cutover in a short write pause.

    source --PSYNC--> ReplicaLink --snapshot file--> check_snapshot, load_snapshot --> target (RESTORE per key)
                           |--stream spool--> Translator --> Applier (MULTI ... SET marker EXEC) --> target
                           `<-- REPLCONF ACK <offset the target acknowledged>

The target's marker is the truth about where it stands: a lost source link continues with PSYNC from the marker's
offset (partial resync), so does `--resume` after a kill; a source that restarted or outran its backlog, or a target
that lost acknowledged writes without keeping the marker, means a full resync, which empties the sync's target
databases first (see `_full_sync`) so that keys deleted on the source do not survive. docs/sync.md has the details.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from migrate.cluster.topology import Topology
from migrate.errors import ConfigError, ConnectError, MigrationError
from migrate.logs import get_logger
from migrate.rdb.reader import RdbReader
from migrate.replication import LinkLostError, LinkOptions, RawRun, ReplicaLink
from migrate.rights import Context, check_rights
from migrate.run.checkpoint import check_writable
from migrate.run.load import check_snapshot, load_functions, load_snapshot
from migrate.run.options import RunConfig
from migrate.run.result import DbReport, FunctionsReport, RunResult, SyncReport
from migrate.run.session import check_writable_target, flush_dbs, open_servers
from migrate.run.spool import check_space, spool_folder
from migrate.run.sync.checkpoint import SyncCheckpoint
from migrate.run.sync.control import SyncControl
from migrate.run.sync.follow import (
    CHECKPOINT_SECONDS,
    RECONNECT_SECONDS,
    FollowJob,
    Scope,
    drive,
    refuse_auto_cutover,
    remove_leftovers,
    replication_offset,
    translated,
)
from migrate.run.sync.follow import fingerprint as follow_fingerprint
from migrate.run.sync.report import Reporter
from migrate.run.sync.state import SyncState
from migrate.run.tally import DbTally
from migrate.server import Server
from migrate.stream import (
    MARKER_DB,
    Applier,
    ApplyOptions,
    Marker,
    TargetLostError,
    TargetProfile,
    Translator,
    Unit,
    marker_key,
    read_marker,
    remove_marker,
)
from migrate.stream.marker import SYNC_STREAM_ID, marker_value
from migrate.stream.slotapply import SlotApplier
from migrate.wire import Channel

__all__ = ["RECONNECT_SECONDS", "Scope", "SyncJob", "replication_offset", "sync"]

log = get_logger("migrate.sync")

STREAM_ID: Final = SYNC_STREAM_ID  # the marker key: __migrate:stream-applied:sync in target db 0
READ_COMMANDS: Final = 2000  # commands parsed per round (the applier batches them by 1,000)


def sync(config: RunConfig, control: SyncControl | None = None) -> RunResult:
    """Follow the source until the cutover; raises a MigrateError subclass on failure (the checkpoint is kept)."""
    started = time.monotonic()
    options = config.options
    control = control or SyncControl()
    source, target = open_servers(config)
    try:
        target_topology = None
        if target.identity.mode == "cluster":
            from migrate.run.sync.into_cluster import target_cluster

            target_topology = target_cluster(config, source)
        else:
            check_writable_target(target)
        if source.identity.mode == "cluster":
            from migrate.run.sync.sharded import sync_cluster

            return sync_cluster(config, control, source, target, started, target_topology)
        refuse_auto_cutover(options, [source])
        check_writable(options.checkpoint)
        refusal = replication_refused(source)
        if refusal is not None:
            if target_topology is not None:
                raise ConfigError(f"the source refuses replication ({refusal}); into a cluster target the sync "
                                  "follows the source through replication only",
                                  "grant the source user +psync +replconf, or use --strategy replay")
            from migrate.run.sync.notify import follow_notifications

            return follow_notifications(config, source, target, control, refusal, started)
        check_rights("sync", {"source": (source, 0), "target": (target, MARKER_DB)},
                     rights_context(config, source, target))
        state = SyncState(source.identity.describe(), target.identity.describe())
        reporter = Reporter(state, options.status_file, options.metrics_address).start()
        job = SyncJob(config, source, target, state, control, reporter) if target_topology is None else \
            into_cluster_job(config, source, target, state, control, reporter, target_topology)
        report = drive(job, options.checkpoint)
        return RunResult("sync", source.identity.describe(), target.identity.describe(), executed=True, dry_run=False,
                         resumed=options.resume, seconds=time.monotonic() - started,
                         dbs=tuple(DbReport.of(t) for _, t in sorted(job.tallies.items())), functions=job.functions,
                         notes=tuple(state.notes), sync=report)
    finally:
        source.close()
        target.close()


def into_cluster_job(config: RunConfig, source: Server, target: Server, state: SyncState, control: SyncControl,
                     reporter: Reporter, topology: Topology) -> SyncJob:
    from migrate.run.sync.into_cluster import ClusterTargetSync

    return ClusterTargetSync(config, source, target, state, control, reporter).into(topology)


def rights_context(config: RunConfig, source: Server, target: Server) -> Context:
    options = config.options
    return Context(source.identity.capabilities, target.identity.capabilities, options.flush_target,
                   selected_dbs=bool(options.selection.dbs or options.selection.db_map),
                   source_cluster=source.identity.mode == "cluster", target_cluster=target.identity.mode == "cluster")


def replication_refused(source: Server) -> str | None:
    """Why the source will not serve us as a replica (PSYNC or REPLCONF renamed, or not granted), or None."""
    from migrate.rights import Right, probe

    rights = (Right("psync", ("?", "-1"), ""), Right("replconf", ("listening-port", "0"), ""))
    channel = Channel(source.endpoint, source.settings, "source", 0)
    try:
        found = probe(channel, "source", rights, b"migrate:probe")
    finally:
        channel.close()
    missing = [*(f"{r.command.upper()} is renamed or disabled" for r in found.unknown),
               *(f"the user may not run {r.command.upper()}" for r in found.denied)]
    return "; ".join(missing) if missing else None


def fingerprint(config: RunConfig, source: Server, target: Server) -> dict[str, Any]:
    return follow_fingerprint("sync", config, source, target)


class SyncJob(FollowJob):
    """One sync from its first snapshot to its cutover: the link, the translator, the applier and their recovery."""

    def __init__(self, config: RunConfig, source: Server, target: Server, state: SyncState, control: SyncControl,
                 reporter: Reporter) -> None:
        super().__init__(config, source, target, state, control, reporter)
        self.profile = TargetProfile.of(target.client)
        folder = spool_folder(self.options.spool_dir)
        self.snapshot_path = folder / f"migrate-sync-{state.pid}.rdb"
        self.stream_dir = folder / f"migrate-sync-{state.pid}.stream"
        self.stream_id = STREAM_ID  # the marker key's stream id (a cluster source: one per shard)
        self.checkpoint_path = self.options.checkpoint
        self.applier: Applier | SlotApplier | None = None
        self.target_topology: Topology | None = None  # a cluster target (migrate.run.sync.into_cluster)
        self.translator: Translator | None = None
        self.tallies: dict[int, DbTally] = {}
        self.functions: FunctionsReport | None = None

    # -- the whole sync ---------------------------------------------------------------------------------------------

    def run(self) -> SyncReport:
        from migrate.run.sync.cutover import cut_over_when_asked

        check_space(self.source, self.snapshot_path.parent)
        self.reporter.source_offset = self.read_source_offset
        self.reporter.waiting_since = self.waiting_since
        if self.options.resume:
            self.resume()
        else:
            self._start()
        cutover = cut_over_when_asked(self)
        self.state.phase, self.state.state = "done", "done"
        assert self.checkpoint is not None
        self.checkpoint.remove()
        return SyncReport("replication", self.replid, self.applied[0], tuple(self.resyncs),
                          self.state.tally.to_dict(), self.state.snapshot_loads, cutover)

    def _start(self) -> None:
        held = self.scope.refuse_held(self.target_held(), self.options)
        options = self.options
        self.open_checkpoint(owns=not held or options.flush_target)
        link = self.connect(None, 0, 0)
        self._full_sync(link, "first sync", flush=bool(held) and options.flush_target)

    def open_checkpoint(self, owns: bool) -> None:
        """A new checkpoint; `owns`: the target databases were empty (or emptied), so a full resync may empty them."""
        self.checkpoint = SyncCheckpoint(self.checkpoint_path, self.fingerprint(), owns_target=owns)
        self.checkpoint.save()

    def first_sync(self, link: ReplicaLink) -> None:
        """Load the first snapshot of `link` (the target databases as they are) and start its stream."""
        self._full_sync(link, "first sync", flush=False)

    def resume(self) -> None:
        """Continue an interrupted sync from the target's marker (partial resync), or resync in full."""
        remove_leftovers(self.snapshot_path.parent, "migrate-sync-")
        self.checkpoint = SyncCheckpoint.load(self.checkpoint_path, self.fingerprint())
        cp = self.checkpoint
        marker = self.read_marker()
        if marker is None or cp.replid is None:
            why = ("the target holds no marker of this sync" if marker is None else
                   "the interrupted sync had not finished its snapshot")
            self.note(f"resume: {why}: full resync")
            self._full_sync(self.connect(None, 0, 0), f"resume: {why}", flush=True)
            return
        if marker.offset != cp.offset:
            self.note(f"resume: the checkpoint says offset {cp.offset}, the target's marker {marker.offset}: "
                      f"continuing from the marker (what the target holds)")
        self.replid, self.applied = cp.replid, (marker.offset, marker.source_db)
        self._open_stream("resume after an interruption")

    def fingerprint(self) -> dict[str, Any]:
        """What binds the checkpoint to this job."""
        return fingerprint(self.config, self.source, self.target)

    # -- connecting ---------------------------------------------------------------------------------------------------

    def link_options(self) -> LinkOptions:
        return LinkOptions(diskless=self.options.diskless_sync, snapshot_path=self.snapshot_path,
                           spool_dir=self.stream_dir)

    def _open_stream(self, why: str) -> None:
        """Continue from the target's position: a partial resync, or a full one when the source cannot continue."""
        offset, db = self.applied
        link = self.connect(self.replid, offset, db)
        if not link.sync.partial:
            self._full_sync(link, f"{why}: {link.sync.reason}", flush=True)
            return
        self.record("partial", f"{why}: {link.sync.reason}", offset)
        self.link, self.replid = link, link.sync.replid
        self._new_stream(offset, db)
        self.state.phase = "streaming"

    def _new_stream(self, offset: int, db: int) -> None:
        """A fresh translator and applier from (offset, db), the position the target holds."""
        if self.applier is not None:
            self.applier.close()
        self.translator = Translator(self.profile, policy=self.options.on_incompatible, db_map=self.scope.db_map,
                                     source_db=db, tally=self.state.tally)
        self.applier = self.new_applier(offset)
        self.applied = (offset, db)
        self.state.applied_offset = offset
        self._save(force=True)  # a kill from now on resumes from here, not from a snapshot

    # -- the snapshot -------------------------------------------------------------------------------------------------

    def _full_sync(self, link: ReplicaLink, reason: str, *, flush: bool) -> None:
        """Load the link's snapshot. A resync first empties the sync's target databases: keys deleted on the source
        since the last snapshot must not survive; databases that were not empty when the sync began are not the
        sync's to empty, so a full resync is refused there."""
        assert link.sync.replid is not None
        self.record("full", reason, link.sync.offset)
        self.link, self.replid = link, link.sync.replid
        self.state.phase, self.state.replid = "snapshot", link.sync.replid
        if self.applier is not None:
            self.applier.close()
            self.applier = None
        assert self.checkpoint is not None
        if flush and not self.checkpoint.owns_target:
            raise MigrationError(f"a full resync is needed ({reason}), but the target's databases held keys of their "
                                 "own when the sync began: emptying them would delete those, keeping them would keep "
                                 "keys the source has deleted since", "start over with --flush-target --yes (the "
                                 "target databases are emptied), or with --strategy replay")
        self.checkpoint.phase = "snapshot"
        self.checkpoint.save()
        path = self._wait_snapshot(link)
        check_snapshot(path, self.config, self.target)
        if flush:
            self._delete_marker()
            self.empty_scope(reason)
        self._load(path)
        self._write_marker(link.sync.offset)
        link.ack(link.sync.offset, flush=True)
        self._new_stream(link.sync.offset, 0)  # after a full sync the primary starts its stream with a SELECT
        self.state.phase = "streaming"

    def empty_scope(self, reason: str) -> None:
        """Before a full resync's load: the sync's target databases emptied."""
        self.flush_scope()
        self.note(f"full resync ({reason}): target {self.scope.describe()} emptied and loaded again")

    def new_applier(self, offset: int) -> Applier | SlotApplier:
        """The applier of a stream that starts at `offset`, the position the target holds."""
        return Applier(self.target.endpoint, self.settings, self.stream_id, ApplyOptions(), tally=self.state.tally,
                       on_applied=self._applied, held_offset=offset)

    def markers(self) -> tuple[bytes, ...]:
        return (marker_key(self.stream_id),)

    def target_held(self) -> dict[int, int]:
        """Keys per target database of the scope, now."""
        return self.scope.held(self.target)

    def flush_scope(self) -> None:
        """The sync's target databases emptied."""
        flush_dbs(self.target, None if self.scope.dbs is None else list(self.scope.dbs))

    def _wait_snapshot(self, link: ReplicaLink) -> Path:
        while link.status().phase in ("handshake", "preamble", "snapshot"):
            self.state.snapshot_bytes = link.status().snapshot_bytes
            time.sleep(0.2)
        info = link.wait_snapshot(5)
        self.state.snapshot_bytes = info.size
        log.info("snapshot received", bytes=info.size, seconds=round(info.seconds, 3), diskless=info.diskless,
                 waited=round(link.sync.waited, 3))
        assert info.path is not None
        return info.path

    def _load(self, path: Path) -> None:
        total = sum(self.source.identity.keyspace.values())
        self.state.snapshot_keys_total, self.state.snapshot_keys_loaded = total, 0

        def loaded(keys: int, nbytes: int) -> None:
            self.state.snapshot_keys_loaded += keys

        try:
            with RdbReader(str(path)) as reader:
                outcome = load_snapshot(self.config, self.target, reader, total=total, description="sync snapshot",
                                        on_batch=loaded, target_topology=self.target_topology)
        finally:
            path.unlink(missing_ok=True)
        self.tallies = outcome.tallies
        self.functions = self.load_functions(outcome.extras.functions)
        self.state.notes += [n for n in outcome.extras.notes if n not in self.state.notes]
        self.state.snapshot_loads += 1

    def load_functions(self, codes: list[bytes]) -> FunctionsReport | None:
        return load_functions(self.target, self.settings, codes)

    # -- the marker ---------------------------------------------------------------------------------------------------

    def _marker_channel(self) -> Channel:
        return Channel(self.target.endpoint, self.settings, "target", MARKER_DB)

    def _write_marker(self, offset: int) -> None:
        channel = self._marker_channel()
        try:
            value = marker_value(offset, 0, int(time.time() * 1000))
            reply = channel.command(b"SET", marker_key(self.stream_id), value)
        finally:
            channel.close()
        if reply != b"OK":
            raise MigrationError(f"the target refused to record the stream position: {reply}")

    def _delete_marker(self) -> None:
        channel = self._marker_channel()
        try:
            channel.command(b"DEL", marker_key(self.stream_id))
        finally:
            channel.close()

    def read_marker(self) -> Marker | None:
        """The target's marker, waiting (RECONNECT_SECONDS at most) while the target is unreachable or loading."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            client = None
            try:
                client = self.target.db_client(MARKER_DB)
                return read_marker(client, self.stream_id)
            except ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                if client is not None:
                    client.close()

    # -- streaming ----------------------------------------------------------------------------------------------------

    def _applied(self, offset: int, db: int) -> None:
        self.applied = (offset, db)
        self.state.applied_offset = offset
        if self.link is not None and offset <= self.link.position.offset:
            self.link.ack(offset)

    def pump(self, timeout: float = 0.2) -> int:
        """Read what the link holds, translate and apply it; recover from lost links. The commands handled."""
        try:
            return self._pump(timeout)
        except LinkLostError as exc:
            self.state.source_reconnects += 1
            log.warning("source link lost", error=exc.message)
            self._continue_after_link_loss(exc)
        except TargetLostError as exc:
            self.state.target_reconnects += 1
            log.warning("target lost acknowledged writes", error=exc.message)
            self._continue_after_target_loss(exc)
        return 0

    def _pump(self, timeout: float) -> int:
        link, translator, applier = self.link, self.translator, self.applier
        assert link is not None and translator is not None and applier is not None
        if self.observer is not None or not isinstance(applier, Applier):  # the grace period looks at every
            handled = self._apply_commands(link, translator, applier, timeout)  # command; a cluster takes no raw runs
        else:
            handled = self._apply_split(link, translator, applier, timeout)
        self.state.received_offset = link.received
        if handled < READ_COMMANDS:
            applier.flush()  # caught up with what arrived: nothing waits for a full batch
        self.state.target_reconnects = max(self.state.target_reconnects, applier.reconnects)
        self._save()
        return handled

    def _apply_split(self, link: ReplicaLink, translator: Translator, applier: Applier, timeout: float) -> int:
        before = translator.tally.commands
        sink = self.unit_sink(applier)
        for part in translated(link, translator, READ_COMMANDS, timeout):
            if isinstance(part, RawRun):
                db = translator.db
                applier.apply_raw(translator.target_db(db) or 0, part.data, part.commands, part.offset, db)
            else:
                sink(part)
        return translator.tally.commands - before

    def _apply_commands(self, link: ReplicaLink, translator: Translator, applier: Applier | SlotApplier,
                        timeout: float) -> int:
        batch = link.read_commands(READ_COMMANDS, timeout=timeout)
        if batch and self.observer is not None:
            self.observer(batch)
        if batch:
            received = link.arrived_ms(batch[0].offset)
            feed, apply = translator.feed, self.unit_sink(applier)
            for argv, offset, _ in batch:
                unit = feed(argv, offset, received)
                if unit is not None:
                    apply(unit)
        return len(batch)

    def unit_sink(self, applier: Applier | SlotApplier) -> Callable[[Unit], None]:
        """Where translated units go (a source shard's follower looks at each first)."""
        return applier.apply

    def _continue_after_link_loss(self, exc: LinkLostError) -> None:
        if self.applier is not None:
            self.applier.flush()  # what was translated is on the target: continue right after it
        if self.link is not None:
            self.link.close()
        self._open_stream(f"the source link was lost ({exc.message})")

    def _continue_after_target_loss(self, exc: TargetLostError) -> None:
        if self.link is not None:
            self.link.close()
        marker = self.read_marker()
        if marker is None:
            self.note(f"the target lost its data ({exc.message}): full resync")
            self._full_sync(self.connect(None, 0, 0), "the target lost its data", flush=True)
            return
        self.note(f"the target went back to offset {marker.offset} ({exc.message}): the stream continues from there")
        self.applied = (marker.offset, marker.source_db)
        self._open_stream("the target lost acknowledged writes")

    def _save(self, force: bool = False) -> None:
        cp = self.checkpoint
        if cp is None:
            return
        cp.phase, cp.replid, (cp.offset, cp.db) = "streaming", self.replid, self.applied
        cp.save() if force else cp.save_every(CHECKPOINT_SECONDS)

    def close(self) -> None:
        """Stop everything; the checkpoint keeps the last acknowledged position (the marker has it too)."""
        super().close()
        if self.applier is not None:
            with contextlib.suppress(Exception):
                self.applier.close()
        if self.checkpoint is not None and self.state.state != "done":
            with contextlib.suppress(ConfigError):
                if self.checkpoint.phase == "streaming":
                    self.checkpoint.replid, (self.checkpoint.offset, self.checkpoint.db) = self.replid, self.applied
                self.checkpoint.save()
        self.snapshot_path.unlink(missing_ok=True)
        shutil.rmtree(self.stream_dir, ignore_errors=True)

    # -- the cutover ----------------------------------------------------------------------------------------------

    def finish_cutover(self) -> None:
        """The last batch applied, the marker removed, the source told."""
        if self.applier is not None:
            self.applier.flush()
        client = self.target.db_client(MARKER_DB)
        try:
            remove_marker(client, self.stream_id)
        finally:
            client.close()
        if self.link is not None:
            self.link.ack(self.applied[0], flush=True)


def with_options(config: RunConfig, **changes: Any) -> RunConfig:
    return dataclasses.replace(config, options=dataclasses.replace(config.options, **changes))
