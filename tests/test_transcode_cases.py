"""The transcoder on hand-built files holding every conversion case, checked by real target servers.

The Redis-dialect file (REDIS0012) holds every encoding a release ever wrote (zipmap, ziplists, intset, quicklists,
ASCII-double sorted sets, listpacks), Redis's four hash-with-field-TTL forms (22, 23: the 7.4 release candidates' with
absolute TTLs; 24, 25: GA, relative to a smallest expiry) with live, absent and already expired field TTLs, a version-3
stream with a deleted entry, a consumer group, PEL and consumers, empty collections of every form, an expired key, a
module value with its module aux data, a function library, SLOT_INFO opcodes and three databases. The Valkey-dialect
file (VALKEY080) holds HASH_2 hashes and the SLOT_INFO / SLOT_IMPORT opcodes. Expected values are written out here,
not decoded by the code under test; the target server is the judge of every byte written.
"""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import pytest

from migrate.errors import BadInputError, ConfigError, IncompatibleDataError
from migrate.rdb import constants as C
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import read_records
from migrate.rdb.records import AuxField, KeyRecord
from migrate.rdb.reencode import LOST_ACTIVE_TIME, LOST_ENTRIES_READ, LOST_FIELD_TTLS, LOST_STREAM_COUNTERS
from migrate.rdb.target import TargetFormat, target_format
from migrate.rdb.transcode import TranscodeOptions, precheck, transcode, transcode_chunks
from migrate.rdb.values import HashValue, PendingEntry, StreamConsumer, StreamEntry, StreamGroup, StreamValue
from tests.rdb_builders import ascii_double, int_string, length, listpack, lzf_string, string, ziplist, zipmap
from tests.readback import raw, read_expire_at_ms, read_value
from tests.transcode_support import (
    aux,
    functions_on,
    rdb_bytes,
    record,
    resize,
    same_stream,
    select,
    start_on,
    target_of,
)

NOW = int(time.time() * 1000)
FUTURE = NOW + 10 * 86_400_000
FUTURE2 = NOW + 20 * 86_400_000
GONE = NOW - 60_000  # a field TTL already passed
LONG_AGO = 1_000_000  # a key expiry long passed
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rdb"
TARGETS = ("valkey-8.0", "valkey-8.1", "valkey-9.1", "redis-6.0", "redis-7.0", "redis-8.0.6")
MODULE_ID = C.module_id("fakemodul", 1)
FUNCTION = b"#!lua name=tclib\nredis.register_function('tc_echo', function(keys, args) return args[1] end)"


def ms(t: int) -> bytes:
    return struct.pack("<q", t)


def intset(*values: int) -> bytes:
    return struct.pack("<II", 2, len(values)) + b"".join(struct.pack("<h", v) for v in sorted(values))


def sid(ms_: int, seq: int) -> bytes:
    return struct.pack(">QQ", ms_, seq)


def stream_v3() -> bytes:
    """One node (master 1000-0): 1000-0 {a:1, b:2}, 1000-1 {c:3}, 1001-0 deleted; a group with two pending entries
    and three consumers (one without pending entries)."""
    node = listpack([2, 1, 2, b"a", b"b", 0,
                     2, 0, 0, b"1", b"2", 5,
                     0, 0, 1, 1, b"c", b"3", 6,
                     3, 1, 0, b"x", b"y", 5])
    body = length(1) + string(sid(1000, 0)) + string(node)
    body += length(2) + length(1001) + length(0)  # length, last id
    body += length(1000) + length(0) + length(1001) + length(0) + length(3)  # first id, max deleted id, added
    body += length(1) + string(b"g") + length(1000) + length(1) + length(2)  # group g, last id 1000-1, read 2
    body += length(2) + sid(1000, 0) + ms(1_700_000_000_000) + length(2) + sid(1000, 1) + ms(1_700_000_000_500) \
        + length(1)
    body += length(3)
    body += string(b"alice") + ms(1_700_000_001_000) + ms(1_700_000_002_000) + length(1) + sid(1000, 0)
    body += string(b"bob") + ms(1_700_000_003_000) + ms(1_700_000_003_000) + length(1) + sid(1000, 1)
    body += string(b"carol") + ms(1_700_000_004_000) + ms(1_700_000_005_000) + length(0)
    return body


STREAM = StreamValue(
    entries=(StreamEntry((1000, 0), ((b"a", b"1"), (b"b", b"2"))), StreamEntry((1000, 1), ((b"c", b"3"),))),
    length=2, last_id=(1001, 0), first_id=(1000, 0), max_deleted_id=(1001, 0), entries_added=3,
    groups=(StreamGroup(b"g", (1000, 1), 2,
                        (PendingEntry((1000, 0), b"alice", 1_700_000_000_000, 2),
                         PendingEntry((1000, 1), b"bob", 1_700_000_000_500, 1)),
                        (StreamConsumer(b"alice", 1_700_000_001_000, 1_700_000_002_000, ((1000, 0),)),
                         StreamConsumer(b"bob", 1_700_000_003_000, 1_700_000_003_000, ((1000, 1),)),
                         StreamConsumer(b"carol", 1_700_000_004_000, 1_700_000_005_000, ()))),))

# key -> (type byte, serialized value, expected value; field TTLs as the target keeps them when it can)
REDIS_KEYS: dict[bytes, tuple[int, bytes, object]] = {
    b"s:plain": (0, string(b"hello"), b"hello"),
    b"s:lzf": (0, lzf_string(b"abc" * 100), b"abc" * 100),
    b"s:int": (0, int_string(-12345), b"-12345"),
    b"l:linked": (1, length(3) + string(b"a") + string(b"b") + string(b"c"), [b"a", b"b", b"c"]),
    b"h:zipmap": (9, string(zipmap([(b"f1", b"v1"), (b"f2", b"v2")], free=2)), HashValue({b"f1": b"v1", b"f2": b"v2"})),
    b"l:ziplist": (10, string(ziplist([b"x", 5, -70000])), [b"x", b"5", b"-70000"]),
    b"set:intset": (11, string(intset(500, -3, 1)), {b"-3", b"1", b"500"}),
    b"z:ziplist": (12, string(ziplist([b"m1", b"1.5", b"m2", 2])), [(b"m1", 1.5), (b"m2", 2.0)]),
    b"h:ziplist": (13, string(ziplist([b"f", b"v", b"n", 7])), HashValue({b"f": b"v", b"n": b"7"})),
    b"l:quicklist": (14, length(2) + string(ziplist([b"a", b"b"])) + string(ziplist([b"c"])), [b"a", b"b", b"c"]),
    b"z:ascii": (3, length(3) + string(b"a") + ascii_double(1.25) + string(b"b") + ascii_double(float("inf"))
                 + string(b"c") + ascii_double(float("-inf")),
                 [(b"c", float("-inf")), (b"a", 1.25), (b"b", float("inf"))]),
    b"h:listpack": (16, string(listpack([b"f", b"v", b"g", 1])), HashValue({b"f": b"v", b"g": b"1"})),
    b"z:listpack": (17, string(listpack([b"n", b"2.5", b"m", 3])), [(b"n", 2.5), (b"m", 3.0)]),
    b"l:ql2": (18, length(2) + length(2) + string(listpack([b"a", 1])) + length(1) + string(b"P" * 5000),
               [b"a", b"1", b"P" * 5000]),
    b"set:lp": (20, string(listpack([b"x", b"y", 10])), {b"x", b"y", b"10"}),
    b"h:pre22": (22, length(3) + length(FUTURE) + string(b"f1") + string(b"v1") + length(0) + string(b"f2")
                 + string(b"v2") + length(GONE) + string(b"f3") + string(b"v3"),
                 HashValue({b"f1": b"v1", b"f2": b"v2"}, {b"f1": FUTURE})),
    b"h:pre23": (23, string(listpack([b"f1", b"v1", FUTURE, b"f2", b"v2", 0])),
                 HashValue({b"f1": b"v1", b"f2": b"v2"}, {b"f1": FUTURE})),
    b"h:24": (24, ms(FUTURE2) + length(2) + length(1) + string(b"f1") + string(b"v1") + length(0) + string(b"f2")
              + string(b"v2"), HashValue({b"f1": b"v1", b"f2": b"v2"}, {b"f1": FUTURE2})),
    b"h:25": (25, ms(GONE) + string(listpack([b"c", 3, GONE, b"a", 1, FUTURE, b"b", 2, 0])),  # TTL order, 0 last
              HashValue({b"a": b"1", b"b": b"2"}, {b"a": FUTURE})),
    b"h:24:ttl-gone": (24, ms(GONE) + length(2) + length(1) + string(b"f1") + string(b"v1") + length(0)
                       + string(b"f2") + string(b"v2"), HashValue({b"f2": b"v2"})),
    b"h:all-gone": (25, ms(GONE) + string(listpack([b"a", 1, GONE])), None),
    b"st:v3": (21, stream_v3(), STREAM),
    b"x:ttl": (0, string(b"later"), b"later"),
}
EMPTY_KEYS: dict[bytes, tuple[int, bytes]] = {
    b"e:list": (1, length(0)), b"e:set": (2, length(0)), b"e:zset3": (3, length(0)), b"e:hash": (4, length(0)),
    b"e:zset": (5, length(0)), b"e:ziplist": (10, string(ziplist([]))), b"e:intset": (11, string(intset())),
    b"e:hashlp": (16, string(listpack([]))), b"e:ql2": (18, length(0)), b"e:setlp": (20, string(listpack([]))),
    b"e:hfe": (25, ms(0) + string(listpack([]))), b"e:hash2": (22, length(0)),
}
TTL_HASHES = {b"h:pre22", b"h:pre23", b"h:24", b"h:25"}  # with a live field TTL: lossy where the target has none
FREQ_KEYS = {b"h:25": 7, b"set:lp": 9, b"st:v3": 3}


def module_value() -> bytes:
    return length(MODULE_ID) + length(2) + length(5) + length(5) + string(b"abc") + length(0)


def module_aux() -> bytes:
    return b"\xf7" + length(MODULE_ID) + length(2) + length(2) + length(2) + length(9) + length(0)


def redis_file() -> bytes:
    keys = [record(t, k, body, expire_ms=FUTURE if k in (b"x:ttl", b"st:v3") else None, freq=FREQ_KEYS.get(k))
            for k, (t, body, _) in REDIS_KEYS.items()]
    keys += [record(t, k, body) for k, (t, body) in EMPTY_KEYS.items()]
    keys.append(record(0, b"x:expired", string(b"gone"), expire_ms=LONG_AGO))
    keys.append(record(7, b"m:fake", module_value()))
    return rdb_bytes(b"REDIS0012", aux(b"redis-ver", b"8.0.6"), aux(b"migrate-test", b"kept"), module_aux(),
                     b"\xf5" + string(FUNCTION), select(0), resize(len(keys), 2),
                     b"\xf4" + length(1) + length(2) + length(0), b"\xf4" + length(5) + length(1) + length(1),
                     *keys, select(1), record(0, b"db1:key", string(b"one")),
                     select(2), record(0, b"db2:key", string(b"two")))


@pytest.fixture(scope="module")
def redis_rdb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hand-built") / "redis12.rdb"
    path.write_bytes(redis_file())
    return path


def expected_hash(value: HashValue, target: TargetFormat) -> HashValue:
    return value if target.field_ttls else HashValue(value.fields)


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("policy", ["lossy", "skip"])
def test_every_case_into_every_target(servers, tmp_path, redis_rdb, target_name, policy):
    target = target_of(servers.get(target_name))
    report = transcode(redis_rdb, tmp_path / "out.rdb", target, policy, TranscodeOptions(now_ms=NOW))
    native = target.product == "redis" and target.field_ttls  # Redis 8 reads 22-25: copied, the server drops fields
    lossy = set() if target.field_ttls else set(TTL_HASHES)
    stream_losses = {3: (), 2: (LOST_ACTIVE_TIME,), 1: (LOST_ACTIVE_TIME, LOST_STREAM_COUNTERS, LOST_ENTRIES_READ)}[
        3 if target.reads_type(21, "redis") else 2 if target.reads_type(19, "redis") else 1]
    if stream_losses:
        lossy.add(b"st:v3")

    # the report
    assert {n.key.encode() for n in report.empty.listed} == set(EMPTY_KEYS) | ({b"h:all-gone"} if not native else set())
    assert [n.key for n in report.expired.listed] == ["x:expired"]
    changed = {n.key.encode(): n.detail for n in report.changed.listed}
    skipped = {n.key.encode(): n.detail for n in report.skipped.listed}
    if policy == "lossy":
        assert set(changed) == lossy
        assert set(skipped) == {b"m:fake"}
        assert all(changed[k] == f"lost: {LOST_FIELD_TTLS}" for k in lossy - {b"st:v3"})
        if stream_losses:
            assert changed[b"st:v3"] == "lost: " + ", ".join(stream_losses)
    else:
        assert not changed and set(skipped) == lossy | {b"m:fake"}
    assert report.module_aux_dropped == ("fakemodul",)
    assert report.fields_expired == (0 if native else 4)
    assert report.aux_kept == ("redis-ver", "migrate-test")
    assert report.opcodes_dropped == ({} if target.reads_opcode(244) else {"SLOT_INFO": 2})
    assert (report.functions, report.functions_dropped) == ((("tclib",), ()) if target.reads_opcode(245)
                                                            else ((), ("tclib",)))
    assert [(d.db, d.keys_read) for d in report.dbs] == [(0, len(REDIS_KEYS) + len(EMPTY_KEYS) + 2), (1, 1), (2, 1)]

    # the server
    server = start_on(servers, target_name, tmp_path, "out.rdb", "--maxmemory-policy", "allkeys-lfu")
    try:
        client = server.client()
        for key, (_, _, expected) in REDIS_KEYS.items():
            if expected is None or (policy == "skip" and key in lossy):
                assert raw(client, "EXISTS", key) == 0, key
                continue
            if key in FREQ_KEYS:
                assert int(raw(client, "OBJECT", "FREQ", key)) == FREQ_KEYS[key], key
            live = read_value(client, key)
            if isinstance(expected, HashValue):
                expected = expected_hash(expected, target)
            if isinstance(expected, StreamValue):
                expected, live = same_stream(expected, live)
            assert live == expected, key
        for key in (*EMPTY_KEYS, b"x:expired", b"m:fake"):
            assert raw(client, "EXISTS", key) == 0, key
        assert read_expire_at_ms(client, b"x:ttl") == pytest.approx(FUTURE, abs=0 if target.version >= (7,) else 1000)
        assert server.client(1).get(b"db1:key") == b"one" and server.client(2).get(b"db2:key") == b"two"
        assert functions_on(server) == list(report.functions)
    finally:
        server.stop()


# -- the Valkey dialect ---------------------------------------------------------------------------------------------

def hash_2(*fields: tuple[bytes, bytes, int]) -> bytes:
    return length(len(fields)) + b"".join(string(f) + string(v) + ms(t) for f, v, t in fields)


def valkey_file() -> bytes:
    return rdb_bytes(b"VALKEY080", aux(b"valkey-ver", b"9.1.2"), select(0),
                     b"\xf4" + length(7) + length(3) + length(0),
                     b"\xf3" + string(b"a" * 40) + length(1) + length(0) + length(100),
                     record(22, b"h2:mixed",
                            hash_2((b"live", b"1", FUTURE), (b"none", b"2", -1), (b"gone", b"3", GONE))),
                     record(22, b"h2:no-ttl", hash_2((b"a", b"1", -1))),
                     record(22, b"h2:all-gone", hash_2((b"a", b"1", GONE))),
                     record(0, b"s", string(b"v")))


@pytest.mark.parametrize("target_name", ["valkey-8.1", "valkey-9.1", "redis-7.0", "redis-8.0.6"])
def test_valkey_hash_2_and_slot_opcodes(servers, tmp_path, target_name):
    (tmp_path / "in.rdb").write_bytes(valkey_file())
    target = target_of(servers.get(target_name))
    report = transcode(tmp_path / "in.rdb", tmp_path / "out.rdb", target, "lossy", TranscodeOptions(now_ms=NOW))
    native = target.product == "valkey" and target.field_ttls
    assert report.opcodes_dropped == ({"SLOT_IMPORT": 1} if target.reads_opcode(244)
                                      else {"SLOT_INFO": 1, "SLOT_IMPORT": 1})
    assert {n.key for n in report.changed.listed} == (set() if target.field_ttls else {"h2:mixed"})
    assert {n.key for n in report.empty.listed} == (set() if native else {"h2:all-gone"})
    if native:
        assert report.converted == {}
    elif target.field_ttls:  # Redis 8: the field TTLs in Redis's own form
        assert report.converted == {"HASH_2 -> HASH": 1, "HASH_2 -> HASH_METADATA": 1}
    else:
        assert report.converted == {"HASH_2 -> HASH": 2}
    server = start_on(servers, target_name, tmp_path, "out.rdb")
    try:
        client = server.client()
        ttl = {b"live": FUTURE} if target.field_ttls else {}
        assert read_value(client, b"h2:mixed") == HashValue({b"live": b"1", b"none": b"2"}, ttl)
        assert read_value(client, b"h2:no-ttl") == HashValue({b"a": b"1"})
        assert raw(client, "EXISTS", b"h2:all-gone") == 0
        assert client.get(b"s") == b"v"
    finally:
        server.stop()


# -- policies on module data -----------------------------------------------------------------------------------------

def module_file() -> bytes:
    return rdb_bytes(b"REDIS0011", aux(b"redis-ver", b"7.2.4"), module_aux(), select(0),
                     record(0, b"plain", string(b"v")), record(7, b"m:one", module_value()),
                     record(7, b"m:two", module_value()))


@pytest.mark.parametrize("policy", ["fail", "skip", "lossy"])
def test_module_values_follow_the_policy(servers, tmp_path, policy):
    (tmp_path / "in.rdb").write_bytes(module_file())
    out = tmp_path / "out" / "dump.rdb"
    out.parent.mkdir()
    target = target_format("valkey:8.1")
    found = precheck(tmp_path / "in.rdb", target, policy)
    assert [(i.record, i.key, i.type_name) for i in found] == [
        ("module aux", None, "MODULE_AUX (fakemodul)"), ("key", "m:one", "MODULE_2 (fakemodul)"),
        ("key", "m:two", "MODULE_2 (fakemodul)")]
    assert {i.outcome for i in found} == {"fail" if policy == "fail" else "skip"}
    if policy == "fail":
        with pytest.raises(IncompatibleDataError, match="fakemodul"):
            transcode(tmp_path / "in.rdb", out, target, policy)
        assert list(out.parent.iterdir()) == []
        return
    report = transcode(tmp_path / "in.rdb", out, target, policy)
    assert [(n.key, n.detail) for n in report.skipped.listed] == [
        ("m:one", "module type 'fakemodul': Valkey 8.1 does not have the module"),
        ("m:two", "module type 'fakemodul': Valkey 8.1 does not have the module")]
    assert report.module_aux_dropped == ("fakemodul",) and report.keys_written == 1
    server = start_on(servers, "valkey-8.1", out.parent, "dump.rdb")
    try:
        assert server.client().keys("*") == [b"plain"]
    finally:
        server.stop()


def test_report_lists_the_first_keys_and_counts_the_rest(tmp_path):
    (tmp_path / "in.rdb").write_bytes(module_file())
    report = transcode(tmp_path / "in.rdb", tmp_path / "out.rdb", target_format("valkey:8.1"), "skip",
                       TranscodeOptions(list_limit=1))
    assert [n.key for n in report.skipped.listed] == ["m:one"]
    assert (report.skipped.total, report.skipped.unlisted) == (2, 1)


# -- databases, expiry ----------------------------------------------------------------------------------------------

def test_databases_beyond_the_target_follow_the_policy(servers, tmp_path):
    (tmp_path / "in.rdb").write_bytes(rdb_bytes(b"REDIS0011", select(0), record(0, b"k0", string(b"zero")),
                                                select(1), record(0, b"k1", string(b"one")),
                                                select(2), resize(2, 0), record(0, b"k2", string(b"two")),
                                                record(1, b"l2", length(1) + string(b"x"))))
    small = TargetFormat.for_release("valkey", (8, 1), databases=2)
    with pytest.raises(IncompatibleDataError, match=r"database 2 does not exist on Valkey 8\.1"):
        transcode(tmp_path / "in.rdb", tmp_path / "out.rdb", small, "fail")
    assert [p.name for p in tmp_path.iterdir()] == ["in.rdb"]
    report = transcode(tmp_path / "in.rdb", tmp_path / "out.rdb", small, "lossy")
    assert [(n.db, n.key) for n in report.skipped.listed] == [(2, "k2"), (2, "l2")]
    server = start_on(servers, "valkey-8.1", tmp_path, "out.rdb", "--databases", "2")
    try:
        assert server.client(0).get(b"k0") == b"zero" and server.client(1).get(b"k1") == b"one"
    finally:
        server.stop()


def test_expired_keys_are_kept_on_request(tmp_path, redis_rdb):
    """drop_expired=False keeps them (with their expiry): the loader then decides, as a replica would keep them."""
    report = transcode(redis_rdb, tmp_path / "out.rdb", target_format("valkey:9.1"), "lossy",
                       TranscodeOptions(drop_expired=False))
    assert report.expired.total == 0
    kept = [r for r in read_records(tmp_path / "out.rdb") if isinstance(r, KeyRecord) and r.key == b"x:expired"]
    assert [(r.expire_ms, r.payload) for r in kept] == [(LONG_AGO, string(b"gone"))]


# -- the chunk API ----------------------------------------------------------------------------------------------------

class Trickle(io.RawIOBase):
    """A non-seekable source that returns a few bytes per read, like a socket."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        piece = self.data[self.pos:self.pos + min(len(buffer), 7)]
        buffer[:len(piece)] = piece
        self.pos += len(piece)
        return len(piece)


def test_chunks_equal_the_file_and_keep_what_follows(tmp_path, redis_rdb):
    target = target_format("valkey:8.1")
    options = TranscodeOptions(now_ms=NOW, chunk_size=1000)
    file_report = transcode(redis_rdb, tmp_path / "out.rdb", target, "lossy", options)
    stream = transcode_chunks(redis_rdb, target, "lossy", options)
    chunks = list(stream)
    assert b"".join(chunks) == (tmp_path / "out.rdb").read_bytes()
    assert len(chunks) > 1 and stream.report is not None
    assert stream.report.changed == file_report.changed and stream.report.output_bytes == file_report.output_bytes
    source = Trickle(redis_rdb.read_bytes() + b"+NEXT\r\n")
    trickled = transcode_chunks(source, target, "lossy", options)
    assert b"".join(trickled) == (tmp_path / "out.rdb").read_bytes()
    assert trickled.leftover + source.data[source.pos:] == b"+NEXT\r\n"  # read past the RDB, or not read yet


def test_chunks_under_fail_are_refused_before_the_first_one(tmp_path, redis_rdb):
    with pytest.raises(IncompatibleDataError, match="nothing was produced"):
        transcode_chunks(redis_rdb, target_format("valkey:8.1"), "fail")
    with open(redis_rdb, "rb") as handle:  # a seekable file object is prechecked too, and put back where it was
        handle.seek(0)
        with pytest.raises(IncompatibleDataError):
            transcode_chunks(handle, target_format("valkey:8.1"), "fail")
        assert handle.tell() == 0


# -- corrupt input ----------------------------------------------------------------------------------------------------

def corruptions() -> dict[str, bytes]:
    good = (FIXTURES / "redis-8.0.6.rdb").read_bytes()
    bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
    first_key = next(r for r in read_records(FIXTURES / "redis-8.0.6.rdb") if isinstance(r, KeyRecord))
    at = first_key.offset + 1  # the key name's length byte
    huge = good[:at] + b"\x80\x7f\xff\xff\xff" + good[at + 1:]
    return {
        "header only": good[:9], "truncated mid-record": good[:len(good) // 2], "no checksum": good[:-8],
        "bad checksum": bad_crc, "bad length": huge, "bad magic": b"RUBBISH01" + good[9:],
        "unknown type byte": good[:first_key.offset] + b"\x1e" + good[first_key.offset + 1:],
        "empty file": b"",
    }


@pytest.mark.parametrize("name", list(corruptions()))
def test_corrupt_input_fails_cleanly_and_leaves_nothing(tmp_path, name):
    source = tmp_path / "in" / "bad.rdb"
    source.parent.mkdir()
    source.write_bytes(corruptions()[name])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RdbFormatError) as caught:
        transcode(source, out / "dump.rdb", target_format("valkey:8.1"), "lossy")
    assert isinstance(caught.value, BadInputError) and caught.value.exit_code == 6
    assert "\n" not in caught.value.one_line()
    assert list(out.iterdir()) == []
    with pytest.raises(RdbFormatError):
        list(transcode_chunks(source, target_format("valkey:8.1"), "lossy"))


def test_missing_input_missing_output_folder_and_bad_policy(tmp_path):
    with pytest.raises(ConfigError, match="cannot create the output file"):
        transcode(FIXTURES / "redis-6.0.rdb", tmp_path / "no" / "such" / "out.rdb", target_format("valkey:8.1"))
    with pytest.raises(BadInputError, match="cannot open RDB file"):
        transcode(tmp_path / "nonexistent.rdb", tmp_path / "out.rdb", target_format("valkey:8.1"))
    with pytest.raises(ConfigError, match="unknown policy"):
        transcode(FIXTURES / "redis-6.0.rdb", tmp_path / "out.rdb", target_format("valkey:8.1"), "maybe")
    assert list(tmp_path.iterdir()) == []


# -- old input versions -----------------------------------------------------------------------------------------------

def test_an_rdb_4_file_without_checksum_becomes_a_valkey_file(servers, tmp_path):
    """RDB 4 (Redis 2.4 era): no checksum after EOF, second-resolution EXPIRETIME, zipmap and ziplist values; read
    from a non-seekable stream. The output carries the target's version and a real CRC64."""
    at = NOW // 1000 + 86_400
    data = (b"REDIS0004" + select(0)
            + b"\xfd" + struct.pack("<i", at) + record(0, b"old:ttl", string(b"v"))
            + record(9, b"old:zipmap", string(zipmap([(b"a", b"1"), (b"b", b"2")])))
            + record(10, b"old:ziplist", string(ziplist([b"x", 3])))
            + b"\xff")
    report = transcode(Trickle(data), tmp_path / "out.rdb", target_format("valkey:8.1"), "fail")
    assert (report.input_version, report.output_version, report.input_checksum_ok) == (4, 11, None)
    assert report.passed_through == 3
    out = tmp_path / "out.rdb"
    assert out.read_bytes()[:9] == b"REDIS0011"
    assert list(read_records(out))[-1].checksum_ok is True
    server = start_on(servers, "valkey-8.1", tmp_path, "out.rdb")
    try:
        client = server.client()
        assert read_expire_at_ms(client, b"old:ttl") == at * 1000
        assert read_value(client, b"old:zipmap") == HashValue({b"a": b"1", b"b": b"2"})
        assert read_value(client, b"old:ziplist") == [b"x", b"3"]
    finally:
        server.stop()


def test_aux_fields_can_be_left_out_and_the_input_checksum_unchecked(tmp_path, redis_rdb):
    target = target_format("valkey:8.1")
    options = TranscodeOptions(now_ms=NOW, drop_aux=frozenset({"migrate-test"}))
    report = transcode(redis_rdb, tmp_path / "out.rdb", target, "lossy", options)
    assert (report.aux_kept, report.aux_dropped) == (("redis-ver",), ("migrate-test",))
    assert [r.name for r in read_records(tmp_path / "out.rdb") if isinstance(r, AuxField)] == ["redis-ver"]
    data = redis_rdb.read_bytes()
    (tmp_path / "bad-crc.rdb").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    unchecked = transcode(tmp_path / "bad-crc.rdb", tmp_path / "out2.rdb", target, "lossy",
                          TranscodeOptions(now_ms=NOW, verify_checksum=False))
    assert unchecked.input_checksum_ok is False
    assert list(read_records(tmp_path / "out2.rdb"))[-1].checksum_ok is True  # the output's own CRC is right


@pytest.mark.parametrize("target_name", ["valkey-8.0", "redis-7.0"])
def test_a_malformed_slot_info_aux_field_is_dropped_where_it_would_be_refused(servers, tmp_path, target_name):
    (tmp_path / "in.rdb").write_bytes(rdb_bytes(b"REDIS0011", aux(b"slot-info", b"garbage"),
                                                aux(b"slot-info", b"7,1,0"), select(0), record(0, b"k", string(b"v"))))
    target = target_of(servers.get(target_name))
    report = transcode(tmp_path / "in.rdb", tmp_path / "out.rdb", target, "fail")
    expected = (("slot-info",), ("slot-info",)) if target.product == "valkey" else (("slot-info", "slot-info"), ())
    assert (report.aux_kept, report.aux_dropped) == expected
    server = start_on(servers, target_name, tmp_path, "out.rdb")
    try:
        assert server.client().get(b"k") == b"v"
    finally:
        server.stop()
