"""`migrate preflight` with clusters: every node read, the census and the profile over every primary, and the cluster
findings (health, databases, per-shard memory, uneven spread, hash tags, cross-slot workloads, shard counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from migrate.preflight import preflight
from migrate.preflight.options import PreflightConfig, PreflightOptions
from migrate.preflight.result import PreflightResult
from migrate.rdb.rewrite import key_slot
from migrate.run import run
from tests.cluster_run_support import cluster_client, fill, run_config
from tests.cluster_support import ClusterFactory

ROOT = Path(__file__).resolve().parent.parent


def check(source_url: str, target_url: str, tmp_path: Path, **options: object) -> PreflightResult:
    common = run_config(source_url, target_url, tmp_path).common
    return preflight(PreflightConfig(common, PreflightOptions(**options)))  # type: ignore[arg-type]


def codes(result: PreflightResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for finding in result.findings:
        out.setdefault(finding.code, []).append(finding.message)
    return out


def test_a_cluster_pair_is_read_node_by_node(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3, 1), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 300)
    for primary in source.primaries:
        primary.call("WAIT", 1, 5000)
    result = check(source.nodes[4].url, target.url(), tmp_path, full=True)  # a replica's URL as the seed
    found = codes(result)
    assert "CLUSTER_MODE" not in found and "CLUSTER_UNHEALTHY" not in found and "CLUSTER_REPLICA_DOWN" not in found
    assert len(found["CLUSTER_TOPOLOGY"]) == 2 and "CLUSTER_SHARD_COUNTS" in found
    profile = result.profile
    assert profile.source is not None and profile.source.total_keys == written.total  # every primary, not one
    assert profile.census is not None and profile.census.total == profile.census.examined == written.total
    assert profile.source_cluster is not None and len(profile.source_cluster.shards) == 3
    assert all(len(s.replicas) == 1 and s.replicas[0].link == "up" for s in profile.source_cluster.shards)
    assert profile.spread is not None and profile.spread.hash_tagged.count > 0
    projected = [s.keys for s in profile.spread.target_shards]
    run(run_config(source.url(), target.url(), tmp_path))
    actual = [len(keys) for keys in target.keys_by_node().values()]
    assert sorted(projected) == sorted(actual)  # with --full, the projection is the copy's real spread
    assert result.strategy.name == "replay"


def test_standalone_into_a_cluster_databases_and_cross_slot_work(clusters: ClusterFactory, servers,
                                                                  tmp_path: Path) -> None:
    source, target = servers.get("redis-7.0"), clusters.get("valkey-8.1", 2)
    client = source.client()
    client.config_resetstat()
    fill(client, 100, big=False)
    source.client(3).set("elsewhere", "1")
    with client.pipeline(transaction=True) as pipe:
        pipe.set("a", "1").set("b", "2").execute()
    client.mget("a", "b")
    client.eval("return redis.call('GET', KEYS[1])", 1, "a")
    found = codes(check(source.url, target.url(), tmp_path))
    assert "database 3" in found["CLUSTER_DATABASES"][0]
    cross = found["CLUSTER_CROSS_SLOT"][0]
    assert "multi" in cross and "mget" in cross and "eval" in cross


def test_shard_memory_and_uneven_spread(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    pipe = cluster_client(source).pipeline(transaction=False)
    for i in range(1500):  # one hash tag: a single slot holds most of the data
        pipe.set(f"{{hot}}:{i}", "x" * 1000)
    for i in range(150):
        pipe.set(f"cold:{i}", "y")
    pipe.execute()
    heavy = target.owner_of_slot(key_slot(b"{hot}"))
    heavy.call("CONFIG", "SET", "maxmemory", 1024 * 1024)
    try:
        result = check(source.url(), target.url(), tmp_path)
    finally:
        heavy.call("CONFIG", "SET", "maxmemory", 0)
    found = codes(result)
    assert any("over its maxmemory 1.0 MiB" in m for m in found["CLUSTER_SHARD_MEMORY"])
    assert len(found["CLUSTER_UNEVEN"]) == 2  # the source's shards and the target's projected shares
    assert not result.ok


def test_an_unfit_cluster_is_a_blocker(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    cluster_client(source).set("a", "1")
    slot = key_slot(b"a")
    migration = source.migration(slot, next(n for n in source.primaries if n is not source.owner_of_slot(slot)))
    migration.begin()
    try:
        done = subprocess.run([sys.executable, "-m", "migrate", "preflight", "--source", source.url(), "--target",
                               target.url(), "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
    finally:
        migration.finish()
    assert done.returncode == 5, done.stderr[-2000:]
    report = json.loads(done.stdout)
    unhealthy = [f for f in report["findings"] if f["code"] == "CLUSTER_UNHEALTHY"]
    assert unhealthy and f"{slot} (migrating)" in unhealthy[0]["message"]
    assert report["clusters"]["source"]["shards"][0]["primary"]["version"].startswith("redis 7.0")


def test_the_key_spread_counts_every_database_of_the_source(clusters: ClusterFactory, servers,
                                                            tmp_path: Path) -> None:
    """A standalone source with keys in databases 0 and 3, into a cluster (db 3 mapped onto its db 0): the projected
    shares count both databases, by the slots of their keys."""
    source, target = servers.fresh("redis-7.0"), clusters.get("valkey-8.1", 2)
    zero, three = source.client(), source.client(3)
    zero.mset({f"zero:{i}": "x" for i in range(200)})
    three.mset({f"three:{i}": "y" * 500 for i in range(300)})
    result = check(source.url, target.url(), tmp_path, full=True)
    spread = result.profile.spread
    assert spread is not None and spread.sampled == 500  # before: db 0 only, 200
    owners: dict[int, int] = {}
    for name in [f"zero:{i}" for i in range(200)] + [f"three:{i}" for i in range(300)]:
        node = target.owner_of_slot(key_slot(name.encode()))
        owners[id(node)] = owners.get(id(node), 0) + 1
    assert sorted(s.keys for s in spread.target_shards) == sorted(owners.values())


def test_a_key_spread_that_could_not_read_every_database_says_so(clusters: ClusterFactory, servers,
                                                                 tmp_path: Path) -> None:
    """A user without INFO: the databases past 0 cannot be found, and the profile is marked partial, naming them."""
    source, target = servers.fresh("redis-7.0"), clusters.get("valkey-8.1", 2)
    source.client().mset({f"zero:{i}": "x" for i in range(50)})
    source.client(4).mset({f"four:{i}": "y" for i in range(50)})
    source.client().execute_command("ACL", "SETUSER", "few", "on", ">pw", "~*", "+@read", "+scan", "+dbsize",
                                    "+memory", "+select", "+ping", "+client", "+hello", "+command", "-info")
    result = check(source.url.replace("redis://", "redis://few:pw@"), target.url(), tmp_path, full=True)
    spread = result.profile.spread
    assert spread is not None and spread.sampled == 50 and len(spread.unsampled) == 1
    reason = next(r for r in result.profile.partial if r.startswith("key spread"))
    assert "databases other than 0" in reason and "pw" not in reason
