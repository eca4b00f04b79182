"""Per-shard readers on real clusters: what SCAN on each node returns, from primaries, replicas and mid-migration."""

from __future__ import annotations

import pytest
import redis

from migrate.cluster.readers import ShardReader, open_shard_readers
from migrate.cluster.router import RouterOptions, SlotRouter
from migrate.cluster.topology import Topology, read_topology
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.rdb.rewrite import key_slot
from migrate.wire import pack
from tests.cluster_support import ClusterFactory

FAST = ConnectionSettings(connect_timeout=2, socket_timeout=10, retries=1)


def fill(topology: Topology, keys: list[bytes], replicas: int = 0) -> None:
    """Write keys through the router; with replicas, each round waits until they have it (WAIT)."""
    with SlotRouter(topology, FAST, options=RouterOptions(wait_replicas=replicas, wait_timeout_ms=5000)) as router:
        for at in range(0, len(keys), 1000):
            chunk = keys[at:at + 1000]
            router.execute([key_slot(k) for k in chunk], [pack((b"SET", k, k)) for k in chunk])
        assert router.stats.wait_short == 0


def scanned(reader: ShardReader) -> list[bytes]:
    return [key for page in reader.keys(count=500) for key in page]


@pytest.mark.parametrize("name", ["redis-7.0", "valkey-8.1"])
def test_each_primary_reader_scans_exactly_its_shards_keys(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    keys = [b"r:%d" % i for i in range(5000)]
    fill(topology, keys)
    readers = open_shard_readers(topology, FAST)
    try:
        assert [r.shard for r in readers] == list(topology.shards)
        everything: list[bytes] = []
        for reader in readers:
            assert not reader.on_replica and reader.node is reader.shard.primary
            mine = scanned(reader)
            assert mine and all(reader.shard.owns(key_slot(k)) for k in mine)
            everything += mine
        assert sorted(everything) == sorted(keys)  # no key missing, none twice
    finally:
        for reader in readers:
            reader.close()


@pytest.mark.parametrize("name", ["redis-6.0", "valkey-9.1"])
def test_replica_readers_read_with_readonly(clusters: ClusterFactory, name: str) -> None:
    cluster = clusters.get(name, shards=3, replicas=1)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    keys = [b"rep:%d" % i for i in range(3000)]
    fill(topology, keys, replicas=1)
    readers = open_shard_readers(topology, FAST, prefer="replica")
    try:
        everything: list[bytes] = []
        for reader in readers:
            assert reader.on_replica and reader.node in reader.shard.replicas
            mine = scanned(reader)
            everything += mine
            assert reader.link.command(b"GET", mine[0]) == mine[0]  # READONLY: served by the replica
            payload = reader.link.command(b"DUMP", mine[0])
            assert isinstance(payload, bytes) and len(payload) > 10
            # The same read on a connection without READONLY is redirected to the primary.
            with redis.Redis(host="127.0.0.1", port=reader.node.endpoint.port) as plain:
                with pytest.raises(redis.exceptions.MovedError):  # redis-py parses "MOVED <slot> <addr>"
                    plain.get(mine[0])
                assert plain.scan(0, count=10)[1]  # SCAN has no key: never redirected
        assert sorted(everything) == sorted(keys)
    finally:
        for reader in readers:
            reader.close()


def test_a_shard_without_replicas_is_read_from_its_primary(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    readers = open_shard_readers(topology, FAST, prefer="replica")
    try:
        assert [r.node for r in readers] == [s.primary for s in topology.shards]
    finally:
        for reader in readers:
            reader.close()


def test_scan_during_a_slot_migration_returns_each_key_where_it_is(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2)
    topology = read_topology(parse_endpoint(cluster.url()), FAST)
    moving = [b"{slot}:%d" % i for i in range(300)]
    others = [b"o:%d" % i for i in range(700)]
    fill(topology, moving + others)
    slot = key_slot(moving[0])
    source = cluster.owner_of_slot(slot)
    destination = next(n for n in cluster.primaries if n is not source)
    migration = cluster.migration(slot, destination).begin()
    migration.move_keys(100)

    readers = {r.node.node_id: r for r in open_shard_readers(topology, FAST)}  # the map from before the migration
    try:
        on_source = scanned(readers[source.node_id])
        on_destination = scanned(readers[destination.node_id])
    finally:
        for reader in readers.values():
            reader.close()
    in_slot_source = {k for k in on_source if key_slot(k) == slot}
    in_slot_destination = {k for k in on_destination if key_slot(k) == slot}
    # The destination returns the 100 keys it holds although it does not own the slot yet; the source the rest.
    assert len(in_slot_destination) == 100 and len(in_slot_source) == 200
    assert in_slot_source | in_slot_destination == set(moving) and not in_slot_source & in_slot_destination
    assert sorted(on_source + on_destination) == sorted(moving + others)
    while migration.move_keys(100):
        pass
    migration.finish()
    after = read_topology(parse_endpoint(cluster.url()), FAST)
    readers_after = open_shard_readers(after, FAST)
    try:
        by_node = {r.node.node_id: {k for k in scanned(r) if key_slot(k) == slot} for r in readers_after}
    finally:
        for reader in readers_after:
            reader.close()
    assert by_node == {source.node_id: set(), destination.node_id: set(moving)}
