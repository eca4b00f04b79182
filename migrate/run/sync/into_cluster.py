"""--strategy sync into a cluster target: what changes on the target's side (docs/sync.md, "A cluster target").

The stream goes through migrate.stream.slotapply.SlotApplier (one transaction per slot and batch, each with its slot's
marker, then the floor marker), the snapshot through the loader's slot router (migrate.run.load.KeyLoader), and what
a standalone target does in one place runs on every primary: emptying the scope, counting keys, loading functions.

- Where the target stands: the floor marker, and per slot the slot markers (commands at or below a slot's marker are
  skipped when the stream is replayed from the floor).
- A primary that lost writes it had acknowledged (a restart without persistence, a failover that lost unreplicated
  writes): its slot markers went back with its data, but the floor may not have (it lives in one slot). The stream
  cannot safely continue from the floor, so the sync resyncs in full (the target's scope emptied, the snapshot
  loaded again).
- The target's databases: db 0 only (a cluster below Valkey 9.0 has no other; the slot transactions run in db 0):
  a source database other than 0 must be mapped onto it (--db-map N:0) or left out (--db 0).
"""

from __future__ import annotations

import time
from typing import Final, Self

from migrate.cluster.sides import cluster_databases, require_ready
from migrate.cluster.topology import Topology, read_topology
from migrate.config import Endpoint
from migrate.errors import ConfigError
from migrate.logs import get_logger
from migrate.run.options import RunConfig
from migrate.run.result import FunctionsReport
from migrate.run.sync.api import SyncJob
from migrate.run.sync.cutover import target_keyspace
from migrate.run.sync.sharded import ShardFollower
from migrate.server import Server
from migrate.stream import Marker, TargetLostError
from migrate.stream.marker import marker_key, marker_value
from migrate.stream.slotapply import ClusterNodes, SlotApplier, read_markers, remove_markers

log = get_logger("migrate.sync")

TARGET_DB: Final = 0


def target_cluster(config: RunConfig, source: Server) -> Topology:
    """The target cluster, fit to be written (healthy, no slot migrating), and the sync's databases all mapped to db
    0; else a clear refusal before anything is written."""
    settings = config.common.connection
    topology = read_topology(config.common.seeds("target"), settings, role="target")
    require_ready(topology, "target", settings)
    selection = config.options.selection
    followed = selection.source_dbs(source.identity.keyspace) if (selection.dbs or selection.db_map) else sorted(
        db for db, keys in source.identity.keyspace.items() if keys)
    elsewhere = sorted({selection.target_db(db) for db in followed} - {TARGET_DB})
    if elsewhere:
        have = cluster_databases(topology, settings)
        raise ConfigError(f"--strategy sync writes into a cluster's db 0 only, and the source's databases "
                          f"{', '.join(map(str, followed))} would go to db {', '.join(map(str, elsewhere))} (the "
                          f"target cluster has {have} database(s))",
                          "map them onto db 0 with --db-map N:0, or follow db 0 alone with --db 0")
    return topology


class IntoCluster(SyncJob):
    """A SyncJob (or, mixed in after ShardFollower, a shard's follower) whose target is a cluster."""

    slot_markers: dict[int, int]

    def into(self, topology: Topology) -> Self:
        self.target_topology = topology
        self.slot_markers = {}
        return self

    def nodes(self) -> ClusterNodes:
        """Connections of the caller's own, closed by `with` (an applier closes its nodes with itself)."""
        assert self.target_topology is not None
        return ClusterNodes(self.target_topology, self.settings)

    def new_applier(self, offset: int) -> SlotApplier:
        return SlotApplier(self.nodes(), self.stream_id, tally=self.state.tally, on_applied=self._applied,
                           slot_markers=self.slot_markers)

    def target_nodes(self) -> list[Endpoint]:
        with self.nodes() as nodes:
            self.target_topology = nodes.refresh()
            return nodes.primaries()

    def target_held(self) -> dict[int, int]:
        held = target_keyspace(self.target_nodes(), self.settings)
        dbs = self.scope.dbs
        return {db: n for db, n in held.items() if n and (dbs is None or db in dbs)}

    def flush_scope(self) -> None:
        command = (b"FLUSHALL",) if self.scope.dbs is None else (b"FLUSHDB",)
        with self.nodes() as nodes:
            failed = [r for r in nodes.each_primary(command) if isinstance(r, Exception)]
        if failed:
            raise ConfigError(f"the target cluster refused {command[0].decode()}: {failed[0]}",
                              "grant the target user +flushall / +flushdb (README \"Minimum rights\")")

    def load_functions(self, codes: list[bytes]) -> FunctionsReport | None:
        codes = list(dict.fromkeys(codes))
        if not codes:
            return None
        loaded, failed = 0, list[str]()
        with self.nodes() as nodes:
            for code in codes:
                errors = [r for r in nodes.each_primary((b"FUNCTION", b"LOAD", b"REPLACE", code))
                          if isinstance(r, Exception)]
                if errors:
                    failed.append(" ".join(str(errors[0]).split())[:120])
                else:
                    loaded += 1
        return FunctionsReport(loaded, f"{len(failed)} not loaded: {'; '.join(failed)}" if failed else "")

    # -- the markers --------------------------------------------------------------------------------------------------

    def _write_marker(self, offset: int) -> None:
        key = marker_key(self.stream_id)
        with self.nodes() as nodes:
            nodes.one(key, (b"SET", key, marker_value(offset, 0, int(time.time() * 1000))))

    def _delete_marker(self) -> None:
        with self.nodes() as nodes:
            remove_markers(nodes, self.stream_id)
        self.slot_markers = {}

    def read_marker(self) -> Marker | None:
        with self.nodes() as nodes:
            floor, self.slot_markers = read_markers(nodes, self.stream_id)
        return floor

    def marker_count(self) -> int:
        if isinstance(self.applier, SlotApplier):
            return self.applier.marker_count()
        with self.nodes() as nodes:
            floor, slots = read_markers(nodes, self.stream_id)
        return (floor is not None) + len(slots)

    def finish_cutover(self) -> None:
        if self.applier is not None:
            self.applier.flush()
        self._delete_marker()
        if self.link is not None:
            self.link.ack(self.applied[0], flush=True)

    def _continue_after_target_loss(self, exc: TargetLostError) -> None:
        if self.link is not None:
            self.link.close()
        self.note(f"the target cluster lost acknowledged writes ({exc.message}): full resync")
        self._full_sync(self.connect(None, 0, 0), "the target cluster lost acknowledged writes", flush=True)


class ClusterTargetSync(IntoCluster):
    """A standalone source into a cluster target."""


class ShardIntoCluster(ShardFollower, IntoCluster):
    """One primary of a cluster source into a cluster target (ShardFollower's shard-only clears run on every target
    primary, through IntoCluster.target_nodes)."""
