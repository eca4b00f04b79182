"""The slot router on real clusters: keys land on their owners, and writes survive resharding, failover and outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest
import redis

from fixtures.cluster import ClusterNode, LocalCluster
from migrate.cluster.errors import ClusterDownError
from migrate.cluster.router import RouterOptions, SlotRouter
from migrate.cluster.topology import read_topology
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.rdb.rewrite import key_slot, temp_key
from migrate.wire import is_error, pack
from tests.cluster_support import PASSWORD, ClusterFactory

FAST = ConnectionSettings(connect_timeout=2, socket_timeout=10, retries=1)
BATCH = 1000


def router_for(cluster: LocalCluster, options: RouterOptions | None = None, node: int = 0,
               password: str | None = None) -> SlotRouter:
    auth = f"default:{password}@" if password else ""
    topology = read_topology(parse_endpoint(f"redis://{auth}127.0.0.1:{cluster.nodes[node].port}/0"), FAST)
    return SlotRouter(topology, FAST, options=options or RouterOptions())


def write(router: SlotRouter, keys: Sequence[bytes], build: Callable[[bytes], bytes], expect_ok: bool = False) -> None:
    """Every key's command through the router in batches; no reply may be an error."""
    for at in range(0, len(keys), BATCH):
        chunk = keys[at:at + BATCH]
        result = router.execute([key_slot(k) for k in chunk], [build(k) for k in chunk], expect_ok=expect_ok)
        bad = [r for r in result.replies or () if is_error(r)]
        assert not bad, bad[:3]


def node_keys(node: ClusterNode) -> list[bytes]:
    with node.client() as client:
        return list(client.scan_iter(count=1000))


@pytest.mark.parametrize("name, shards", [("valkey-8.1", 2), ("valkey-8.1", 4), ("valkey-9.1", 4)])
def test_every_key_lands_on_the_primary_owning_its_slot(clusters: ClusterFactory, name: str, shards: int) -> None:
    cluster = clusters.get(name, shards=shards)
    keys = [b"user:%d" % i for i in range(10_000)]
    with router_for(cluster) as router:
        write(router, keys, lambda k: pack((b"SET", k, b"v-" + k)), expect_ok=True)
        assert router.stats.commands == 10_000 and router.stats.batches == 10
        assert router.stats.moved == router.stats.ask == router.stats.node_errors == 0

    seen = 0
    for node in cluster.primaries:
        mine = node_keys(node)
        seen += len(mine)
        ranges = cluster.slot_ranges(node)
        with node.client() as client:
            pipe = client.pipeline(transaction=False)
            for key in mine:
                pipe.execute_command("CLUSTER", "KEYSLOT", key)
                pipe.get(key)
            replies = pipe.execute()
        for key, slot, value in zip(mine, replies[0::2], replies[1::2], strict=True):
            assert any(a <= slot <= b for a, b in ranges), (key, slot, ranges)
            assert value == b"v-" + key
    assert seen == 10_000 and len({len(node_keys(n)) > 0 for n in cluster.primaries}) == 1


def test_replies_come_back_in_the_callers_order(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3)
    keys = [b"k%d" % i for i in range(3000)]
    with router_for(cluster) as router:
        write(router, keys, lambda k: pack((b"SET", k, k[::-1])), expect_ok=True)
        router.execute([key_slot(b"list")], [pack((b"RPUSH", b"list", b"x"))])
        order = [*keys[::-1], b"list", b"missing"]
        result = router.execute([key_slot(k) for k in order], [pack((b"GET", k)) for k in order])
        assert result.replies is not None
        assert result.replies[:-2] == [k[::-1] for k in keys[::-1]]
        assert is_error(result.replies[-2]) and str(result.replies[-2]).startswith("WRONGTYPE")
        assert result.replies[-1] is None

        # RESTORE of DUMP payloads: +OK fast path, then BUSYKEY in place (not raised) when sent again.
        payload = dump(cluster, b"k1")
        copies = [b"copy:%d" % i for i in range(500)]
        restore = [pack((b"RESTORE", k, 0, payload)) for k in copies]
        first = router.execute([key_slot(k) for k in copies], restore, expect_ok=True)
        assert first.replies is None
        again = router.execute([key_slot(k) for k in copies], restore, expect_ok=True)
        assert again.replies is not None and all(str(r).startswith("BUSYKEY") for r in again.replies)


def dump(cluster: LocalCluster, key: bytes) -> bytes:
    with cluster.owner_of_slot(key_slot(key)).client() as client:
        payload = client.dump(key)
    assert isinstance(payload, bytes)
    return payload


def test_a_slot_migration_mid_stream_is_followed_exactly_once(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2)
    moving = [b"{mig}:%d" % i for i in range(200)]  # one slot
    others = [b"other:%d" % i for i in range(800)]
    slot = key_slot(moving[0])
    source = cluster.owner_of_slot(slot)
    destination = next(n for n in cluster.primaries if n is not source)
    with router_for(cluster) as router:
        write(router, moving, lambda k: pack((b"RPUSH", k, b"init")))
        migration = cluster.migration(slot, destination).begin()
        batches = 12
        for b in range(1, batches + 1):
            write(router, moving + others, lambda k, b=b: pack((b"RPUSH", k, b"%d" % b)))
            if b < 8:
                migration.move_keys(30)  # keys already moved answer ASK on the source
            elif b == 8:
                while migration.move_keys(100):
                    pass
                migration.finish()  # from here the source answers MOVED
        assert router.stats.ask > 0 and router.stats.moved > 0, router.stats
        assert router.stats.uncertain == 0 and router.stats.refreshes >= 1

    expected = [b"%d" % b for b in range(1, batches + 1)]
    with destination.client() as client:
        for key in moving:
            assert client.lrange(key, 0, -1) == [b"init", *expected], key  # no push lost, none twice, in order
    with source.client() as client:
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    for key in others:
        with cluster.owner_of_slot(key_slot(key)).client() as client:
            assert client.lrange(key, 0, -1) == expected


def test_a_transaction_during_a_migration_waits_out_tryagain(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2)
    keys = [b"{txn}:%d" % i for i in range(100)]
    slot = key_slot(keys[0])
    source = cluster.owner_of_slot(slot)
    destination = next(n for n in cluster.primaries if n is not source)
    with router_for(cluster, RouterOptions(retry_seconds=60)) as router:
        write(router, keys, lambda k: pack((b"SET", k, b"old")), expect_ok=True)
        migration = cluster.migration(slot, destination).begin()
        migration.move_keys(50)

        def finish_later() -> None:
            time.sleep(1.0)
            while migration.move_keys(100):
                pass
            migration.finish()

        finisher = threading.Thread(target=finish_later)
        finisher.start()
        try:
            # A value built under a temporary key of the same slot, then renamed over the real key (as rewrite does).
            tmp = temp_key(keys[0])
            replies = router.execute_unit(slot, [pack((b"SET", tmp, b"new")), pack((b"RENAME", tmp, keys[0]))])
        finally:
            finisher.join()
        assert replies[-1] == [b"OK", b"OK"]
        assert router.stats.tryagain > 0 and router.stats.units == 1, router.stats
    with destination.client() as client:
        assert client.get(keys[0]) == b"new" and client.get(keys[1]) == b"old"
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)


def test_a_transaction_on_a_moved_key_follows_ask_with_asking_before_multi(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("redis-7.0", shards=2)
    key = b"{unit}:0"
    slot = key_slot(key)
    source = cluster.owner_of_slot(slot)
    destination = next(n for n in cluster.primaries if n is not source)
    with router_for(cluster) as router:
        write(router, [key], lambda k: pack((b"SET", k, b"old")), expect_ok=True)
        migration = cluster.migration(slot, destination).begin()
        assert migration.move_keys(10) == 1
        unit = [pack((b"SET", key, b"new")), pack((b"PEXPIRE", key, 600_000))]
        replies = router.execute_unit(slot, unit)  # the source answers ASK; ASKING holds until EXEC
        assert replies == [b"OK", b"QUEUED", b"QUEUED", [b"OK", 1]]
        assert router.stats.ask == 1 and router.stats.tryagain == 0  # one redirection of the whole unit
        with destination.client() as client:  # written on the importing node, before the slot is handed over
            assert client.execute_command("ASKING") and client.get(key) == b"new"
        migration.finish()


def test_a_manual_failover_mid_stream_is_followed_exactly_once(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-9.1", shards=3, replicas=1)
    keys = [b"fo:%d" % i for i in range(600)]
    with router_for(cluster) as router:
        for b in range(1, 7):
            write(router, keys, lambda k, b=b: pack((b"RPUSH", k, b"%d" % b)))
            if b == 3:
                old = cluster.nodes[0]
                new = cluster.failover(cluster.replicas_of(old)[0])
                assert new.is_primary and not old.is_primary
        assert router.stats.moved > 0 and router.stats.refreshes >= 1 and router.stats.uncertain == 0, router.stats
        assert any(s.primary.node_id == new.node_id for s in router.topology.shards)
    expected = [b"%d" % b for b in range(1, 7)]
    for key in keys:
        with cluster.owner_of_slot(key_slot(key)).client() as client:
            assert client.lrange(key, 0, -1) == expected


def test_a_primary_killed_mid_stream_is_replaced_and_written_again(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=3, replicas=1, node_timeout_ms=1000)
    keys = [b"kill:%d" % i for i in range(600)]
    victim = cluster.nodes[0]
    options = RouterOptions(retry_seconds=60, wait_replicas=1, wait_timeout_ms=300)
    with router_for(cluster, options, node=1) as router:
        for b in range(1, 7):
            write(router, keys, lambda k, b=b: pack((b"SET", k, b"%d" % b)))
            if b == 3:
                cluster.kill(victim)  # no goodbye: the router finds out on its next write
        assert router.stats.node_errors > 0 and router.stats.refreshes >= 1, router.stats
        assert victim.node_id not in {s.primary.node_id for s in router.topology.shards}
        # The promoted replica has no replica of its own: WAIT says so for its rounds after the failover.
        assert router.stats.wait_short > 0
    cluster.wait_converged()
    for key in keys:
        with cluster.owner_of_slot(key_slot(key)).client() as client:
            assert client.get(key) == b"6"


def test_clusterdown_is_retried_then_bounded(clusters: ClusterFactory, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2, password=PASSWORD)
    slot = key_slot(b"down")
    owner = cluster.owner_of_slot(slot)
    keys = [b"d:%d" % i for i in range(200)] + [b"down"]
    with router_for(cluster, RouterOptions(retry_seconds=1.5), password=PASSWORD) as router:
        write(router, keys, lambda k: pack((b"SET", k, b"1")), expect_ok=True)
        for node in cluster.nodes:  # slot unassigned everywhere: cluster_state fail (full coverage required)
            node.call("CLUSTER", "DELSLOTS", slot)
        with pytest.raises(ClusterDownError) as raised:
            write(router, keys, lambda k: pack((b"SET", k, b"2")), expect_ok=True)
        assert router.stats.clusterdown > 0
        message = raised.value.one_line()
        assert "gave up after 1.5 s" in message and "CLUSTERDOWN" in message and PASSWORD not in message

    # The same outage healing within the retry budget: the batch goes through.
    with router_for(cluster, RouterOptions(retry_seconds=60), password=PASSWORD) as router:
        healer = threading.Timer(0.5, lambda: owner.call("CLUSTER", "ADDSLOTS", slot))
        healer.start()
        try:
            write(router, keys, lambda k: pack((b"SET", k, b"3")), expect_ok=True)
        finally:
            healer.join()
        assert router.stats.clusterdown > 0
    with owner.client() as client:
        assert client.get(b"down") == b"3"
    assert PASSWORD not in capsys.readouterr().err


def test_credentials_are_carried_to_every_node(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3, replicas=1, password=PASSWORD)
    keys = [b"secret:%d" % i for i in range(3000)]
    with router_for(cluster, password=PASSWORD) as router:
        write(router, keys, lambda k: pack((b"SET", k, b"x")), expect_ok=True)
    counts = [len(node_keys(n)) for n in cluster.primaries]
    assert sum(counts) == 3000 and min(counts) > 0
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=cluster.nodes[1].port, password="wrong").ping()


def test_a_command_whose_reply_was_lost_is_resent_as_the_caller_says(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-8.1", shards=2)
    keys = [b"{u}a", b"{u}b", b"{u}kill", b"{u}list", b"{u}c"]
    slot = key_slot(keys[0])
    commands = [pack((b"SET", keys[0], b"1")), pack((b"SET", keys[1], b"1")),
                # The server closes our connection after this reply: the last two commands are never read.
                pack((b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME", b"no")),
                pack((b"RPUSH", keys[3], b"first")), pack((b"SET", keys[4], b"1"))]
    alternatives = {3: pack((b"RPUSH", keys[3], b"resent")), 4: pack((b"SET", keys[4], b"2"))}
    with router_for(cluster) as router:
        result = router.execute([slot] * 5, commands, resend=lambda i: alternatives[i])
        assert result.uncertain == frozenset({3, 4}) and router.stats.uncertain == 2
        assert result.replies is not None and result.replies[:2] == [b"OK", b"OK"] and result.replies[3] == 1
    with cluster.owner_of_slot(slot).client() as client:
        assert client.lrange(keys[3], 0, -1) == [b"resent"] and client.get(keys[4]) == b"2"


def test_a_valkey_9_atomic_slot_migration_mid_stream_needs_only_moved(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-9.1", shards=2)
    keys = [b"{atomic}:%d" % i for i in range(5000)]
    slot = key_slot(keys[0])
    destination = next(n for n in cluster.primaries if n is not cluster.owner_of_slot(slot))
    with router_for(cluster) as router:
        write(router, keys, lambda k: pack((b"RPUSH", k, b"0")))
        migration = cluster.atomic_migration(slot, slot, destination).begin()
        for b in range(1, 4):
            write(router, keys, lambda k, b=b: pack((b"RPUSH", k, b"%d" % b)))
        migration.wait()
        for b in range(4, 7):
            write(router, keys, lambda k, b=b: pack((b"RPUSH", k, b"%d" % b)))
        assert router.stats.moved > 0 and router.stats.ask == router.stats.tryagain == 0, router.stats
    with destination.client() as client:
        for key in keys:
            assert client.lrange(key, 0, -1) == [b"%d" % b for b in range(7)]


def test_valkey_9_cluster_databases_are_written_where_the_url_says(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("valkey-9.1", shards=2, args=("--cluster-databases", "4"))
    topology = read_topology(parse_endpoint(f"redis://127.0.0.1:{cluster.nodes[0].port}/2"), FAST)
    assert {n.endpoint.db for n in topology.nodes} == {2}
    keys = [b"db2:%d" % i for i in range(2000)]
    with SlotRouter(topology, FAST) as router:
        write(router, keys, lambda k: pack((b"SET", k, b"x")), expect_ok=True)
    for node in cluster.primaries:
        with node.client(db=2) as in_db2, node.client() as in_db0:
            assert in_db2.dbsize() > 0 and in_db0.dbsize() == 0
