"""The command rewriter: chunking and arguments without servers, then every dataset key rebuilt on real targets."""

from __future__ import annotations

import time

import pytest
import redis

from fixtures.dataset import populate
from migrate.errors import TargetOutOfMemoryError
from migrate.facts.capabilities import Capabilities
from migrate.identity import identify
from migrate.rdb.rewrite import (
    TEMP_KEY_MARK,
    TEMP_KEY_TTL_MS,
    UnsupportedValueError,
    command_bytes,
    key_slot,
    rewrite_commands,
    rewrite_losses,
    score_arg,
    temp_key,
)
from migrate.rdb.values import HashValue, ModuleValue, StreamValue
from tests.matrix import params
from tests.readback import apply_to, comparable, raw, read_expire_at_ms, read_value

VALKEY_81 = Capabilities("valkey", (8, 1, 1))
VALKEY_91 = Capabilities("valkey", (9, 1, 2))
NOW = 1_800_000_000_000


def resp_size(command) -> int:
    """The exact bytes redis-py puts on the wire for a command."""
    return sum(len(chunk) for chunk in redis.Connection().pack_command(*command))


def commands(key, value, target=VALKEY_81, **kw):
    kw.setdefault("expire_at_ms", None)
    kw.setdefault("keep_field_ttls", False)
    return list(rewrite_commands(key, value, target=target, now_ms=NOW, **kw))


def test_command_size_is_the_wire_size():
    for command in (("SET", b"k", b"v" * 1000), ("ZADD", b"k", score_arg(1e-300), b"m"), ("PEXPIRE", b"k", 123),
                    ("HPEXPIREAT", "k", NOW, "FIELDS", 1, "f\u00fc")):
        assert command_bytes(command) == resp_size(command)


@pytest.mark.parametrize("limit", [256, 1000, 4096])
def test_no_command_exceeds_the_limit(limit):
    values = [
        [f"element-{i}".encode() for i in range(500)],
        {f"member-{i}".encode() for i in range(500)},
        [(f"m{i}".encode(), i / 7) for i in range(500)],
        HashValue({f"f{i}".encode(): b"v" * 20 for i in range(300)}, {f"f{i}".encode(): NOW + i for i in range(300)}),
        b"s" * 20_000,
    ]
    for value in values:
        out = commands(b"key", value, VALKEY_91, max_command_bytes=limit, keep_field_ttls=True)
        assert len(out) > 3
        assert max(resp_size(c) for c in out) <= limit


def test_an_element_bigger_than_the_limit_goes_alone():
    out = commands(b"key", [b"x" * 5000, b"y", b"z"], max_command_bytes=1000)
    pushes = [c for c in out if c[0] == "RPUSH"]
    assert [len(c) - 2 for c in pushes] == [1, 2]


def test_big_strings_are_appended_in_pieces():
    value = bytes(range(256)) * 100
    out = commands(b"key", value, max_command_bytes=1000)
    assert out[0][0] == "SET" and {c[0] for c in out[2:-2]} == {"APPEND"}
    assert b"".join(c[2] for c in out if c[0] in ("SET", "APPEND")) == value


def test_small_string_is_one_set_then_the_absolute_expiry():
    assert commands(b"k", b"v", expire_at_ms=NOW + 5) == [("SET", b"k", b"v"), ("PEXPIREAT", b"k", NOW + 5)]


def test_a_value_of_one_write_replaces_the_key_directly():
    assert commands(b"k", [b"a", b"b"], expire_at_ms=NOW + 5) == [("DEL", b"k"), ("RPUSH", b"k", b"a", b"b"),
                                                                  ("PEXPIREAT", b"k", NOW + 5)]
    assert commands(b"k", {b"a"}) == [("DEL", b"k"), ("SADD", b"k", b"a")]


def test_bigger_values_go_through_a_temp_key_renamed_at_the_end():
    out = commands(b"k", [b"a", b"b"], expire_at_ms=NOW + 5, max_command_bytes=40)
    tmp = out[0][1]
    assert out == [("RPUSH", tmp, b"a"), ("PEXPIRE", tmp, TEMP_KEY_TTL_MS), ("RPUSH", tmp, b"b"),
                   ("RENAME", tmp, b"k"), ("PEXPIREAT", b"k", NOW + 5)]
    assert commands(b"k", {b"a", b"b"}, max_command_bytes=40)[-1] == ("PERSIST", b"k")
    hfe = commands(b"k", HashValue({b"a": b"1"}, {b"a": NOW + 9}), VALKEY_91, keep_field_ttls=True)
    assert [c[0] for c in hfe] == ["HSET", "PEXPIRE", "HPEXPIREAT", "RENAME", "PERSIST"]


def test_scores_are_exact():
    for score in (0.1 + 0.2, 1e-300, -0.0, 2.5, float("inf"), float("-inf"), 1 / 3):
        assert float(score_arg(score)) == score
    assert score_arg(float("inf")) == b"inf"


def test_expired_key_and_fields_are_not_written():
    assert commands(b"k", b"v", expire_at_ms=NOW) == [("DEL", b"k")]
    gone = HashValue({b"a": b"1"}, {b"a": NOW - 1})
    assert commands(b"k", gone, VALKEY_91, keep_field_ttls=True) == [("DEL", b"k")]
    half = HashValue({b"a": b"1", b"b": b"2"}, {b"a": NOW - 1, b"b": NOW + 9})
    out = commands(b"k", half, VALKEY_91, keep_field_ttls=True)
    assert out[0][2:] == (b"b", b"2") and ("HPEXPIREAT", out[0][1], NOW + 9, "FIELDS", 1, b"b") in out


def test_field_ttls_need_a_target_that_has_them():
    with pytest.raises(ValueError, match="HPEXPIREAT"):
        commands(b"k", HashValue({b"a": b"1"}, {b"a": NOW + 9}), VALKEY_81, keep_field_ttls=True)
    assert rewrite_losses(HashValue({b"a": b"1"}, {b"a": NOW + 9}), VALKEY_81, keep_field_ttls=False) == (
        "field TTLs",)


def test_module_values_cannot_be_rewritten():
    with pytest.raises(UnsupportedValueError, match="ft_invidx"):
        commands(b"k", ModuleValue("ft_invidx", 0, 0))


def test_temp_keys_stay_in_the_key_slot():
    assert key_slot(b"foo") == 12182  # the example of the cluster specification
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    for key in (b"foo", b"", b"a}b", b"{}x", b"{a}{b}", b"\xff" * 40, "ключ".encode(), b"{tag}rest"):
        tmp = temp_key(key)
        assert key_slot(tmp) == key_slot(key) and TEMP_KEY_MARK in tmp
    assert temp_key(b"foo") != temp_key(b"foo")


# --- real servers --------------------------------------------------------------------------------------------------

SOURCE = "redis-8.0.6"  # every stream counter and hash field TTLs: the richest values to rebuild
REWRITE_TARGETS = ("redis-6.0", "redis-7.0", "valkey-8.0", "valkey-8.1", "valkey-9.1")


@pytest.fixture(scope="module")
def source_values(servers):
    server = servers.get(SOURCE)
    data = populate(server.client(), extra=True)
    out = {}
    for db, keys in data.keys.items():
        client = server.client(db)
        for key in keys:
            out[(db, key)] = (read_value(client, key), read_expire_at_ms(client, key))
    return out


@pytest.mark.parametrize("name", params(REWRITE_TARGETS))
def test_every_dataset_key_rebuilds_in_small_chunks(servers, source_values, name):
    """Small commands and batches force the multi-command path; pre-existing keys of another type are replaced."""
    server = servers.get(name)
    target = identify(server.client()).capabilities
    keep = target.hash_field_ttl
    for (db, key), (value, expire_at) in source_values.items():
        client = server.client(db)
        client.set(key, b"old value of another type")
        sequence = rewrite_commands(key, value, target=target, expire_at_ms=expire_at, max_command_bytes=600,
                                    keep_field_ttls=keep)
        apply_to(client, sequence, batch_bytes=2000, batch_commands=7)
        got = read_value(client, key)
        assert_rebuilt(value, got, target, keep, key)
        assert_expiry(expire_at, read_expire_at_ms(client, key), key)
    assert not [k for db in range(3) for k in server.client(db).keys(b"*" + TEMP_KEY_MARK + b"*")]


def assert_rebuilt(value, got, target: Capabilities, keep: bool, key) -> None:
    expected, actual = comparable(value, got, field_ttls=keep)
    if isinstance(value, StreamValue):
        losses = rewrite_losses(value, target, keep_field_ttls=keep)
        if not target.has("XSETID ENTRIESADDED"):
            assert "stream entries-added and max-deleted-id" in losses or value.entries_added is None
        if any(g.consumers for g in value.groups):
            assert "consumer seen-time and active-time" in losses
    assert actual == expected, key


def assert_expiry(expected: int | None, actual: int | None, key) -> None:
    if expected is None:
        assert actual is None, key
    else:
        assert actual is not None and abs(actual - expected) <= 1500, key


def test_stream_metadata_commands_cannot_keep_is_reported(servers):
    """Idle consumer, pending entry of a deleted message: kept where commands allow, named as lost elsewhere."""
    src = servers.get(SOURCE).client()
    src.xadd("s", {"a": "1"}, id="1-1")
    src.xadd("s", {"b": "2"}, id="2-1")
    src.xgroup_create("s", "g", id="0")
    src.xreadgroup("g", "reader", {"s": ">"})
    raw(src, "XGROUP", "CREATECONSUMER", "s", "g", "idle")
    src.xdel("s", "1-1")
    value = read_value(src, b"s")
    for name, lost_idle in (("redis-6.0", True), ("valkey-8.1", False)):
        client = servers.get(name).client()
        target = identify(client).capabilities
        losses = rewrite_losses(value, target, keep_field_ttls=False)
        assert "1 pending entries of deleted stream entries" in losses
        assert ("1 consumers without pending entries" in losses) is lost_idle
        apply_to(client, rewrite_commands(b"s", value, target=target, expire_at_ms=None, keep_field_ttls=False))
        got = read_value(client, b"s")
        assert isinstance(got, StreamValue)
        assert got.entries == value.entries and got.last_id == value.last_id
        (group,) = got.groups
        assert [(p.id, p.consumer, p.delivery_count) for p in group.pending] == [((2, 1), b"reader", 1)]
        assert [c.name for c in group.consumers] == ([b"reader"] if lost_idle else [b"idle", b"reader"])


def test_a_half_written_key_is_never_visible(servers):
    client = servers.get("valkey-8.1").client()
    target = identify(client).capabilities
    client.rpush("big", "old")
    value = [f"element-{i}".encode() for i in range(2000)]
    sequence = list(rewrite_commands(b"big", value, target=target, expire_at_ms=None, max_command_bytes=1024,
                                     keep_field_ttls=False))
    rename = next(i for i, c in enumerate(sequence) if c[0] == "RENAME")
    apply_to(client, sequence[:rename])  # a run that dies just before the RENAME
    assert client.lrange("big", 0, -1) == [b"old"]
    tmp = sequence[0][1]
    assert client.llen(tmp) == 2000 and 0 < client.pttl(tmp) <= TEMP_KEY_TTL_MS
    apply_to(client, sequence[rename:])
    assert client.lrange("big", 0, -1) == value and client.ttl("big") == -1 and not client.exists(tmp)


def test_a_refused_batch_stops_before_the_rename(servers):
    client = servers.get("valkey-8.1", "--maxmemory", "1mb").client()
    target = identify(client).capabilities
    sequence = rewrite_commands(b"h", HashValue({b"f": b"v" * 100}), target=target, expire_at_ms=None,
                                keep_field_ttls=False)
    with pytest.raises(TargetOutOfMemoryError):
        apply_to(client, sequence, batch_commands=1)
    assert client.dbsize() == 0


def test_expiry_in_the_near_future_is_absolute(servers):
    client = servers.get("valkey-9.1").client()
    target = identify(client).capabilities
    at = int(time.time() * 1000) + 600_000
    apply_to(client, rewrite_commands(b"k", {b"a"}, target=target, expire_at_ms=at, keep_field_ttls=False))
    assert int(client.execute_command("PEXPIRETIME", "k")) == at
