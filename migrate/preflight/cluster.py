"""Preflight facts of a cluster side: every primary and replica read on its own (version, role, replication link),
every shard's keys and memory, the side's health; the source's profile merged over its primaries (key counts,
memory, commandstats: the workload is spread over them); and how the source's keys spread over the target's shards
(key names sampled on every source node and hashed to their slots).

Read-only: INFO, CLUSTER NODES / SHARDS / INFO, CONFIG GET, SCAN and MEMORY USAGE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from migrate.cluster.readers import read_migrations
from migrate.cluster.sides import Side, cluster_databases, node_keyspace
from migrate.cluster.topology import NodeInfo, Topology, ranges_text
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import open_client
from migrate.errors import MigrateError
from migrate.identity import product_of
from migrate.logs import get_logger
from migrate.preflight.options import PreflightOptions
from migrate.preflight.profile import (
    ClusterFacts,
    KeyGroup,
    KeyspaceDb,
    Memory,
    NodeFacts,
    ProjectedShard,
    ServerProfile,
    ShardFacts,
    SpreadFacts,
)
from migrate.rdb.rewrite import key_slot
from migrate.render import display_key
from migrate.sizes import memory_usage_commands
from migrate.wire import Channel, is_error

log = get_logger(__name__)


def cluster_facts(topology: Topology, role: str, settings: ConnectionSettings) -> ClusterFacts:
    problems = list(topology.health.problems())
    try:
        migrations = read_migrations(topology, settings, role)
    except MigrateError as exc:
        migrations, problems = (), [*problems, f"open slot migrations not readable: {exc.message}"]
    if migrations:
        problems.append("slots migrating: " + ", ".join(f"{m.slot} ({m.direction})" for m in migrations[:10]))
    shards = tuple(_shard(s.primary, s.replicas, ranges_text(s.ranges), s.slot_count, settings, role)
                   for s in topology.shards)
    try:
        databases = cluster_databases(topology, settings)
    except MigrateError:
        databases = 1
    return ClusterFacts(role, topology.product, topology.version, topology.health.state, tuple(problems), shards,
                        databases)


def _shard(primary: NodeInfo, replicas: Sequence[NodeInfo], slots: str, count: int, settings: ConnectionSettings,
           role: str) -> ShardFacts:
    info = _info(primary.endpoint, settings, role, "server", "keyspace", "memory")
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)) \
        if "error" not in info else None
    return ShardFacts(slots, count, _node(primary, info), tuple(_node(r, _info(r.endpoint, settings, role, "server",
                                                                              "replication")) for r in replicas),
                      keys, _int(info.get("used_memory")), _int(info.get("maxmemory")))


def _node(node: NodeInfo, info: dict[str, Any]) -> NodeFacts:
    if "error" in info:
        return NodeFacts(node.node_id, node.address, node.role.value, node.health, error=str(info["error"]))
    product, version = product_of(info)
    link = info.get("master_link_status")
    return NodeFacts(node.node_id, node.address, node.role.value, node.health, f"{product} {version}",
                     str(link) if link is not None else None)


def _info(endpoint: Endpoint, settings: ConnectionSettings, role: str, *sections: str) -> dict[str, Any]:
    try:
        client = open_client(endpoint, settings, role)
    except MigrateError as exc:
        return {"error": exc.message}
    try:
        out: dict[str, Any] = {}
        for section in sections:
            out.update(client.info(section))
        if "memory" in sections:
            out["maxmemory"] = client.config_get("maxmemory").get("maxmemory")
        return out
    except Exception as exc:  # a node that answers but refuses: reported on the node, the others are read
        return {"error": " ".join(str(exc).split())[:160]}
    finally:
        client.close()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def merged_profile(profiles: Sequence[ServerProfile], endpoint: str) -> ServerProfile:
    """One profile for a cluster side: the first primary's configuration; keys, memory and commandstats summed over
    every primary (a cluster holds and serves the union)."""
    first = profiles[0]
    keyspace: dict[int, KeyspaceDb] = {}
    for profile in profiles:
        for db, ks in profile.keyspace.items():
            had = keyspace.get(db, KeyspaceDb(0, 0, None))
            sub = None if had.subexpiry is None and ks.subexpiry is None else (had.subexpiry or 0) + (ks.subexpiry or 0)
            keyspace[db] = KeyspaceDb(had.keys + ks.keys, had.expires + ks.expires, sub)
    stats: dict[str, int] | None = None
    if all(p.commandstats is not None for p in profiles):
        stats = {}
        for profile in profiles:
            for name, calls in (profile.commandstats or {}).items():
                stats[name] = stats.get(name, 0) + calls
    return dataclasses.replace(first, endpoint=endpoint, keyspace=keyspace, memory=_memory(profiles),
                               commandstats=stats, gaps=tuple(g for p in profiles for g in p.gaps))


def _memory(profiles: Sequence[ServerProfile]) -> Memory | None:
    memories = [p.memory for p in profiles]
    if any(m is None for m in memories):
        return profiles[0].memory
    known = [m for m in memories if m is not None]

    def total(name: str) -> int | None:
        values = [getattr(m, name) for m in known]
        return None if any(v is None for v in values) else sum(values)

    limits = [m.maxmemory for m in known]
    maxmemory = None if any(v is None for v in limits) else (0 if 0 in limits else sum(v or 0 for v in limits))
    return Memory(total("used_memory"), total("used_memory_dataset"), maxmemory, known[0].maxmemory_policy)


def spread(source: Side, target: Side | None, settings: ConnectionSettings, options: PreflightOptions,
           target_facts: ClusterFacts | None) -> SpreadFacts:
    """Key names sampled in every database of every source node (up to --sample per node and database, or all with
    --full), with their MEMORY USAGE, scaled to the database's key count and summed per target shard owning their
    slots (a key's slot does not depend on its database)."""
    topology = target if isinstance(target, Topology) else None
    keys_by = [0.0] * (len(topology.shards) if topology else 0)
    memory_by = [0.0] * len(keys_by)
    sampled = tagged = 0
    examples: list[str] = []
    targets, unsampled = _node_dbs(source, settings)
    for endpoint, db in targets:
        try:
            names, sizes, held = _sample(endpoint, settings, options, db)
        except _NotSampled as exc:
            log.warning("key spread not sampled", node=str(endpoint), db=db, error=exc.reason)
            unsampled.append(f"{endpoint.address} db {db} ({exc.reason})")
            continue
        scale = held / len(names) if names else 0.0
        sampled += len(names)
        for name, size in zip(names, sizes, strict=True):
            if _hash_tag(name):
                tagged += 1
                if len(examples) < options.examples:
                    examples.append(display_key(name))
            if topology is not None:
                owner = topology.owners[key_slot(name)]
                if owner >= 0:
                    keys_by[owner] += scale
                    memory_by[owner] += scale * size
    shards: tuple[ProjectedShard, ...] = ()
    if topology is not None:
        limits = [s.maxmemory for s in target_facts.shards] if target_facts else [None] * len(keys_by)
        shards = tuple(ProjectedShard(ranges_text(s.ranges), round(keys_by[i]), round(memory_by[i]), limits[i])
                       for i, s in enumerate(topology.shards))
    return SpreadFacts(sampled, KeyGroup(tagged, tagged, tuple(examples)), shards, tuple(unsampled))


class _NotSampled(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _node_dbs(source: Side, settings: ConnectionSettings) -> tuple[list[tuple[Endpoint, int]], list[str]]:
    """(source primary, database) for every database holding keys (db 0 where INFO keyspace cannot be read), and
    the nodes whose other databases cannot be known, said."""
    nodes = [s.primary.endpoint for s in source.shards] if isinstance(source, Topology) else [source.endpoint]
    out: list[tuple[Endpoint, int]] = []
    unknown: list[str] = []
    for endpoint in nodes:
        try:
            dbs = sorted(db for db, n in node_keyspace(endpoint, settings, "source").items() if n) or [0]
        except MigrateError as exc:
            log.warning("keyspace not read: db 0 sampled", node=str(endpoint), error=exc.message)
            unknown.append(f"{endpoint.address} databases other than 0 (INFO keyspace: {exc.message})")
            dbs = [0]
        out += [(endpoint, db) for db in dbs]
    return out, unknown


def _sample(endpoint: Endpoint, settings: ConnectionSettings, options: PreflightOptions, db: int
            ) -> tuple[list[bytes], list[int], int]:
    """Up to --sample key names of a database (all with --full), their MEMORY USAGE, and its key count; raises
    _NotSampled saying why when they cannot be read."""
    channel = Channel(endpoint, settings, "source", db)
    names: list[bytes] = []
    try:
        held = channel.command("DBSIZE")
        cursor = b"0"
        limit = None if options.full else options.sample
        while True:
            reply = channel.command("SCAN", cursor, "COUNT", options.batch)
            if is_error(reply) or is_error(held):
                raise _NotSampled(str(reply if is_error(reply) else held)[:160])
            cursor, page = reply[0], list(reply[1])
            names += page[: None if limit is None else limit - len(names)]
            if cursor in (b"0", 0) or (limit is not None and len(names) >= limit):
                break
        # Guarded on every node (one LLEN round): a Redis 6 node may hold empty lists (migrate.sizes).
        commands = memory_usage_commands(channel, names, True) if names else []
        if commands is None:
            raise _NotSampled("LLEN refused (it guards MEMORY USAGE)")
        sizes = channel.call(b"".join(commands), len(commands)) if commands else []
    except (OSError, MigrateError) as exc:
        raise _NotSampled(str(exc)[:160]) from None
    finally:
        channel.close()
    return names, [s if isinstance(s, int) else 0 for s in sizes], int(held)


def _hash_tag(key: bytes) -> bool:
    """Whether only part of the key is hashed: a non-empty {tag} (the first { and the first } after it)."""
    start = key.find(b"{")
    if start < 0:
        return False
    end = key.find(b"}", start + 1)
    return end > start + 1
