"""Datasets and readers for sharded runs: a small mixed dataset written through a cluster client (every type, TTLs,
hash tags, a big key for the chunked copier, hash field TTLs where the source has them), and both sides read back
with clients that follow the slots (redis-py's RedisCluster), so the oracle shares no code with migrate."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from fixtures.cluster import LocalCluster
from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
from migrate.config import split_urls as _split
from migrate.run import RunConfig, RunOptions
from tests.run_compare import compare_keys

Client = redis.Redis | RedisCluster


@dataclass
class Written:
    keys: set[bytes] = field(default_factory=set)
    field_ttl_keys: set[bytes] = field(default_factory=set)
    big: set[bytes] = field(default_factory=set)

    @property
    def total(self) -> int:
        return len(self.keys)


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    node = cluster.primaries[0]
    return RedisCluster(host="127.0.0.1", port=node.port, password=cluster.spec.password)


def client_of(side: LocalCluster | Any) -> Client:
    return cluster_client(side) if isinstance(side, LocalCluster) else side.client()


def fill(client: Client, count: int = 300, *, field_ttls: bool = False, big: bool = True,
         prefix: str = "k") -> Written:
    """`count` keys of every core type (a third with a TTL), hash-tagged groups, one big list and one big hash (over
    a 10 KB --big-key-threshold), and with `field_ttls` hashes whose fields expire."""
    out = Written()
    pipe = client.pipeline(transaction=False)
    expire_at = int(time.time() * 1000) + 3_600_000
    for i in range(count):
        kind = i % 6
        key = f"{prefix}:{i}" if i % 10 else f"{{{prefix}-tag:{i // 50}}}:{i}"  # some keys share a hash tag
        if kind == 0:
            pipe.set(key, f"value-{i}")
        elif kind == 1:
            pipe.hset(key, mapping={"a": str(i), "b": "x" * (i % 40)})
        elif kind == 2:
            pipe.rpush(key, *[f"e{j}" for j in range(1 + i % 5)])
        elif kind == 3:
            pipe.sadd(key, *[f"m{j}" for j in range(1 + i % 4)])
        elif kind == 4:
            pipe.zadd(key, {f"z{j}": j * 1.5 for j in range(1 + i % 4)})
        else:
            pipe.xadd(key, {"f": str(i)}, id=f"{i + 1}-1")
        if i % 3 == 0:
            pipe.pexpireat(key, expire_at + i)
        out.keys.add(key.encode())
    pipe.execute()
    for i in range(0, count, 30):
        key = f"{prefix}:{i + 5}"  # a stream with a consumer group and a pending entry
        client.xgroup_create(key, "g", id="0")
        client.xreadgroup("g", "c1", {key: ">"}, count=1)
    if big:
        client.rpush(f"{prefix}:big-list", *[f"element-{j}-" + "y" * 40 for j in range(400)])
        client.hset(f"{prefix}:big-hash", mapping={f"f{j}": "z" * 50 for j in range(300)})
        out.big |= {f"{prefix}:big-list".encode(), f"{prefix}:big-hash".encode()}
        out.keys |= out.big
    if field_ttls:
        for i in range(20):
            key = f"{prefix}:fttl:{i}"
            client.hset(key, mapping={"keep": "1", "goes": "2", "also": "3"})
            client.execute_command("HPEXPIRE", key, 3_600_000 + i, "FIELDS", 2, "goes", "also")
            out.field_ttl_keys.add(key.encode())
        out.keys |= out.field_ttl_keys
    return out


def diff(source: Client, target: Client, **kwargs: Any) -> list[str]:
    """tests.run_compare.differences across clusters: every key read on the node owning its slot, each side."""
    ignore = set(kwargs.pop("ignore", ()))
    src_keys, dst_keys = keys_of(source) - ignore, keys_of(target) - ignore
    out = [f"missing on target: {k!r}" for k in sorted(src_keys - dst_keys)]
    out += [f"extra on target: {k!r}" for k in sorted(dst_keys - src_keys)]
    groups: dict[tuple[int, int], tuple[redis.Redis, redis.Redis, list[bytes]]] = {}
    for key in sorted(src_keys & dst_keys):
        a, b = node_client(source, key), node_client(target, key)
        groups.setdefault((id(a), id(b)), (a, b, []))[2].append(key)
    for a, b, keys in groups.values():
        out += compare_keys(a, b, keys, **kwargs)
    return out


def node_client(client: Client, key: bytes) -> redis.Redis:
    """The client of the node holding `key` (a standalone client is its own)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def run_config(source_url: str, target_url: str, tmp_path: Path, **options: Any) -> RunConfig:
    sources, targets = _split(source_url), _split(target_url)
    common = CommonConfig(parse_endpoint(sources[0]), parse_endpoint(targets[0]), ConnectionSettings(retries=3),
                          tuple(parse_endpoint(u) for u in sources[1:]), tuple(parse_endpoint(u) for u in targets[1:]))
    options.setdefault("checkpoint", tmp_path / "cp.json")
    options.setdefault("big_key_threshold", 10_000)  # the big list and hash, not the small streams
    return RunConfig(common, RunOptions(**options))


def keys_of(client: Client) -> set[bytes]:
    return {k if isinstance(k, bytes) else k.encode() for k in client.scan_iter(count=1000)}


def seeds(cluster: LocalCluster, nodes: Iterable[int] = (0,)) -> str:
    return ",".join(cluster.nodes[i].url for i in nodes)
