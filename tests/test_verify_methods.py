"""The ways --level full reads values (verify/routes.py): decoded DUMPs and server digests catch every corruption the
type-native reads catch; every first round gives the same verdicts; the report says which method compared each key."""

from __future__ import annotations

import math

import pytest

from fixtures.dataset import populate
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.facts.digests import digests_agree, zset_score_family
from migrate.rdb.decode import decode_object
from migrate.selection import KeySelection
from migrate.server import Channels
from migrate.verify import Level, Reason, VerifyResult
from migrate.verify.compare import PairPlan, compare_keys
from migrate.verify.digest import ReadPlan
from migrate.verify.dumpeq import same_body, stream_groups
from migrate.verify.fullread import FirstRound
from migrate.verify.routes import Routes, ValueMethod
from tests.verify_support import copy_server, verify_pair

# Every compact encoding off on the target: hashtables, skiplists, quicklists, so no DUMP body equals the source's.
NO_COMPACT = ("--hash-max-listpack-entries", "0", "--set-max-intset-entries", "0", "--zset-max-listpack-entries", "0",
              "--list-max-listpack-size", "1", "--set-max-listpack-entries", "0")
DEBUG = ("--enable-debug-command", "yes")


def full(source, target, **options) -> VerifyResult:
    return verify_pair(source, target, **{"level": Level.FULL, **options})


def small_values(client) -> None:
    client.hset("h", mapping={f"f{j}": f"value-{j}" for j in range(10)})
    client.rpush("l", *[f"item-{j}" for j in range(10)])
    client.sadd("s", *[f"member-{j}" for j in range(10)])
    client.zadd("z", {f"m{j}": j / 3 for j in range(10)})
    client.set("str", "hello")


def groups_stream(client) -> None:
    for n in range(1, 6):
        client.xadd("x", {"n": str(n), "v": "payload"}, id=f"1700000000000-{n}")
    client.xgroup_create("x", "g1", id="0")
    client.xreadgroup("g1", "alice", {"x": ">"}, count=3)
    client.xreadgroup("g1", "bob", {"x": ">"}, count=1)


def only(result: VerifyResult, key: bytes, reason: Reason = Reason.VALUE) -> str:
    assert [(d.key, d.reason) for d in result.divergent.keys] == [(key, reason)], result.divergent
    return result.divergent.keys[0].detail


# ---- decoded DUMPs ------------------------------------------------------------------------------------------------


@pytest.fixture
def encoded_apart(servers):
    """Redis 8.0 (listpacks) against Valkey 8.1 holding the same values in hashtables, skiplists, quicklists: every
    DUMP body differs, so --value-method dump decodes both payloads of every key."""
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1", *NO_COMPACT)
    small_values(source.client())
    copy_server(source, target, native=True)
    result = full(source, target, value_method=ValueMethod.DUMP)
    assert result.ok, result.divergent
    assert result.methods["decoded-dump"] == 4 and result.methods["dump-body"] == 1  # the string's body is equal
    return source, target


@pytest.mark.parametrize(("key", "change"), [
    (b"h", lambda c: c.hset("h", "f3", "value-X")),
    (b"l", lambda c: c.lset("l", 4, "item-X")),
    (b"s", lambda c: (c.srem("s", "member-2"), c.sadd("s", "member-X"))),
    (b"z", lambda c: c.zadd("z", {"m4": math.nextafter(4 / 3, math.inf)})),  # one ulp
], ids=["hash field", "list element", "set member", "zset score one ulp"])
def test_decoded_dumps_find_a_changed_element(encoded_apart, key, change):
    source, target = encoded_apart
    change(target.client())
    result = full(source, target, value_method=ValueMethod.DUMP)
    only(result, key)
    assert result.methods["decoded-dump"] == 4


@pytest.fixture
def streams_apart(servers):
    """Redis 7.0's type-19 stream with groups and pending entries, restored into Valkey 8.1 (type 21): decoded."""
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    groups_stream(source.client())
    copy_server(source, target)
    assert source.client().dump("x")[0] == 19 and target.client().dump("x")[0] == 21
    for method in ValueMethod:
        assert full(source, target, value_method=method).ok, method
    assert full(source, target).methods["decoded-dump"] == 1
    return source, target


def delivery(client, entry: bytes) -> tuple[int, int]:
    value = decode_object(client.dump("x")[0], client.dump("x")[1:-10])
    (pending,) = [p for p in value.groups[0].pending if b"%d-%d" % p.id == entry]
    return pending.delivery_time_ms, pending.delivery_count


@pytest.mark.parametrize("change", ["group last id", "stream entry", "delivery count", "pending owner"])
def test_decoded_dumps_find_stream_changes(streams_apart, change):
    source, target = streams_apart
    client = target.client()
    if change == "group last id":
        client.xgroup_setid("x", "g1", "1700000000000-2")
    elif change == "stream entry":
        client.xdel("x", "1700000000000-5")
    elif change == "delivery count":  # same owner and delivery time, one more delivery
        when, count = delivery(client, b"1700000000000-2")
        client.xclaim("x", "g1", "alice", 0, ["1700000000000-2"], time=when, retrycount=count + 1, justid=True)
        assert delivery(client, b"1700000000000-2") == (when, count + 1)
    else:
        client.xclaim("x", "g1", "bob", 0, ["1700000000000-1"], justid=True)
    for method in (ValueMethod.AUTO, ValueMethod.DUMP):
        result = full(source, target, value_method=method)
        only(result, b"x")
        assert result.methods["decoded-dump"] == 1
    only(full(source, target, value_method=ValueMethod.NATIVE), b"x")  # the type-native reads find it too


def test_decoded_dumps_compare_field_ttls_with_the_tolerance(servers):
    """Redis 8.0 listpack-ex against Valkey 9.1's hash encoding: different bodies, field TTLs decoded on both sides."""
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-9.1")
    client = source.client()
    client.hset("hfe", mapping={"keep": "1", "ttl": "2"})
    client.execute_command("HPEXPIRE", "hfe", 600_000, "FIELDS", 1, "ttl")
    copy_server(source, target)
    assert client.dump("hfe")[:-10] != target.client().dump("hfe")[:-10]
    assert full(source, target, value_method=ValueMethod.DUMP).methods["decoded-dump"] == 1
    when = client.execute_command("HPEXPIRETIME", "hfe", "FIELDS", 1, "ttl")[0]
    target.client().execute_command("HPEXPIREAT", "hfe", when + 1500, "FIELDS", 1, "ttl")
    assert full(source, target, value_method=ValueMethod.DUMP, ttl_tolerance=2).ok
    target.client().execute_command("HPEXPIREAT", "hfe", when + 5000, "FIELDS", 1, "ttl")
    only(full(source, target, value_method=ValueMethod.DUMP, ttl_tolerance=2), b"hfe", Reason.FIELD_TTL)
    target.client().execute_command("HPEXPIRE", "hfe", 600_000, "FIELDS", 1, "keep")
    only(full(source, target, value_method=ValueMethod.DUMP), b"hfe", Reason.FIELD_TTL)


def test_a_redis_7_stream_without_groups_settles_by_its_body(servers):
    """Types 19 and 21 write a stream without consumer groups alike: the bodies match after the type byte."""
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().xadd("plain", {"a": "1"}, id="5-1")
    groups_stream(source.client())
    copy_server(source, target)
    plain = (source.client().dump("plain"), target.client().dump("plain"))
    grouped = (source.client().dump("x"), target.client().dump("x"))
    assert (plain[0][0], plain[1][0]) == (19, 21) and same_body(*plain) and stream_groups(plain[0]) == 0
    assert not same_body(*grouped) and stream_groups(grouped[1]) == 1
    assert full(source, target).methods == {"dump-body": 1, "decoded-dump": 1, "digest": 0, "native": 0}


# ---- server digests ---------------------------------------------------------------------------------------------


def test_digests_settle_values_without_reading_them_and_find_changes(servers):
    source, target = servers.get("redis-8.0.6", *DEBUG), servers.get("valkey-9.1", *DEBUG, *NO_COMPACT)
    small_values(source.client())
    groups_stream(source.client())
    copy_server(source, target, native=True)
    result = full(source, target, server_digests="always")
    assert result.ok, result.divergent
    # Strings, hashes, lists, sets, zsets (Redis 8 and Valkey print scores alike); streams are not covered.
    assert result.methods["digest"] == 5 and result.methods["digest"] + result.methods["dump-body"] \
        + result.methods["decoded-dump"] + result.methods["native"] == 6
    target.client().zadd("z", {"m4": math.nextafter(4 / 3, math.inf)})
    target.client().hset("h", "f3", "value-X")
    result = full(source, target, server_digests="always")
    assert sorted((d.key, d.reason) for d in result.divergent.keys) == [(b"h", Reason.VALUE), (b"z", Reason.VALUE)]
    assert result.methods["digest"] == 3


def test_refused_digests_fall_back_silently(servers):
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-9.1")  # DEBUG disabled (the default)
    small_values(source.client())
    copy_server(source, target)
    result = full(source, target, server_digests="always")
    assert result.ok and result.methods["digest"] == 0 and sum(result.methods.values()) == 5
    assert result.to_json()["methods"] == result.methods


def test_digest_facts():
    redis7, redis8, valkey = ("redis", (7, 0, 15)), ("redis", (8, 0, 6)), ("valkey", (8, 1, 1))
    assert zset_score_family(*redis7) != zset_score_family(*redis8) == zset_score_family(*valkey)
    assert digests_agree("hash", redis7, valkey) and not digests_agree("stream", redis8, valkey)
    assert not digests_agree("zset", redis7, valkey) and digests_agree("zset", redis8, valkey)


# ---- first rounds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(FirstRound))
def test_every_first_round_gives_the_same_verdicts(servers, mode):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1")
    populate(source.client())
    copy_server(source, target)
    client = target.client()
    client.delete("str:ascii")
    client.hset("hash:small", "f1", "changed")
    client.lset("list:small", 0, "changed")
    client.srem("set:small", "alpha")
    client.zadd("zset:small", {"a": math.nextafter(1, 2)})
    client.persist("ttl:string")
    client.delete("set:intset")
    client.set("set:intset", "now a string")
    client.set("extra", "x")
    keys = [*sorted(source.client().keys("*")), b"extra"]
    plan = ReadPlan(chunk=5, string_chunk=1024)
    pair = PairPlan(0, 0, ReadPlan(chunk=5, string_chunk=1024, field_ttls=True), plan, b"PEXPIRETIME")
    sides = (Channels("source", parse_endpoint(source.url), ConnectionSettings()),
             Channels("target", parse_endpoint(target.url), ConnectionSettings()))
    try:
        result = compare_keys(*sides, pair, keys, True, 2000, KeySelection(), ConnectionSettings(), first=mode,
                              routes=Routes())
    finally:
        for side in sides:
            side.close()
    assert result.compared == len(keys)
    assert {(key, reason) for key, reason, _ in result.mismatches} == {
        (b"str:ascii", Reason.MISSING), (b"hash:small", Reason.VALUE), (b"list:small", Reason.VALUE),
        (b"set:small", Reason.VALUE), (b"zset:small", Reason.VALUE), (b"ttl:string", Reason.TTL),
        (b"set:intset", Reason.TYPE), (b"extra", Reason.EXTRA), (b"hfe:small", Reason.FIELD_TTL_UNSUPPORTED),
        (b"hfe:big", Reason.FIELD_TTL_UNSUPPORTED)}
    assert sum(result.methods.values()) == len(keys) - 3  # missing, extra and the type change compare no value


def test_the_report_names_the_methods(servers):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    small_values(source.client())
    copy_server(source, target)
    result = full(source, target)
    data = result.to_json()
    assert data["methods"] == result.methods and sum(data["methods"].values()) == 5
    assert data["databases"][0]["methods"] == {k: v for k, v in result.methods.items() if v}
    assert full(source, target, level=Level.KEYS).methods == {}
    from migrate.verify.report import render_human
    assert "values compared by: dump-body" in render_human(result)
