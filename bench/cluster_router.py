"""Cluster router throughput: pre-encoded SET and RESTORE commands written by SlotRouter into 1-, 2- and 3-shard Valkey
8.1 clusters, against the pipelined Channel into one standalone Valkey 8.1, in the same run.

Every command is encoded and every slot computed before the clock starts (the writer has them at hand: the key's slot
is one CRC16, measured separately below), batches of BATCH commands, the +OK fast path on both sides
(Channel.call_ok, SlotRouter.execute(expect_ok=True)). Each target is emptied before each pass; best of REPEATS passes.
For reference, redis-py's RedisCluster pipeline on the 3-shard cluster (a tenth of the keys: it is slow).

Run: MIGRATE_SERVERS_DIR=/work/main/.servers .venv/bin/python bench/cluster_router.py [KEYS]  (prints the results)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.cluster import ClusterSpec, LocalCluster, start_cluster
from fixtures.sandbox import LocalServer, load_manifest
from migrate.cluster.router import SlotRouter
from migrate.cluster.topology import read_topology
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.rdb.rewrite import key_slot
from migrate.run.writer import restore_command
from migrate.wire import Channel, pack

SERVER = "valkey-8.1"
BATCH = 1000
REPEATS = 3
VALUE = b"x" * 100
SETTINGS = ConnectionSettings()


def workload(keys: list[bytes], payload: bytes) -> dict[str, list[bytes]]:
    return {"SET": [pack((b"SET", k, VALUE)) for k in keys],
            "RESTORE": [restore_command(k, payload, None, False) for k in keys]}


def best(passes: Callable[[], float]) -> float:
    return min(passes() for _ in range(REPEATS))


def standalone_pass(server: LocalServer, commands: list[bytes]) -> float:
    server.client().flushall()
    link = Channel(parse_endpoint(server.url), SETTINGS, "target", 0)
    try:
        started = time.perf_counter()
        for at in range(0, len(commands), BATCH):
            chunk = commands[at:at + BATCH]
            if link.call_ok(b"".join(chunk), len(chunk)) is not None:
                raise RuntimeError("a write failed")
        return time.perf_counter() - started
    finally:
        link.close()


def router_pass(cluster: LocalCluster, slots: list[int], commands: list[bytes]) -> float:
    cluster.flushall()
    topology = read_topology(parse_endpoint(cluster.url()), SETTINGS)
    with SlotRouter(topology, SETTINGS) as router:
        started = time.perf_counter()
        for at in range(0, len(commands), BATCH):
            result = router.execute(slots[at:at + BATCH], commands[at:at + BATCH], expect_ok=True)
            if result.replies is not None:
                raise RuntimeError("a write failed")
        seconds = time.perf_counter() - started
        assert router.stats.moved == router.stats.ask == 0
        return seconds


def redis_py_pass(cluster: LocalCluster, keys: list[bytes]) -> float:
    cluster.flushall()
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        started = time.perf_counter()
        for at in range(0, len(keys), BATCH):
            pipe = client.pipeline(transaction=False)
            for key in keys[at:at + BATCH]:
                pipe.set(key, VALUE)
            pipe.execute()
        return time.perf_counter() - started
    finally:
        client.close()


def slot_cost(keys: list[bytes]) -> float:
    started = time.perf_counter()
    for key in keys:
        key_slot(key)
    return (time.perf_counter() - started) / len(keys)


def main(count: int) -> None:
    binary = load_manifest()[SERVER]
    keys = [b"bench:%d" % i for i in range(count)]
    slots = [key_slot(k) for k in keys]
    standalone = LocalServer(binary).start()
    clusters: dict[int, LocalCluster] = {}
    try:
        with standalone.client() as client:
            client.set(b"probe", VALUE)
            payload = client.dump(b"probe")
        assert isinstance(payload, bytes)
        for shards in (1, 2, 3):
            clusters[shards] = start_cluster(ClusterSpec(SERVER, shards))
        work = workload(keys, payload)
        print(f"- Date: {time.strftime('%Y-%m-%d')}. Command: `.venv/bin/python bench/cluster_router.py {count}`. "
              f"Python {platform.python_version()}, {binary.name} ({binary.version}), {os.cpu_count()} CPUs shared "
              f"with other work (load average {os.getloadavg()[0]:.2f} at the start); {count:,} keys of "
              f"{len(VALUE)} bytes, batches of {BATCH}, best of {REPEATS}.")
        print("- Cluster start-up (fixtures/cluster.py): " + ", ".join(
            f"{s} shard{'s' if s > 1 else ''} {c.startup_seconds:.2f} s" for s, c in clusters.items()))
        print(f"- key_slot (CRC16 of the hash tag): {slot_cost(keys) * 1e6:.2f} µs per key")
        for kind, commands in work.items():
            base = best(lambda commands=commands: standalone_pass(standalone, commands))
            print(f"- {kind}: standalone Channel.call_ok: {base:.2f} s, {count / base:,.0f} keys/s")
            for shards, cluster in clusters.items():
                seconds = best(lambda c=cluster, commands=commands: router_pass(c, slots, commands))
                print(f"  - SlotRouter, {shards} shard{'s' if shards > 1 else ''}: {seconds:.2f} s, "
                      f"{count / seconds:,.0f} keys/s ({base / seconds:.2f}x the standalone Channel)")
        few = keys[:max(1000, count // 10)]
        seconds = redis_py_pass(clusters[3], few)
        print(f"- reference: redis-py RedisCluster pipeline SET, 3 shards, {len(few):,} keys: {seconds:.2f} s, "
              f"{len(few) / seconds:,.0f} keys/s")
    finally:
        standalone.cleanup()
        for cluster in clusters.values():
            cluster.cleanup()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
