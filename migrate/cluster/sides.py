"""What each verb asks of a side before it works with it: the side read from its seeds (a cluster from any node, never
one node taken for the whole), refused when it is not fit to work with, and the facts summed over its primaries.

- `discover_side`: the source or the target of a CommonConfig as a `Topology` or a `Standalone`.
- `require_ready`: a cluster whose state is not ok, with uncovered slots, failing nodes or open slot migrations is
  refused with every problem named (a copy or a verification started then would miss keys or read them twice).
- `refuse_same_cluster`: a source and a target that share a node id are the same cluster.
- `cluster_databases`: how many databases a cluster node has (1 below Valkey 9.0; `cluster-databases` from 9.0).
- `primary_keyspace`: INFO keyspace of every primary, summed per database (the whole cluster's key counts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

from redis import exceptions as rex

from migrate.cluster.errors import ClusterUnhealthyError
from migrate.cluster.links import NodeLink
from migrate.cluster.readers import read_migrations
from migrate.cluster.topology import Shard, Standalone, Topology, discover
from migrate.config import CommonConfig, ConnectionSettings, Endpoint
from migrate.connection import translate
from migrate.errors import ConfigError, MigrateError, PermissionDeniedError
from migrate.identity import keyspace_of
from migrate.identity import refuse_same_cluster as same_nodes
from migrate.wire import is_error, pack

Side = Topology | Standalone


UNKNOWN: Final = "unknown"  # Standalone.product when the user may run neither INFO nor CLUSTER INFO


def discover_side(common: CommonConfig, role: str, unknown_ok: bool = False) -> Side:
    """The side as its seeds say: a cluster read from the first seed that answers, or a standalone server.

    A user refused INFO: CLUSTER INFO tells a standalone server ("cluster support disabled") from a cluster node,
    which is then refused (its topology needs INFO). Refused both, the mode is unknown: an error, or with `unknown_ok`
    (preflight, which reports what it could not read) a Standalone whose product is UNKNOWN.
    """
    try:
        return discover(common.seeds(role), common.connection, role=role)
    except PermissionDeniedError as denied:
        seed = common.seeds(role)[0]
        try:
            _call(seed, common.connection, role, ("CLUSTER", "INFO"))
        except PermissionDeniedError:
            if unknown_ok:
                return Standalone(seed, UNKNOWN, "")
            raise denied from None
        except MigrateError as exc:
            if "cluster support disabled" in exc.message.lower():
                return Standalone(seed, UNKNOWN, "")
            raise denied from None
        raise denied from None  # a cluster node: its topology cannot be read without INFO


def require_ready(topology: Topology, role: str, settings: ConnectionSettings) -> None:
    """Refuse a cluster that is unhealthy or has slots migrating, naming every problem."""
    problems = topology.health.problems()
    migrations = read_migrations(topology, settings, role)
    if migrations:
        shown = ", ".join(f"slot {m.slot} {m.direction} ({m.node_id[:8]} {'->' if m.direction == 'migrating' else '<-'}"
                          f" {m.peer_id[:8]})" for m in migrations[:5])
        more = f" and {len(migrations) - 5} more" if len(migrations) > 5 else ""
        problems.append(f"slots are migrating: {shown}{more}")
    if problems:
        raise ClusterUnhealthyError(f"the {role} cluster at {topology.seed} is not fit to migrate: "
                                    + "; ".join(problems),
                                    "wait until the resharding or failover settles (CLUSTER INFO ok, no slot "
                                    "migrating), then rerun")


def node_ids(topology: Topology) -> frozenset[str]:
    return frozenset(n.node_id for n in (*topology.nodes, *topology.others))


def refuse_same_cluster(source: Side, target: Side) -> None:
    """Two clusters sharing a node are one cluster: it would be migrated onto itself (identity.refuse_same_cluster).
    A cluster and a standalone server are never the same server."""
    if isinstance(source, Topology) and isinstance(target, Topology):
        same_nodes(node_ids(source), node_ids(target))


def cluster_databases(topology: Topology, settings: ConnectionSettings) -> int:
    """Databases a cluster node has: 1 below Valkey 9.0 (SELECT is refused in cluster mode), else the node's
    `cluster-databases` (CONFIG GET; 1 when it cannot be read)."""
    if topology.product != "valkey" or _major(topology.version) < 9:
        return 1
    try:
        reply = _call(topology.shards[0].primary.endpoint, settings, "server", ("CONFIG", "GET",
                                                                                "cluster-databases"))
    except MigrateError:  # CONFIG refused to this user: the default
        return 1
    values = list(reply) if isinstance(reply, list) else []
    try:
        return max(1, int(values[1]))
    except (IndexError, ValueError):
        return 1


def check_cluster_dbs(topology: Topology, dbs: Sequence[int], role: str, settings: ConnectionSettings,
                      flag: str = "--db-map") -> None:
    """Refuse databases a cluster does not have, naming the release rule."""
    have = cluster_databases(topology, settings)
    missing = sorted({db for db in dbs if db >= have})
    if missing:
        rule = ("a Redis or Valkey 8 cluster has database 0 only" if have == 1 and (
            topology.product != "valkey" or _major(topology.version) < 9)
            else f"its cluster-databases is {have}")
        raise ConfigError(f"the {role} cluster has no database {', '.join(map(str, missing))}: {rule}",
                          f"map them onto database 0 with {flag} SRC:0 (keys of the same name then meet), or "
                          "raise cluster-databases on a Valkey 9.0+ cluster")


def primary_keyspace(topology: Topology, settings: ConnectionSettings, role: str) -> dict[int, int]:
    """Keys per database, summed over the primaries (replicas hold copies)."""
    total: dict[int, int] = {}
    for shard in topology.shards:
        for db, keys in shard_keyspace(shard, settings, role).items():
            total[db] = total.get(db, 0) + keys
    return total


def shard_keyspace(shard: Shard, settings: ConnectionSettings, role: str) -> dict[int, int]:
    return node_keyspace(shard.primary.endpoint, settings, role)


def node_keyspace(endpoint: Endpoint, settings: ConnectionSettings, role: str) -> dict[int, int]:
    """Keys per database of one node (INFO keyspace)."""
    reply = _call(endpoint, settings, role, ("INFO", "keyspace"))
    text = reply.decode() if isinstance(reply, bytes) else ""
    info: dict[str, object] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.startswith("db"):
            info[name] = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return keyspace_of(info)


def _call(endpoint: Endpoint, settings: ConnectionSettings, role: str, args: tuple[str, ...]) -> object:
    link = NodeLink(endpoint, settings, role, 0)
    try:
        reply = link.call(pack(args), 1)[0]
    except (rex.RedisError, OSError) as exc:
        raise translate(exc, endpoint, role) from exc
    finally:
        with contextlib.suppress(OSError):
            link.close()
    if is_error(reply):
        raise translate(rex.ResponseError(str(reply)), endpoint, role)
    return reply


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0
