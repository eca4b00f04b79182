"""Every DUMP of the dataset, from every source of the matrix, into every target: planned, applied, read back equal.

The plan must also be the cheapest that works, measured on the target itself: a RESTAMP is only chosen when the
original payload is refused, a REWRITE only when the restamped payload is refused too. Keys a target cannot hold
take the rewrite path and their losses are named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
import redis

from fixtures.dataset import populate
from migrate.identity import ServerIdentity, identify
from migrate.rdb.decode import decode_object
from migrate.rdb.dump import Action, Conversion, parse_dump, plan_conversion, restamp
from migrate.rdb.rewrite import rewrite_commands, rewrite_losses
from migrate.rdb.values import Value
from tests.matrix import SOURCES
from tests.readback import apply_to, comparable, raw, read_expire_at_ms, read_value

RELAXED = ("--rdb-version-check", "relaxed")
TARGETS = (("valkey-8.0", ()), ("valkey-8.1", ()), ("valkey-9.1", ()), ("valkey-9.1", RELAXED))
REDIS_PAIRS = (("redis-8.0.6", "redis-7.0"), ("redis-8.0.2", "redis-6.0"), ("redis-6.0", "redis-8.0.2"),
               ("valkey-9.1", "redis-8.0.6"), ("valkey-9.1", "valkey-8.1"))


@dataclass(frozen=True)
class Captured:
    payload: bytes
    value: Value
    expire_at_ms: int | None


def capture(server) -> dict[tuple[int, bytes], Captured]:
    data = populate(server.client(), extra=True)  # every encoding edge too: integer widths, multi-node quicklists
    out = {}
    for db, keys in data.keys.items():
        client = server.client(db)
        for key in keys:
            out[(db, key)] = Captured(client.dump(key), read_value(client, key), read_expire_at_ms(client, key))
    return out


@pytest.fixture(scope="module")
def snapshots(servers):
    cache: dict[str, dict[tuple[int, bytes], Captured]] = {}

    def get(name: str) -> dict[tuple[int, bytes], Captured]:
        if name not in cache:
            cache[name] = capture(servers.get(name))
        return cache[name]

    return get


def pair_params():
    out = [pytest.param(s, t, a, id=f"{s}->{t}{'-relaxed' if a else ''}") for s in SOURCES for t, a in TARGETS]
    out += [pytest.param(s, t, (), id=f"{s}->{t}") for s, t in REDIS_PAIRS]
    return out


@pytest.mark.parametrize(("source", "target_name", "args"), pair_params())
def test_every_key_reaches_the_target(servers, snapshots, source, target_name, args):
    snapshot = snapshots(source)
    server = servers.get(target_name, *args)
    target = identify(server.client()).capabilities
    actions: Counter[Action] = Counter()
    for (db, key), item in snapshot.items():
        client = server.client(db)
        conversion = plan_conversion(item.payload, target)
        actions[conversion.action] += 1
        kept = apply(client, key, item, conversion, target)
        got = read_value(client, key)
        expected, actual = comparable(item.value, got, field_ttls=kept)
        assert actual == expected, (key, conversion.action)
        assert_expiry(item.expire_at_ms, read_expire_at_ms(client, key), key)
    assert actions[Action.UNSUPPORTED] == 0
    assert sum(actions.values()) == len(snapshot)


def apply(client: redis.Redis, key: bytes, item: Captured, conversion: Conversion, target: ServerIdentity) -> bool:
    """Carry out the plan; prove it was needed; return whether field TTLs were kept."""
    if conversion.action is Action.AS_IS:
        assert restore(client, key, conversion.payload, item.expire_at_ms) is None
        return True
    assert restore(client, key, item.payload, item.expire_at_ms) is not None, "as-is would have worked"
    if conversion.action is Action.RESTAMP:
        assert parse_dump(conversion.payload).rdb_version == target.rdb_version
        assert restore(client, key, conversion.payload, item.expire_at_ms) is None
        return True
    assert conversion.action is Action.REWRITE, conversion.reason
    if target.rdb_version is not None:
        assert restore(client, key, restamp(item.payload, target.rdb_version), item.expire_at_ms) is not None, (
            "a restamp would have worked")
    dump = parse_dump(item.payload)
    value = decode_object(dump.type_byte, dump.body, rdb_version=dump.rdb_version)
    keep = target.hash_field_ttl
    assert set(conversion.losses) <= set(rewrite_losses(value, target, keep_field_ttls=keep))
    apply_to(client, rewrite_commands(key, value, target=target, expire_at_ms=item.expire_at_ms,
                                            keep_field_ttls=keep))
    return keep


def restore(client: redis.Redis, key: bytes, payload: bytes | None, expire_at_ms: int | None) -> str | None:
    """RESTORE with the absolute TTL; the error text, or None when it worked."""
    assert payload is not None
    ttl = ("ABSTTL",) if expire_at_ms is not None else ()
    try:
        raw(client, "RESTORE", key, expire_at_ms or 0, payload, "REPLACE", *ttl)
    except redis.ResponseError as exc:
        return str(exc)
    return None


def assert_expiry(expected: int | None, actual: int | None, key: bytes) -> None:
    if expected is None:
        assert actual is None, key
    else:
        assert actual is not None and abs(actual - expected) <= 1500, key


def test_field_ttl_hashes_into_valkey_8_lose_only_their_ttls(servers, snapshots):
    """Redis 8 type 25 into Valkey 8.1: rewritten, fields kept, TTLs named as lost and absent on the target."""
    snapshot = snapshots("redis-8.0.6")
    client = servers.get("valkey-8.1").client()
    target = identify(client).capabilities
    hfe = {k: v for (db, k), v in snapshot.items() if k.startswith(b"hfe:")}
    assert len(hfe) == 2
    for key, item in hfe.items():
        conversion = plan_conversion(item.payload, target)
        assert (conversion.action, conversion.losses) == (Action.REWRITE, ("field TTLs",))
        apply(client, key, item, conversion, target)
        assert client.hgetall(key) == item.value.fields and item.value.field_expiry_ms


def test_field_ttl_hashes_into_valkey_9_keep_them(servers, snapshots):
    snapshot = snapshots("redis-8.0.2")
    client = servers.get("valkey-9.1").client()
    target = identify(client).capabilities
    for key in (b"hfe:small", b"hfe:big"):
        item = snapshot[(0, key)]
        conversion = plan_conversion(item.payload, target)
        assert (conversion.action, conversion.losses) == (Action.REWRITE, ())
        apply(client, key, item, conversion, target)
        assert read_value(client, key) == item.value


@pytest.fixture(scope="module")
def module_keys(servers):
    """RediSearch 1.2 (module `ft`) index keys on Redis 7.0: real module-typed DUMP payloads."""
    path = servers.binaries["redis-7.0"].modules.get("redisearch")
    if not path:
        pytest.skip("redis-7.0 has no RediSearch module provisioned")
    client = servers.get("redis-7.0", "--loadmodule", path).client()
    client.execute_command("FT.CREATE", "idx", "SCHEMA", "title", "TEXT", "n", "NUMERIC", "t", "TAG")
    client.execute_command("FT.ADD", "idx", "doc1", 1.0, "FIELDS", "title", "hello world", "n", 5, "t", "a")
    return {key: (client.type(key).decode(), client.dump(key)) for key in client.keys("*")}


@pytest.mark.parametrize("target_name", ["valkey-8.1", "valkey-9.1"])
def test_module_values_are_unsupported_by_name(servers, module_keys, target_name):
    client = servers.get(target_name).client()
    target = identify(client).capabilities
    kinds = set()
    for key, (kind, payload) in module_keys.items():
        conversion = plan_conversion(payload, target)
        if kind == "hash":  # the indexed document itself: RDB 10 is read by every Valkey
            assert conversion.action is Action.AS_IS
            continue
        kinds.add(kind)
        assert conversion.action is Action.UNSUPPORTED and f"'{kind}'" in conversion.reason
        assert restore(client, key, restamp(payload, target.rdb_version), None) is not None
    assert {"ft_index0", "ft_invidx"} <= kinds
