"""Clusters: the health of each side, every node, the databases a cluster has, where the source's keys land on the
target's shards (memory per shard, uneven spread), hash tags, and a workload whose commands span several slots."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.facts.commands import GROUPING_COMMANDS, MULTI_KEY_COMMANDS
from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import ClusterFacts, Profile
from migrate.preflight.registry import check

UNEVEN = 1.5  # a shard holding more than 1.5x the mean share of keys or memory is called uneven
HEADROOM = 1.2  # as checks/capacity.py: less than 20% over a shard's data leaves no room


def _sides(profile: Profile) -> Iterator[ClusterFacts]:
    yield from (c for c in (profile.source_cluster, profile.target_cluster) if c is not None)


@check("CLUSTER_TOPOLOGY")
def topology(profile: Profile) -> Iterator[Finding]:
    for side in _sides(profile):
        replicas = sum(len(s.replicas) for s in side.shards)
        lines = [f"{s.slots} on {s.primary.address} ({s.keys if s.keys is not None else '?'} keys, "
                 f"{len(s.replicas)} replicas)" for s in side.shards]
        yield info("CLUSTER_TOPOLOGY", f"the {side.role} is a {side.product} {side.version} cluster of "
                   f"{len(side.shards)} shards and {replicas} replicas: " + "; ".join(lines),
                   "run and verify read it shard by shard", role=side.role, shards=lines,
                   databases=side.databases)


@check("CLUSTER_UNHEALTHY")
def health(profile: Profile) -> Iterator[Finding]:
    for side in _sides(profile):
        if side.problems:
            yield blocker("CLUSTER_UNHEALTHY", f"the {side.role} cluster is not fit to migrate: "
                          + "; ".join(side.problems),
                          "wait until it settles (CLUSTER INFO ok, every slot covered, no node failing, no slot "
                          "migrating): run and verify refuse it until then", role=side.role,
                          problems=list(side.problems))


@check("CLUSTER_NODE_UNREADABLE", "CLUSTER_REPLICA_DOWN", "CLUSTER_VERSIONS_MIXED")
def nodes(profile: Profile) -> Iterator[Finding]:
    for side in _sides(profile):
        every = [n for s in side.shards for n in (s.primary, *s.replicas)]
        for node in every:
            if node.error:
                yield warning("CLUSTER_NODE_UNREADABLE", f"{side.role} {node.role} {node.address} could not be read: "
                              f"{node.error}", "check that node (and that the preflight user may read INFO there)",
                              role=side.role, node=node.address)
        # The replica's own INFO decides (its link to its primary): the cluster's gossip says `loading` for an
        # in-sync replica of a primary that took no write yet (docs/cluster.md); only fail flags are trusted there.
        down = [n for n in every if n.role == "replica" and (n.link != "up" or n.health in ("pfail", "fail"))]
        if down:
            yield warning("CLUSTER_REPLICA_DOWN", f"{side.role} replicas not in sync: " + ", ".join(
                f"{n.address} (link {n.link or '?'}, {n.health})" for n in down),
                "a failover of that shard would lose writes; --read-from replica reads such shards on their "
                "primary", role=side.role, replicas=[n.address for n in down])
        versions = sorted({n.version for n in every if n.version})
        if len(versions) > 1:
            yield warning("CLUSTER_VERSIONS_MIXED", f"the {side.role} cluster's nodes run different versions: "
                          + ", ".join(versions), "finish the rolling upgrade first: conversions are planned for one "
                          "target release", role=side.role, versions=versions)


@check("CLUSTER_DATABASES")
def databases(profile: Profile) -> Iterator[Finding]:
    target, source = profile.target_cluster, profile.source
    if target is None or source is None:
        return
    used = sorted(db for db, ks in source.keyspace.items() if ks.keys)
    missing = [db for db in used if db >= target.databases]
    if missing:
        rule = ("a Redis or Valkey 8 cluster has database 0 only" if target.databases == 1 else
                f"its cluster-databases is {target.databases}")
        yield blocker("CLUSTER_DATABASES", f"the source holds keys in database {', '.join(map(str, missing))}, which "
                      f"the target cluster does not have ({rule})",
                      "map them with --db-map N:0 (keys of the same name then collide), or raise cluster-databases "
                      "on a Valkey 9.0+ cluster", databases=missing, target_databases=target.databases)


@check("CLUSTER_SHARD_COUNTS")
def shard_counts(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source_cluster, profile.target_cluster
    counts = (len(source.shards) if source else 1, len(target.shards) if target else 1)
    if (source or target) and counts[0] != counts[1]:
        yield info("CLUSTER_SHARD_COUNTS", f"the source has {counts[0]} shard(s), the target {counts[1]}: every key "
                   "is written to the target primary owning its slot, whatever shard it came from",
                   "nothing to do; check the per-shard memory findings", source_shards=counts[0],
                   target_shards=counts[1])


@check("CLUSTER_SHARD_MEMORY", "CLUSTER_SHARD_MEMORY_TIGHT")
def shard_memory(profile: Profile) -> Iterator[Finding]:
    spread = profile.spread
    if spread is None:
        return
    for shard in spread.target_shards:
        limit = shard.maxmemory
        if not limit or not shard.memory:
            continue
        evidence = {"slots": shard.slots, "estimated_bytes": shard.memory, "estimated_keys": shard.keys,
                    "maxmemory": limit}
        if limit < shard.memory:
            yield blocker("CLUSTER_SHARD_MEMORY", f"the target shard of slots {shard.slots} would hold about "
                          f"{_mb(shard.memory)} of the source's data, over its maxmemory {_mb(limit)}",
                          f"raise that shard's maxmemory above {_mb(int(shard.memory * HEADROOM))}, or add shards",
                          **evidence)
        elif limit < shard.memory * HEADROOM:
            yield warning("CLUSTER_SHARD_MEMORY_TIGHT", f"the target shard of slots {shard.slots} would hold about "
                          f"{_mb(shard.memory)}, less than 20% under its maxmemory {_mb(limit)}",
                          f"raise its maxmemory to at least {_mb(int(shard.memory * HEADROOM))}", **evidence)


@check("CLUSTER_UNEVEN")
def uneven(profile: Profile) -> Iterator[Finding]:
    source = profile.source_cluster
    if source is not None:
        counts = {s.slots: s.keys for s in source.shards if s.keys is not None}
        yield from _uneven("source shards hold", counts, "keys")
    if profile.spread is not None and profile.spread.target_shards:
        memory = {s.slots: s.memory for s in profile.spread.target_shards}
        yield from _uneven("the target shards would hold", memory, "bytes")


def _uneven(what: str, values: dict[str, int], unit: str) -> Iterator[Finding]:
    if len(values) < 2 or not sum(values.values()):
        return
    mean = sum(values.values()) / len(values)
    heavy = {slots: n for slots, n in values.items() if n > UNEVEN * mean}
    if heavy:
        yield warning("CLUSTER_UNEVEN", f"{what} unevenly: " + ", ".join(f"slots {s}: {n:,} {unit}"
                                                                          for s, n in heavy.items())
                      + f" (mean {mean:,.0f})", "big keys or hash tags concentrate data on some slots: the heaviest "
                      "shard fills first; rebalance slots (or spread the tags) before or after migrating",
                      heavy=heavy, mean=round(mean))


@check("CLUSTER_HASH_TAGS")
def hash_tags(profile: Profile) -> Iterator[Finding]:
    spread = profile.spread
    if spread is None or not spread.hash_tagged.count:
        return
    group = spread.hash_tagged
    yield info("CLUSTER_HASH_TAGS", f"{group.count} of {spread.sampled} sampled keys use hash tags (e.g. "
               f"{', '.join(group.examples)}): keys sharing a tag share a slot, and stay together on the target",
               "multi-key commands on them keep working; a few hot tags can make a shard heavier (CLUSTER_UNEVEN)",
               sampled=spread.sampled, tagged=group.count, examples=list(group.examples))


@check("CLUSTER_CROSS_SLOT")
def cross_slot(profile: Profile) -> Iterator[Finding]:
    """A standalone source moving into a cluster: what its applications run across keys must share a slot there."""
    source = profile.source
    if profile.target_cluster is None or profile.source_cluster is not None or source is None:
        return
    stats = source.commandstats or {}
    grouping = {c: n for c, n in stats.items() if c in GROUPING_COMMANDS and n}
    multi = {c: n for c, n in stats.items() if c in MULTI_KEY_COMMANDS and n}
    if grouping or multi:
        calls = ", ".join(f"{c} {n:,}" for c, n in sorted({**grouping, **multi}.items(), key=lambda x: -x[1])[:12])
        yield warning("CLUSTER_CROSS_SLOT", f"the source's applications ran transactions, scripts or multi-key "
                      f"commands ({calls}): on the target cluster each of them fails with CROSSSLOT unless all its "
                      "keys share a slot", "give keys used together a common {hash tag} (CLUSTER_HASH_TAGS shows "
                      "which do), or keep those workloads on a standalone server", grouping=grouping, multi_key=multi)


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"
