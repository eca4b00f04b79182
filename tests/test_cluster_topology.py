"""Cluster topology read from any node of real clusters (every server of the matrix), standalone detection, health."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from fixtures.cluster import even_ranges
from migrate.cluster.errors import ClusterUnavailableError, ClusterUnhealthyError, NotAClusterError
from migrate.cluster.links import NodeLink
from migrate.cluster.readers import read_migrations
from migrate.cluster.topology import (
    NodeRole,
    SlotRange,
    Standalone,
    Topology,
    TopologyOptions,
    discover,
    parse_node_line,
    read_topology,
)
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.errors import AuthError, ExitCode
from migrate.rdb.rewrite import key_slot
from tests.cluster_support import PASSWORD, ClusterFactory
from tests.conftest import ServerFactory
from tests.matrix import params

CLUSTER_SERVERS = ("redis-6.0", "redis-7.0", "redis-8.0.2", "valkey-8.0", "valkey-8.1", "valkey-9.1")
HAS_SHARDS = {"redis-6.0": False}  # CLUSTER SHARDS exists from Redis 7.0; every Valkey has it
T = TypeVar("T")
FAST = ConnectionSettings(connect_timeout=2, socket_timeout=5, retries=1)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("name", params(CLUSTER_SERVERS))
def test_topology_of_three_shards_with_replicas_from_a_primary(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3, replicas=1)
    topology = read_topology(parse_endpoint(cluster.url(cluster.nodes[0])), FAST)

    assert topology.read_with == ("CLUSTER NODES + CLUSTER SHARDS" if HAS_SHARDS.get(name, True) else "CLUSTER NODES")
    assert topology.answered_by == cluster.nodes[0].node_id
    assert topology.health.ok and topology.health.state == "ok" and topology.covered
    assert topology.health.slots_assigned == topology.health.slots_ok == 16384
    assert topology.health.known_nodes == 6 and topology.health.size == 3
    assert [s.ranges for s in topology.shards] == [(SlotRange(a, b),) for a, b in even_ranges(3)]
    for shard, primary in zip(topology.shards, cluster.nodes[:3], strict=True):
        assert shard.primary.node_id == primary.node_id
        assert shard.primary.endpoint.port == primary.port and shard.primary.role is NodeRole.PRIMARY
        assert [r.node_id for r in shard.replicas] == [n.node_id for n in cluster.replicas_of(primary)]
        assert all(r.role is NodeRole.REPLICA and r.primary_id == primary.node_id for r in shard.replicas)
        assert shard.identity == f"{primary.node_id}:{shard.ranges[0]}"
    assert not topology.empty_primaries and not topology.others and not topology.migrations


@pytest.mark.parametrize("name", params(CLUSTER_SERVERS))
def test_owner_table_agrees_with_the_servers_and_with_redis_py(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3, replicas=1)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    # An independent reading: redis-py's RedisCluster builds its slot map from CLUSTER SLOTS.
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[1].port)
    try:
        for slot in range(16384):
            owner = topology.owner(slot)
            assert owner is not None
            assert owner.primary.endpoint.port == client.nodes_manager.slots_cache[slot][0].port
        # The server's own hash (CLUSTER KEYSLOT) for keys with and without hash tags, binary and empty tags.
        keys = [b"user:%d" % i for i in range(200)] + [b"{tag}%d" % i for i in range(5)] + [b"a{}b", b"\xff{\x00}z"]
        with cluster.nodes[2].client() as node:
            for key in keys:
                slot = node.execute_command("CLUSTER", "KEYSLOT", key)
                assert key_slot(key) == slot
                assert topology.owner_of_key(key) is topology.owner(slot)
    finally:
        client.close()


@pytest.mark.parametrize("name", params(("redis-7.0", "valkey-8.1", "valkey-9.1")))
def test_nodes_only_reading_equals_the_shards_reading(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3, replicas=1)
    seed = parse_endpoint(cluster.url())
    with_shards = read_topology(seed, FAST)
    nodes_only = read_topology(seed, FAST, TopologyOptions(use_shards=False))
    assert nodes_only.read_with == "CLUSTER NODES"
    assert [s.identity for s in nodes_only.shards] == [s.identity for s in with_shards.shards]
    assert [n.endpoint for n in nodes_only.nodes] == [n.endpoint for n in with_shards.nodes]
    assert {n.replication_offset for n in nodes_only.nodes} == {None}  # only CLUSTER SHARDS has offsets
    assert all(isinstance(n.replication_offset, int) for n in with_shards.nodes)


@pytest.mark.parametrize("name", params(("redis-6.0", "redis-7.0", "valkey-8.1", "valkey-9.1")))
def test_topology_from_a_replica_url_with_the_seed_host_form(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3, replicas=1)
    replica = cluster.replicas[0]
    seed = parse_endpoint(f"redis://localhost:{replica.port}/0")
    topology = read_topology(seed, FAST)

    assert topology.answered_by == replica.node_id
    from_primary = read_topology(parse_endpoint(cluster.url()), FAST)
    assert [s.identity for s in topology.shards] == [s.identity for s in from_primary.shards]
    # Every node announces 127.0.0.1, the address the seed (localhost) resolves to: the seed's host form is kept.
    for node in topology.nodes:
        assert node.endpoint.host == "localhost"
        assert node.announced == f"127.0.0.1:{node.endpoint.port}"
        assert node.ip == "127.0.0.1"
    assert topology.node(replica.node_id).endpoint == seed


def test_a_host_map_rewrites_announced_addresses(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3, replicas=1)
    options = TopologyOptions.mapping({"127.0.0.1": "127.0.0.2"})  # as for nodes behind NAT or in containers
    topology = read_topology(parse_endpoint(cluster.url()), FAST, options)
    me = topology.node(topology.answered_by)
    assert me.endpoint.host == "127.0.0.1"  # the seed as given
    assert {n.endpoint.host for n in topology.nodes if n is not me} == {"127.0.0.2"}
    assert topology.endpoint_for("127.0.0.1", cluster.nodes[1].port).host == "127.0.0.2"


@pytest.mark.parametrize("name", params(CLUSTER_SERVERS))
def test_a_single_node_cluster_lists_its_own_ip_empty(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=1, replicas=0)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    (shard,) = topology.shards
    assert shard.ranges == (SlotRange(0, 16383),)
    assert shard.primary.ip == "" and shard.primary.endpoint.host == "127.0.0.1"  # the seed's host


@pytest.mark.parametrize("name", params(("redis-7.0", "valkey-8.1")))
def test_standalone_server_is_reported_as_such(servers: ServerFactory, name: str) -> None:
    server = servers.get(name)
    found = discover(parse_endpoint(server.url), FAST)
    assert isinstance(found, Standalone)
    assert found.product == name.split("-")[0] and found.version.startswith(name.split("-")[1][:1])
    with pytest.raises(NotAClusterError) as raised:
        read_topology(parse_endpoint(server.url), FAST)
    assert raised.value.exit_code == ExitCode.CONFIG and "is not a cluster node" in raised.value.message


def test_discovery_works_over_a_unix_socket(servers: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "valkey.sock"
    servers.fresh("valkey-8.1", "--unixsocket", str(path))
    found = discover(parse_endpoint(f"unix://{path}?db=0"), FAST)
    assert isinstance(found, Standalone) and found.endpoint.path == str(path)


def test_the_first_seed_that_answers_is_used(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3, replicas=1)
    dead = parse_endpoint(f"redis://127.0.0.1:{closed_port()}/0")
    topology = read_topology([dead, parse_endpoint(cluster.url(cluster.nodes[2]))], FAST)
    assert topology.answered_by == cluster.nodes[2].node_id
    with pytest.raises(ClusterUnavailableError) as raised:
        read_topology([dead, dead], FAST)
    assert raised.value.exit_code == ExitCode.CONNECTION and raised.value.message.count("connection refused") == 2


def test_credentials_reach_every_node_and_never_show(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3, replicas=1, password=PASSWORD)
    seed = parse_endpoint(f"redis://default:{PASSWORD}@127.0.0.1:{cluster.nodes[0].port}/0")
    topology = read_topology(seed, FAST)
    assert len(topology.nodes) == 6
    for node in topology.nodes:  # every node's endpoint works with the seed's credentials
        assert node.endpoint.password == PASSWORD and node.endpoint.username == "default"
        with redis.Redis(host=node.endpoint.host, port=node.endpoint.port, username="default",
                         password=PASSWORD) as client:
            assert client.ping()
        assert PASSWORD not in repr(node) and PASSWORD not in str(node.endpoint)
    assert PASSWORD not in topology.describe() and PASSWORD not in repr(topology)

    wrong = parse_endpoint(f"redis://default:not-{PASSWORD}@127.0.0.1:{cluster.nodes[0].port}/0")
    with pytest.raises(AuthError) as raised:
        read_topology(wrong, FAST)
    assert PASSWORD not in raised.value.one_line() and "authentication failed" in raised.value.message
    no_password = parse_endpoint(f"redis://127.0.0.1:{cluster.nodes[0].port}/0")
    with pytest.raises(AuthError):
        read_topology(no_password, FAST)


def test_uncovered_slots_are_reported_precisely(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=3, replicas=0)
    for node in cluster.nodes:  # each node's own map: remove 100-199 and 7000 everywhere
        node.call("CLUSTER", "DELSLOTSRANGE", 100, 199, 7000, 7000)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)

    assert topology.health.uncovered == (SlotRange(100, 199), SlotRange(7000, 7000))
    assert not topology.covered and topology.owner(150) is None and topology.owner(99) is not None
    assert topology.shards[0].ranges == (SlotRange(0, 99), SlotRange(200, 5460))
    assert topology.health.slots_assigned == 16384 - 101
    with pytest.raises(ClusterUnhealthyError) as raised:
        topology.require_healthy("target")
    assert "101 slots not covered (100-199,7000)" in raised.value.message
    assert "cluster_state is fail" in raised.value.message


def test_a_failing_primary_is_reported(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=3, replicas=0, node_timeout_ms=1000)
    victim = cluster.nodes[2]
    cluster.kill(victim)
    seed = parse_endpoint(cluster.url())

    def failed() -> Topology:
        topology = read_topology(seed, FAST)
        assert topology.health.state == "fail", topology.health
        return topology

    topology = _eventually(failed)
    (failing,) = topology.health.failing
    assert failing.startswith(victim.node_id) and failing.endswith(" fail")
    assert topology.node(victim.node_id).health == "fail"
    assert topology.health.slots_fail == topology.shards[2].slot_count
    assert "nodes failing" in " ".join(topology.health.problems())


@pytest.mark.parametrize("name, grouped", [("redis-7.0", False), ("redis-8.0.2", True), ("valkey-8.1", True)])
def test_after_an_automatic_failover_the_dead_primary_is_reported_apart(clusters: ClusterFactory, name: str,
                                                                        grouped: bool) -> None:
    cluster = clusters.fresh(name, shards=3, replicas=1, node_timeout_ms=1000)
    victim = cluster.nodes[0]
    (heir,) = cluster.replicas_of(victim)
    cluster.kill(victim)
    seed = parse_endpoint(cluster.url(cluster.nodes[1]))

    def replaced() -> Topology:
        topology = read_topology(seed, FAST)
        assert topology.health.state == "ok" and topology.shards[0].primary.node_id == heir.node_id
        assert topology.node(victim.node_id).health == "fail"
        return topology

    topology = _eventually(replaced)
    assert topology.shards[0].ranges == (SlotRange(0, 5460),) and topology.shards[0].replicas == ()
    assert [n.node_id for n in topology.empty_primaries] == [victim.node_id]  # still flagged master, no slots
    assert [f.split()[0] for f in topology.health.failing] == [victim.node_id]
    assert topology.health.problems() == [f"nodes failing: {topology.health.failing[0]}"]
    # CLUSTER SHARDS: Redis 7.0 lists a shard per primary (the dead one alone, without slots); Redis 7.2+ and Valkey
    # group by shard id (the dead primary inside its successor's shard).
    link = NodeLink(seed, FAST, "server")
    try:
        raw = link.command(b"CLUSTER", b"SHARDS")  # RESP2: maps as flat arrays
    finally:
        link.close()
    groups = [{_field(node, b"id") for node in _field(shard, b"nodes")} for shard in raw]
    together = any({victim.node_id.encode(), heir.node_id.encode()} <= group for group in groups)
    assert together is grouped and len(groups) == (3 if grouped else 4)


def _field(reply: list[object], name: bytes) -> Any:
    return next(value for key, value in zip(reply[0::2], reply[1::2], strict=True) if key == name)


def test_open_slot_migrations_are_listed(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2, replicas=0)
    source, destination = cluster.nodes[0], cluster.nodes[1]
    migration = cluster.migration(42, destination).begin()
    topology = read_topology(parse_endpoint(cluster.url(source)), FAST)
    (mine,) = topology.migrations
    assert (mine.slot, mine.direction, mine.node_id, mine.peer_id) == (42, "migrating", source.node_id,
                                                                       destination.node_id)
    both = read_migrations(topology, FAST)
    assert [(m.slot, m.direction, m.node_id) for m in both] == [(42, "importing", destination.node_id),
                                                                (42, "migrating", source.node_id)]
    migration.finish()
    after = read_topology(parse_endpoint(cluster.url(source)), FAST)
    assert not read_migrations(after, FAST)
    assert [(s.primary.node_id, s.ranges) for s in after.shards] == [
        (source.node_id, (SlotRange(0, 41), SlotRange(43, 8191))),
        (destination.node_id, (SlotRange(42, 42), SlotRange(8192, 16383)))]


def test_cluster_nodes_lines_parse_every_documented_form() -> None:
    plain = parse_node_line("07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave "
                            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected")
    assert (plain.ip, plain.port, plain.bus_port, plain.primary_id, plain.ranges) == (
        "127.0.0.1", 30004, 31004, "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", ())
    peer = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"
    hosted = parse_node_line("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca ::1:30001@31001,node-1.example "
                             f"myself,master - 0 0 1 connected 0-5460 5462 [5461-<-{peer}] [7000->-{peer}]")
    assert (hosted.ip, hosted.port, hosted.hostname, hosted.primary_id) == ("::1", 30001, "node-1.example", None)
    assert hosted.ranges == (SlotRange(0, 5460), SlotRange(5462, 5462))
    assert [(m.slot, m.direction) for m in hosted.migrations] == [(5461, "importing"), (7000, "migrating")]
    lonely = parse_node_line("646aad34bf543cd1c978d88164ca52c2485b9670 :23338@33338 myself,master - 0 0 1 "
                             "connected 0-16383")
    assert lonely.ip == "" and lonely.ranges == (SlotRange(0, 16383),)
    aux = parse_node_line("646aad34bf543cd1c978d88164ca52c2485b9670 10.0.0.1:6379@16379,,shard-id=abc,tls-port=0 "
                          "master,fail? - 1 2 3 disconnected")
    assert aux.hostname is None and aux.flags == frozenset({"master", "fail?"}) and aux.link == "disconnected"


def _eventually(check: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
