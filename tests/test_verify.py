"""`verify` against real servers: clean copies verify clean on every pair, each corruption is found with its reason."""

from __future__ import annotations

import threading
import time
from collections import deque

import pytest
import redis

from fixtures.dataset import populate
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.selection import KeySelection
from migrate.server import Channels
from migrate.verify import Level, Reason, VerifyResult
from migrate.verify.compare import PairPlan, compare_keys
from migrate.verify.digest import ReadPlan
from migrate.wire import Channel, pack, parse
from tests.matrix import pairs
from tests.verify_support import copy_server, verify_pair

SOURCE, TARGET = "redis-8.0.2", "valkey-8.1"  # the cross-version pair every corruption test runs on


def run(source, target, **options) -> VerifyResult:
    # Small chunks so the 700-element collections of the dataset are read in many chunks.
    return verify_pair(source, target, **{"chunk_size": 50, **options})


@pytest.fixture
def migrated(servers):
    source, target = servers.get(SOURCE), servers.get(TARGET)
    populate(source.client())
    copy_server(source, target)
    return source, target


def only_divergence(result: VerifyResult):
    assert not result.ok
    assert result.divergent.total == 1, result.divergent
    return result.divergent.keys[0]


# ---- clean copies ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_name", "target_name"), pairs())
def test_a_clean_copy_verifies_clean(servers, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    data = populate(source.client())
    copy_server(source, target)
    result = run(source, target)
    assert result.ok, result.divergent
    assert result.changed.total == 0
    assert sum(db.compared for db in result.databases) == data.total
    assert {db.source_db for db in result.databases} == {0, 1, 2}
    lost_field_ttls = data.field_ttl_keys and not target.name.startswith("valkey-9")
    expected_notes = {(0, key) for key in data.field_ttl_keys} if lost_field_ttls else set()
    assert {(d.source_db, d.key) for d in result.not_compared.keys} == expected_notes
    assert all(d.reason is Reason.FIELD_TTL_UNSUPPORTED for d in result.not_compared.keys)


LOW_ENCODING_LIMITS = ("--hash-max-listpack-entries", "0", "--set-max-intset-entries", "0",
                       "--zset-max-listpack-entries", "0", "--list-max-listpack-size", "1",
                       "--set-max-listpack-entries", "0")


def test_digests_do_not_depend_on_encoding_or_version(servers):
    """Redis 8.0 (listpacks, intsets) against Valkey 8.1 holding the same data in hashtables, skiplists, quicklists."""
    source, target = servers.get(SOURCE), servers.get(TARGET, *LOW_ENCODING_LIMITS)
    populate(source.client())
    copy_server(source, target, native=True)
    src, dst = source.client(), target.client()
    for key in ("hash:small", "set:intset", "zset:small"):
        assert src.object("encoding", key) != dst.object("encoding", key), key
    result = run(source, target)
    assert result.ok, result.divergent
    assert sum(db.compared for db in result.databases) == sum(db.source_keys for db in result.databases)


def test_field_ttls_are_compared_when_both_sides_hold_them(servers):
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-9.1")
    populate(source.client())
    copy_server(source, target)
    assert run(source, target).ok
    target.client().execute_command("HPEXPIRE", "hfe:small", 60_000, "FIELDS", 1, "keep")
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"hfe:small", Reason.FIELD_TTL)


# ---- one corruption per test -------------------------------------------------------------------------------------


def test_missing_key(migrated):
    source, target = migrated
    target.client().delete("str:ascii")
    diff = only_divergence(run(source, target))
    assert (diff.source_db, diff.key, diff.reason) == (0, b"str:ascii", Reason.MISSING)


def test_extra_key(migrated):
    source, target = migrated
    target.client(1).set("extra:key", "x")
    diff = only_divergence(run(source, target))
    assert (diff.target_db, diff.key, diff.reason) == (1, b"extra:key", Reason.EXTRA)


def test_extra_keys_ruled_out_by_counting_when_nothing_changed(migrated):
    """A still copy: the counts prove there is no extra key, so the target is not scanned; the verdict is the same
    as with the reverse scan, and a forced scan agrees."""
    source, target = migrated
    counted = run(source, target, level=Level.KEYS)
    assert counted.ok, counted.divergent
    assert {d.extra_check for d in counted.databases} == {"count"}
    assert sum(d.target_scanned for d in counted.databases) == 0
    scanned = run(source, target, level=Level.KEYS, reverse_scan="always")
    assert scanned.ok and {d.extra_check for d in scanned.databases} == {"scan"}
    assert [d.compared for d in scanned.databases] == [d.compared for d in counted.databases]
    assert [d.target_scanned for d in scanned.databases] == [d.target_keys for d in scanned.databases]


def test_a_missing_and_an_extra_key_with_equal_counts_are_both_found(migrated):
    """Equal key counts prove nothing when a key is missing: the reverse scan runs and finds the extra one."""
    source, target = migrated
    target.client().delete("str:ascii")
    target.client().set("extra:key", "x")
    result = run(source, target, level=Level.KEYS)
    assert {(d.key, d.reason) for d in result.divergent.keys} == {(b"str:ascii", Reason.MISSING),
                                                                  (b"extra:key", Reason.EXTRA)}
    assert next(d for d in result.databases if d.target_db == 0).extra_check == "scan"


def test_filters_and_merged_databases_always_scan_the_target(migrated):
    source, target = migrated
    filtered = run(source, target, level=Level.KEYS, selection=KeySelection(match="str:*"))
    assert filtered.ok and {d.extra_check for d in filtered.databases} == {"scan"}
    sampled = run(source, target, level=Level.KEYS, sample_percent=50.0)
    assert sampled.ok and {d.extra_check for d in sampled.databases} == {"scan"}


def test_changed_hash_field(migrated):
    source, target = migrated
    target.client().hset("hash:big", "field-650", "changed")
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason, diff.detail) == (b"hash:big", Reason.VALUE, "field values differ")


def test_list_reordered(migrated):
    source, target = migrated
    client = target.client()
    first, second = client.lrange("list:big", 600, 601)
    client.lset("list:big", 600, second)
    client.lset("list:big", 601, first)
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"list:big", Reason.VALUE)
    assert "order" in diff.detail


def test_zset_score_changed_by_1e9(migrated):
    source, target = migrated
    client = target.client()
    score = client.zscore("zset:big", "m-600")
    client.zadd("zset:big", {"m-600": score + 1e-9})
    assert client.zscore("zset:big", "m-600") != score
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"zset:big", Reason.VALUE)


def test_ttl_removed(migrated):
    source, target = migrated
    target.client().persist("ttl:hash")
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"ttl:hash", Reason.TTL)
    assert "target has no TTL" in diff.detail


def test_ttl_added_in_a_database_without_ttls(migrated):
    """db 1 holds no TTL on the source: a TTL on the target must still be seen (expiries are then read)."""
    source, target = migrated
    assert run(source, target, level=Level.KEYS).ok
    target.client(1).expire("db1:hash", 600)
    diff = only_divergence(run(source, target, level=Level.KEYS))
    assert (diff.source_db, diff.key, diff.reason) == (1, b"db1:hash", Reason.TTL)


def test_stream_entry_missing(migrated):
    source, target = migrated
    client = target.client()
    last = client.xrevrange("stream:groups", count=1)[0][0]
    client.xdel("stream:groups", last)
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"stream:groups", Reason.VALUE)


def test_stream_consumer_group_changed(migrated):
    source, target = migrated
    target.client().xack("stream:groups", "g1", "1700000000005-0")
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason) == (b"stream:groups", Reason.VALUE)
    assert "consumer groups" in diff.detail


def test_key_of_another_type(migrated):
    source, target = migrated
    client = target.client()
    client.delete("set:small")
    client.set("set:small", "now a string")
    diff = only_divergence(run(source, target))
    assert (diff.key, diff.reason, diff.detail) == (b"set:small", Reason.TYPE, "source set, target string")


def test_key_in_a_different_db(migrated):
    source, target = migrated
    assert target.client().move("str:int", 5)
    diff = only_divergence(run(source, target))
    assert (diff.source_db, diff.target_db, diff.key, diff.reason) == (0, 0, b"str:int", Reason.IN_OTHER_DB)
    assert "db 5" in diff.detail


def test_big_string_changed_at_its_end(migrated):
    source, target = migrated
    client = target.client()
    value = client.get("str:compressible")
    client.set("str:compressible", value[:-1] + b"X")
    diff = only_divergence(run(source, target, string_chunk_bytes=1024))
    assert (diff.key, diff.reason) == (b"str:compressible", Reason.VALUE)


def test_keys_level_sees_ttl_and_type_but_not_values(migrated):
    source, target = migrated
    target.client().hset("hash:small", "f1", "changed")
    assert run(source, target, level=Level.KEYS).ok
    assert not run(source, target, level=Level.FULL).ok


def test_count_level(migrated):
    source, target = migrated
    result = run(source, target, level=Level.COUNT)
    assert result.ok and [db.count_match for db in result.databases] == [True, True, True]
    target.client(2).delete("db2:hash")
    result = run(source, target, level=Level.COUNT)
    assert not result.ok
    assert [(db.source_db, db.source_keys - db.target_keys) for db in result.count_mismatches] == [(2, 1)]


@pytest.mark.parametrize("strings_first", [False, True], ids=["type-first", "strings-first"])
def test_both_first_rounds_give_the_same_verdicts(migrated, strings_first):
    """A batch starts with TYPE + PTTL, or with PTTL + GETRANGE when the previous one was mostly strings."""
    source, target = migrated
    client = target.client()
    client.delete("str:ascii")
    client.set("str:raw", "y" * 100)
    client.set("str:compressible", b"abc" * 19999 + b"abX")
    client.hset("hash:small", "f1", "changed")
    client.persist("ttl:string")
    client.delete("set:small")
    client.set("set:small", "now a string")
    client.set("extra", "x")
    keys = [*sorted(source.client().keys("*")), b"extra"]
    plan = ReadPlan(chunk=5, string_chunk=1024)
    source_plan = ReadPlan(chunk=5, string_chunk=1024, field_ttls=True)  # Redis 8 holds field TTLs, Valkey 8.1 not
    sides = (Channels("source", parse_endpoint(source.url), ConnectionSettings()),
             Channels("target", parse_endpoint(target.url), ConnectionSettings()))
    try:
        result = compare_keys(*sides, PairPlan(0, 0, source_plan, plan), keys, True, 2000, KeySelection(),
                              ConnectionSettings(), strings_first)
    finally:
        for side in sides:
            side.close()
    assert result.compared == len(keys)
    assert {(key, reason) for key, reason, _ in result.mismatches} == {
        (b"str:ascii", Reason.MISSING), (b"str:raw", Reason.VALUE), (b"str:compressible", Reason.VALUE),
        (b"hash:small", Reason.VALUE), (b"ttl:string", Reason.TTL), (b"set:small", Reason.TYPE),
        (b"extra", Reason.EXTRA), (b"hfe:small", Reason.FIELD_TTL_UNSUPPORTED),
        (b"hfe:big", Reason.FIELD_TTL_UNSUPPORTED)}


def test_values_longer_than_a_chunk(migrated):
    """Chunks of 4 elements: every collection, stream entries and pending lists are read in several round trips."""
    source, target = migrated
    assert run(source, target, chunk_size=4, string_chunk_bytes=16).ok
    client = target.client()
    client.xclaim("stream:groups", "g1", "bob", 0, ["1700000000002-0"])  # same ids pending, another owner
    diff = only_divergence(run(source, target, chunk_size=4))
    assert (diff.key, diff.reason) == (b"stream:groups", Reason.VALUE)
    assert "consumer groups" in diff.detail


# ---- options -----------------------------------------------------------------------------------------------------


def test_ttl_tolerance(migrated):
    source, target = migrated
    client = target.client()
    client.pexpire("ttl:string", client.pttl("ttl:string") - 5000)
    assert run(source, target, ttl_tolerance=10).ok
    diff = only_divergence(run(source, target, ttl_tolerance=1))
    assert (diff.key, diff.reason) == (b"ttl:string", Reason.TTL)


def test_filters_limit_what_is_compared(migrated):
    source, target = migrated
    target.client().hset("hash:small", "f1", "changed")
    assert run(source, target, selection=KeySelection(match="str:*")).ok
    assert run(source, target, selection=KeySelection(types=("string", "list"))).ok
    assert run(source, target, selection=KeySelection(exclude=("hash:*",))).ok
    diff = only_divergence(run(source, target, selection=KeySelection(types=("hash",))))
    assert diff.key == b"hash:small"


def test_db_map(servers):
    source, target = servers.get(SOURCE), servers.get(TARGET)
    populate(source.client())
    copy_server(source, target, db_map={0: 3})
    selection = KeySelection(db_map=((0, 3), (1, 1), (2, 2)))
    result = run(source, target, selection=selection)
    assert result.ok, result.divergent
    assert [(db.source_db, db.target_db) for db in result.databases] == [(0, 3), (1, 1), (2, 2)]
    assert not run(source, target).ok  # without the map, db 0 is missing on the target


def test_sampling_is_deterministic_and_states_its_fraction(servers):
    source, target = servers.get(SOURCE), servers.get(TARGET)
    data = populate(source.client())
    # Every key is missing on the (empty) target, so the divergent keys are exactly the sample.
    first = run(source, target, sample=7, seed=1, max_report_keys=100)
    again = run(source, target, sample=7, seed=1, max_report_keys=100)
    other = run(source, target, sample=7, seed=2, max_report_keys=100)
    assert first.sample.sampled == 7 and first.sample.in_scope == data.total
    assert first.sample.fraction == pytest.approx(7 / data.total)
    assert first.divergent.total == 7
    assert [d.key for d in first.divergent.keys] == [d.key for d in again.divergent.keys]
    assert {d.key for d in first.divergent.keys} != {d.key for d in other.divergent.keys}
    half = run(source, target, sample_percent=50)
    assert 0 < half.sample.sampled < data.total and half.divergent.total == half.sample.sampled


def test_report_is_capped_with_counts_beyond_the_cap(migrated):
    source, target = migrated
    target.client().delete(*[f"str:{name}" for name in ("ascii", "int", "negint", "bigint", "empty", "raw")])
    result = run(source, target, max_report_keys=2)
    assert result.divergent.total == 6 and len(result.divergent.keys) == 2 and result.divergent.omitted == 4
    assert result.by_reason == {"field_ttls_not_storable_on_target": 2, "missing_on_target": 6}


# ---- non-key state -----------------------------------------------------------------------------------------------


def test_nonkey_state(migrated):
    source, target = migrated
    assert run(source, target).nonkey == ()
    target.client().execute_command("FUNCTION", "DELETE", "migratelib")
    source.client().execute_command("ACL", "SETUSER", "app", "on", ">s3cret-pass", "~app:*", "+get")
    target.client().config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = run(source, target)
    finally:
        source.client().execute_command("ACL", "DELUSER", "app")
        target.client().config_set("maxmemory-policy", "noeviction")
    found = {(d.kind, d.name, d.reason, d.severity) for d in result.nonkey}
    assert found == {("function", "migratelib", "missing_on_target", "divergence"),
                     ("acl_user", "app", "missing_on_target", "divergence"),
                     ("config", "maxmemory-policy", "differs", "warning")}
    assert not result.ok and result.divergent.total == 0
    assert "s3cret" not in repr(result)


def test_channel_reads_the_same_replies_on_every_read_path(migrated):
    source, _ = migrated
    wire = Channel.over(source.client())
    commands = [(b"TYPE", b"hash:small"), (b"PTTL", b"str:ascii"), (b"GET", b"list:small"),
                (b"ZRANGE", b"zset:small", 0, -1, b"WITHSCORES"), (b"XINFO", b"STREAM", b"stream:plain")]
    fast = wire.run(commands)  # read as one array (nothing else buffered)
    wire.send(commands)
    slow = wire.recv(1) + wire.recv(len(commands) - 1)  # one reply at a time, then the rest once buffered
    wire.send(commands)
    wire.send(commands)  # two rounds in flight: the second is read one reply at a time if already buffered
    two = wire.recv(len(commands)) + wire.recv(len(commands))
    wire.send_marked(pack_all(commands), b"token")
    raw = parse(wire.recv_marked(b"token"), len(commands))
    wire.close()
    for other in (slow, two[:5], two[5:], raw):
        assert [type(r) for r in fast] == [type(r) for r in other]
        assert fast[:2] == other[:2] and fast[3:] == other[3:] and str(fast[2]) == str(other[2])
    assert fast[:2] == [b"hash", -1] and str(fast[2]).startswith("WRONGTYPE")
    with pytest.raises(redis.exceptions.InvalidResponse):
        parse(pack_all(commands)[:-3], len(commands))


def pack_all(commands) -> bytes:
    return b"".join(pack(c) for c in commands)


# ---- live traffic ------------------------------------------------------------------------------------------------


class LaggingWriter(threading.Thread):
    """Writes to the source and, `lag` seconds later, the same to the target (a replica catching up)."""

    def __init__(self, source, target, lag: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.src, self.dst = source.client(), target.client()
        self.lag, self.duration = lag, duration
        self.writes = 0

    def run(self) -> None:
        queue: deque[tuple[float, str, str]] = deque()
        end = time.monotonic() + self.duration
        while time.monotonic() < end or queue:
            now = time.monotonic()
            if now < end:
                self.writes += 1
                for key in (f"live:hot:{self.writes % 10}", f"live:new:{self.writes}"):
                    self.src.set(key, self.writes)
                    queue.append((now + self.lag, key, str(self.writes)))
            while queue and queue[0][0] <= now:
                _, key, value = queue.popleft()
                self.dst.set(key, value)
            time.sleep(0.005)


def test_live_traffic_converges_and_is_not_divergent(migrated):
    source, target = migrated
    writer = LaggingWriter(source, target, lag=0.3, duration=1.5)
    writer.start()
    time.sleep(0.3)
    result = run(source, target, rounds=8, interval=0.5)
    writer.join(timeout=10)
    assert writer.writes > 50
    assert result.ok, result.divergent
    assert result.changed.total >= 1
    assert all(d.key.startswith(b"live:") for d in result.changed.keys)
    assert result.rounds_run >= 1


def test_equal_first_rounds_settle_a_batch_without_parsing(migrated):
    """Both servers answer a batch of strings with the same bytes: the batch is equal without reading any reply."""
    source, target = migrated
    keys = [b"str:ascii", b"str:int", b"str:empty", b"ttl:string", b"gone-on-both-sides"]
    plan = ReadPlan(chunk=5, string_chunk=1024)
    pair = PairPlan(0, 0, plan, plan, b"PEXPIRETIME")
    sides = (Channels("source", parse_endpoint(source.url), ConnectionSettings()),
             Channels("target", parse_endpoint(target.url), ConnectionSettings()))
    try:
        def compare(strings_first: bool):
            return compare_keys(*sides, pair, keys, True, 0, KeySelection(), ConnectionSettings(), strings_first)

        settled = compare(True)
        # Only the settled path counts the vanished key among the strings (it never looks at a reply).
        assert (settled.compared, settled.mismatches, settled.strings) == (5, [], 5)
        assert compare(False).mismatches == [] and compare(False).strings == 4
        mixed = [*keys, b"hash:small", b"list:big", b"zset:big", b"stream:groups", b"str:compressible"]
        both = compare_keys(*sides, pair, mixed, True, 0, KeySelection(), ConnectionSettings(), True)
        assert (both.compared, both.mismatches, both.strings) == (10, [], 6)
        target.client().hset("hash:small", "f2", "changed")  # the first round still answers the same bytes
        target.client().lset("list:big", 650, "changed")
        assert [(k, r) for k, r, _ in compare_keys(*sides, pair, mixed, True, 0, KeySelection(), ConnectionSettings(),
                                                   True).mismatches] == [(b"hash:small", Reason.VALUE),
                                                                         (b"list:big", Reason.VALUE)]
        target.client().set("str:int", 12346)
        assert [(k, r) for k, r, _ in compare(True).mismatches] == [(b"str:int", Reason.VALUE)]
        target.client().pexpire("ttl:string", 10_000)
        assert [(k, r) for k, r, _ in compare(True).mismatches] == [(b"str:int", Reason.VALUE),
                                                                   (b"ttl:string", Reason.TTL)]
    finally:
        for side in sides:
            side.close()
