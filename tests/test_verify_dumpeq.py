"""The DUMP fast path of --level full (verify/dumpeq.py): equal bodies settle small collections, nothing else does."""

from __future__ import annotations

import pytest

from migrate.config import CommonConfig, parse_endpoint
from migrate.verify import Level, Reason, VerifyConfig, VerifyOptions, VerifyResult, verify
from tests.verify_support import copy_server, verify_pair

PAIRS = [("redis-7.0", "valkey-8.1"), ("redis-8.0.2", "valkey-8.1"), ("valkey-8.1", "valkey-9.1")]


def run(source, target, **options) -> VerifyResult:
    return verify_pair(source, target, **{"level": Level.FULL, **options})


def small_collections(client, count: int = 50) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.hset(f"h:{i}", mapping={f"f{j}": f"value-{i}-{j}" for j in range(10)})
        pipe.zadd(f"z:{i}", {f"m{j}": j / 3 for j in range(10)})
        pipe.rpush(f"l:{i}", *[f"item-{j}" for j in range(10)])
        pipe.sadd(f"s:{i}", *range(10))  # an intset everywhere
    pipe.execute()


def calls(server, command: str) -> int:
    return int(server.client().info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def reset_stats(*servers) -> None:
    for server in servers:
        server.client().config_resetstat()


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS)
def test_equal_bodies_settle_small_collections_without_type_native_reads(servers, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    small_collections(source.client())
    copy_server(source, target)
    reset_stats(source, target)
    assert run(source, target).ok
    for server in (source, target):
        assert calls(server, "dump") >= 150  # hashes, zsets, sets; lists too where they are listpacks (7.2+)
        assert calls(server, "hscan") == calls(server, "zrange") == calls(server, "sscan") == 0
    reset_stats(source, target)
    assert run(source, target, dump_bodies=False).ok  # the canonical reads agree
    assert calls(source, "dump") == 0 and calls(source, "hscan") == calls(source, "zrange") == 50


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS[:2])
@pytest.mark.parametrize("change", ["hash field", "zset score", "list order", "set member"])
def test_a_changed_element_is_found_with_the_fast_path_on(servers, source_name, target_name, change):
    source, target = servers.get(source_name), servers.get(target_name)
    small_collections(source.client(), 5)
    copy_server(source, target)
    dst = target.client()
    key = {"hash field": "h:3", "zset score": "z:3", "list order": "l:3", "set member": "s:3"}[change]
    if change == "hash field":
        dst.hset(key, "f4", "value-3-X")  # same length: the body differs in one byte
    elif change == "zset score":
        dst.zadd(key, {"m4": 4 / 3 + 1e-9})
    elif change == "list order":
        dst.lset(key, 2, "item-3"), dst.lset(key, 3, "item-2")
    else:
        dst.srem(key, 9), dst.sadd(key, 11)
    result = run(source, target)
    assert [(d.key, d.reason) for d in result.divergent.keys] == [(key.encode(), Reason.VALUE)]


def test_a_listpack_over_the_limit_is_read_in_chunks_not_dumped(servers):
    """A user may raise the listpack limits: a 60 KB listpack is not DUMPed whole (memory bound)."""
    limits = ("--hash-max-listpack-entries", "100000", "--hash-max-listpack-value", "1000")
    source, target = servers.get("redis-7.0", *limits), servers.get("valkey-8.1", *limits)
    source.client().hset("big-listpack", mapping={f"field-{j}": "v" * 20 for j in range(2000)})
    copy_server(source, target)
    assert target.client().object("encoding", "big-listpack") == b"listpack"
    reset_stats(source, target)
    assert run(source, target, chunk_size=500).ok
    assert calls(source, "dump") == calls(target, "dump") == 0
    assert calls(source, "hscan") >= 1  # a listpack answers HSCAN whole, whatever COUNT says
    target.client().hset("big-listpack", "field-1999", "w" * 20)
    assert [d.key for d in run(source, target).divergent.keys] == [b"big-listpack"]


def test_a_user_without_dump_or_memory_still_verifies(servers):
    source, target = servers.get("valkey-8.1"), servers.get("valkey-9.1")
    small_collections(source.client(), 5)
    copy_server(source, target)
    for server in (source, target):
        server.client().execute_command("ACL", "SETUSER", "nodump", "on", ">pw", "~*", "&*", "+@all", "-dump",
                                        "-memory")
    try:
        common = CommonConfig(parse_endpoint(source.url_for(0, "nodump", "pw")),
                              parse_endpoint(target.url_for(0, "nodump", "pw")))
        config = VerifyConfig(common, VerifyOptions(level=Level.FULL, rounds=0, check_nonkey=False))
        assert verify(config).ok
        target.client().hset("h:1", "f1", "changed")
        assert [d.key for d in verify(config).divergent.keys] == [b"h:1"]
    finally:
        for server in (source, target):
            server.client().execute_command("ACL", "DELUSER", "nodump")
