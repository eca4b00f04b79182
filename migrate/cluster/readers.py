"""Per-shard readers: for each source shard, one connection to its primary or (by option) one of its replicas, to SCAN
that node's keys and read them (DUMP, PTTL, ...).

What SCAN on a cluster node returns (valkey-io/valkey and redis/redis src/db.c scanGenericCommand: the node's own
keyspace, not filtered by slot ownership; checked on real clusters by tests/test_cluster_readers.py):
- The keys stored on that node: on a primary, the keys of its slots; on a replica, its copy of them.
- During a slot migration: the source returns the keys of the migrating slot it still holds, the destination the keys
  already moved to it, although it does not own the slot yet. A key is never on both at once in one node's view:
  MIGRATE restores it on the destination and deletes it from the source within one command of the source (which is
  blocked meanwhile). But SCANs of the two nodes that overlap a migration can miss a key (the destination scanned
  before it arrived, the source after it left) or return it twice (the source before, the destination after).
  Duplicates are harmless to a copy (RESTORE REPLACE / BUSYKEY); misses are not: check that no migration is open
  (`read_migrations`) before the pass and after it, and copy again the slots that moved in between.
- SCAN has no key argument, so no node redirects it (getNodeByQuery returns "myself" for keyless commands), READONLY
  or not. Keyed reads on a replica (DUMP, PTTL, TYPE, ...) answer MOVED to the primary unless the connection sent
  READONLY; after READONLY the replica serves reads of its primary's slots.
- SCAN cursors belong to the node (its hash seed, its table sizes, and on Redis 7.4+/Valkey 8+ its per-slot tables):
  a cursor is worthless on another node, which is why Shard.identity names the primary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from redis import exceptions as rex

from migrate.cluster.links import NodeLink
from migrate.cluster.topology import NodeInfo, NodeRole, Shard, SlotMigrationState, Topology, parse_node_line
from migrate.config import ConnectionSettings
from migrate.connection import translate
from migrate.logs import get_logger
from migrate.wire import is_error, pack

log = get_logger(__name__)

Prefer = Literal["primary", "replica"]


@dataclass(frozen=True)
class ShardReader:
    """A shard and the connection that reads it (READONLY already sent when `node` is a replica)."""

    shard: Shard
    node: NodeInfo
    link: NodeLink

    @property
    def on_replica(self) -> bool:
        return self.node.role is NodeRole.REPLICA

    def scan(self, cursor: int = 0, count: int = 1000, match: bytes | None = None) -> tuple[int, list[bytes]]:
        """One SCAN page of this node: (next cursor, keys)."""
        args: list[bytes | int] = [b"SCAN", cursor, b"COUNT", count]
        if match is not None:
            args[2:2] = [b"MATCH", match]
        reply = self.link.command(*args)
        if is_error(reply):
            raise translate(rex.ResponseError(str(reply)), self.node.endpoint, self.link.role)
        return int(reply[0]), list(reply[1])

    def keys(self, count: int = 1000, match: bytes | None = None) -> Iterator[list[bytes]]:
        """Every page of a full SCAN of this node."""
        cursor = 0
        while True:
            cursor, page = self.scan(cursor, count, match)
            if page:
                yield page
            if cursor == 0:
                return

    def close(self) -> None:
        self.link.close()


def open_shard_readers(topology: Topology, settings: ConnectionSettings | None = None, *, prefer: Prefer = "primary",
                       db: int = 0, role: str = "source") -> list[ShardReader]:
    """One reader per shard (in slot order). With prefer="replica", the first replica that is not failing and whose
    link to its primary is up (INFO replication); a shard without one is read from its primary (logged)."""
    settings = settings or ConnectionSettings()
    readers: list[ShardReader] = []
    try:
        for shard in topology.shards:
            readers.append(_open(shard, settings, prefer, db, role))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers


def _open(shard: Shard, settings: ConnectionSettings, prefer: Prefer, db: int, role: str) -> ShardReader:
    if prefer == "replica":
        for replica in shard.replicas:
            if replica.failing:
                continue
            link = NodeLink(replica.endpoint, settings, role, db, readonly=True)
            if _replica_in_sync(link):
                return ShardReader(shard, replica, link)
            link.close()
        log.warning("no replica in sync: reading the shard from its primary", role=role, shard=str(shard))
    link = NodeLink(shard.primary.endpoint, settings, role, db)
    try:
        link.connect()
    except (rex.RedisError, OSError) as exc:
        raise translate(exc, shard.primary.endpoint, role) from exc
    return ShardReader(shard, shard.primary, link)


def replica_in_sync(link: NodeLink) -> bool:
    """Whether a replica's own INFO says its link to its primary is up and no sync is in progress."""
    return _replica_in_sync(link)


def _replica_in_sync(link: NodeLink) -> bool:
    try:
        reply = link.command(b"INFO", b"replication")
    except (rex.RedisError, OSError) as exc:
        log.warning("replica unreachable", node=str(link.endpoint), error=str(exc))
        return False
    text = reply.decode() if isinstance(reply, bytes) else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return fields.get("master_link_status", "").strip() == "up" and \
        fields.get("master_sync_in_progress", "0").strip() == "0"


def read_migrations(topology: Topology, settings: ConnectionSettings | None = None,
                    role: str = "server") -> tuple[SlotMigrationState, ...]:
    """Every open slot migration, as each primary reports its own (only a node's own CLUSTER NODES line lists them)."""
    settings = settings or ConnectionSettings()
    found: list[SlotMigrationState] = []
    primaries: Sequence[NodeInfo] = [*(s.primary for s in topology.shards), *topology.empty_primaries]
    for node in primaries:
        link = NodeLink(node.endpoint, settings, role, 0)
        try:
            reply = link.call(pack((b"CLUSTER", b"NODES")), 1)[0]
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, node.endpoint, role) from exc
        finally:
            with contextlib.suppress(OSError):
                link.close()
        if is_error(reply):
            raise translate(rex.ResponseError(str(reply)), node.endpoint, role)
        for line in reply.decode().splitlines():
            parsed = parse_node_line(line) if line.strip() else None
            if parsed is not None and "myself" in parsed.flags:
                found.extend(parsed.migrations)
    return tuple(sorted(found, key=lambda m: (m.slot, m.direction)))
