"""The RDB encoders of migrate/rdb/writer.py against our own reader and decoder (no server; the servers' side is in
test_transcode_matrix.py and test_transcode_cases.py).

Property: for random values of every logical type and every form the transcoder writes, decoding the encoded bytes
gives the same value back (minus the metadata the form cannot carry), and the reader's structural skipper measures
exactly the encoded size, so a written record never desynchronises the reader.
"""

from __future__ import annotations

import math

import lzf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.rdb import writer
from migrate.rdb.decode import decode_object
from migrate.rdb.encodings import listpack_items, read_length, read_string
from migrate.rdb.reader import skip_value
from migrate.rdb.reencode import listpack_ex_as_listpack, reencode
from migrate.rdb.target import target_format
from migrate.rdb.values import HashValue, PendingEntry, StreamConsumer, StreamEntry, StreamGroup, StreamValue
from tests import rdb_builders

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Byte strings biased towards what changes the encoding: integers in every width, near-integers, long values.
INTEGER_TEXT = st.integers(-(1 << 64), 1 << 64).map(lambda n: str(n).encode())
NEAR_INTEGER = st.sampled_from([b"0", b"-0", b"007", b"+1", b"1 ", b" 1", b"-", b"", b"1e3", b"9223372036854775807",
                                b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809", b"127",
                                b"128", b"-128", b"-129", b"32767", b"32768", b"2147483647", b"2147483648"])
BLOBS = st.one_of(st.binary(max_size=80), INTEGER_TEXT, NEAR_INTEGER, st.binary(min_size=4090, max_size=4200),
                  st.binary(min_size=60, max_size=70).map(lambda b: b * 300))


def roundtrip(type_byte: int, body: bytes, rdb_version: int):
    """Decode what the writer wrote, checking the reader's skipper agrees on its size."""
    product = "valkey" if rdb_version >= 80 else "redis"
    assert skip_value(type_byte, body, product) == len(body)
    return decode_object(type_byte, body, rdb_version=rdb_version)


# -- primitives -----------------------------------------------------------------------------------------------------

@SETTINGS
@given(st.integers(0, (1 << 64) - 1))
def test_length_reads_back(n):
    assert read_length(writer.length(n), 0) == (n, len(writer.length(n)))


@SETTINGS
@given(BLOBS)
def test_string_reads_back_exactly(value):
    encoded = writer.string(value)
    assert read_string(encoded, 0) == (value, len(encoded))


def test_string_integer_encoding_only_for_canonical_int32():
    assert writer.string(b"12") == b"\xc0\x0c"
    assert writer.string(b"-129") == b"\xc1" + (-129 & 0xFFFF).to_bytes(2, "little")
    assert writer.string(b"2147483647")[0] == 0xC2
    for raw in (b"2147483648", b"007", b"-0", b"+1", b"1.0"):
        assert writer.string(raw) == bytes([len(raw)]) + raw


@SETTINGS
@given(st.lists(st.one_of(BLOBS, st.integers(-(1 << 63), (1 << 63) - 1)), max_size=40))
def test_listpack_reads_back(items):
    blob = writer.listpack([writer.listpack_entry(x) for x in items])
    expected = [x if isinstance(x, int) else writer.canonical_int(x) if writer.canonical_int(x) is not None else x
                for x in items]
    assert listpack_items(blob) == expected


def test_listpack_backlen_widths():
    # entries of 127, 128, 16382 and 16383 bytes: the back-length grows at lpEncodeBacklen's thresholds
    for size in (125, 126, 16379, 16380, 2097150):
        item = b"x" * size
        assert listpack_items(writer.listpack([writer.listpack_entry(item)])) == [item]


# -- values ---------------------------------------------------------------------------------------------------------

@SETTINGS
@given(st.lists(BLOBS, max_size=30))
def test_list_set_and_string_forms(items):
    assert roundtrip(*writer.encode_list(items), 12) == items
    assert roundtrip(*writer.encode_set(set(items)), 12) == set(items)
    for item in items[:3]:
        assert roundtrip(*writer.encode_string(item), 11) == item


SCORES = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, math.inf, -math.inf, 1e-300, 0.1 + 0.2]))


@SETTINGS
@given(st.dictionaries(BLOBS, SCORES, max_size=30))
def test_zset_form_keeps_scores_exactly(members):
    pairs = sorted(members.items(), key=lambda p: (p[1], p[0]))
    decoded = roundtrip(*writer.encode_zset(pairs), 12)
    assert [(m, s) for m, s in decoded] == pairs
    assert all(math.copysign(1, a[1]) == math.copysign(1, b[1]) for a, b in zip(decoded, pairs, strict=True))


TTL = st.integers(1, (1 << 48) - 1)


@SETTINGS
@given(st.dictionaries(BLOBS, BLOBS, max_size=30), st.data())
def test_hash_forms(fields, data):
    names = list(fields)
    ttl = {n: data.draw(TTL) for n in names if data.draw(st.booleans())}
    value = HashValue(fields, ttl)
    assert roundtrip(*writer.encode_hash(fields), 12) == HashValue(fields)
    assert roundtrip(*writer.encode_hash_2_valkey(value), 80) == value
    type_byte, body = writer.encode_hash_metadata_redis(value)
    assert type_byte == (24 if ttl else 4)
    assert roundtrip(type_byte, body, 12) == value


# -- streams --------------------------------------------------------------------------------------------------------

STREAM_FIELD = st.one_of(st.sampled_from([b"a", b"b", b"payload", b"1", b"-5", b""]), BLOBS)


@st.composite
def streams(draw):
    """A stream as a server could hold it: increasing IDs, entries sharing or not sharing their fields, consumer
    groups whose PEL entries are owned by their consumers (or by nobody), consumers without pending entries."""
    count = draw(st.integers(0, 260))
    shapes = draw(st.lists(st.lists(STREAM_FIELD, min_size=1, max_size=4), min_size=1, max_size=3))
    ms = draw(st.integers(0, 1 << 50))
    seq = draw(st.integers(0, 1 << 40))
    entries = []
    for _ in range(count):
        if draw(st.integers(0, 3)) == 0:
            ms += draw(st.integers(1, 1 << 20))
            seq = draw(st.integers(0, 1 << 40))
        else:
            seq += draw(st.integers(1, 1000))
        names = draw(st.sampled_from(shapes))
        values = [draw(st.one_of(st.binary(max_size=12), INTEGER_TEXT, st.binary(min_size=3000, max_size=5000)))
                  if draw(st.integers(0, 30)) == 0 else draw(st.binary(max_size=12)) for _ in names]
        entries.append(StreamEntry((ms, seq), tuple(zip(names, values, strict=True))))
    last = entries[-1].id if entries else (draw(st.integers(0, 1 << 50)), draw(st.integers(0, 9)))
    ids = [e.id for e in entries]
    groups = []
    for g in range(draw(st.integers(0, 3))):
        pending_ids = sorted(set(draw(st.lists(st.sampled_from(ids), max_size=20)))) if ids else []
        names = [b"c%d" % i for i in range(draw(st.integers(0, 4)))]
        owner = {i: draw(st.sampled_from(names)) if names else None for i in pending_ids}
        consumers = tuple(StreamConsumer(n, draw(st.integers(0, 1 << 45)), draw(st.integers(0, 1 << 45)),
                                         tuple(i for i in pending_ids if owner[i] == n)) for n in names)
        pel = tuple(PendingEntry(i, owner[i] or b"", draw(st.integers(0, 1 << 45)), draw(st.integers(0, 1 << 20)))
                    for i in pending_ids if owner[i] is not None)
        groups.append(StreamGroup(b"group-%d" % g, draw(st.sampled_from([*ids, (0, 0)])),
                                  draw(st.one_of(st.just(-1), st.integers(0, 1 << 40))), pel, consumers))
    first = entries[0].id if entries else (0, 0)
    return StreamValue(tuple(entries), len(entries), last, first, draw(st.sampled_from([(0, 0), (1, 1), last])),
                       draw(st.integers(len(entries), len(entries) + 100)), tuple(groups))


def as_form(value: StreamValue, version: int) -> StreamValue:
    """What decoding a stream of this form gives back: v1 has no counters and no entries-read, v1/v2 no active time."""
    groups = tuple(StreamGroup(
        g.name, g.last_id, g.entries_read if version >= 2 else None, g.pending,
        tuple(StreamConsumer(c.name, c.seen_time_ms, c.active_time_ms if version >= 3 else None, c.pending)
              for c in g.consumers)) for g in value.groups)
    if version == 1:
        return StreamValue(value.entries, value.length, value.last_id, groups=groups)
    return StreamValue(value.entries, value.length, value.last_id, value.first_id, value.max_deleted_id,
                       value.entries_added, groups)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
@pytest.mark.parametrize("version", [1, 2, 3])
def test_stream_forms_read_back(version, value):
    type_byte, body = writer.encode_stream(value, version)
    assert type_byte == writer.STREAM_TYPES[version]
    assert roundtrip(type_byte, body, 12) == as_form(value, version)


def test_stream_nodes_split_like_the_server():
    entries = tuple(StreamEntry((1000 + i, 0), ((b"f", b"v"),)) for i in range(250))
    nodes = list(writer.stream_nodes(entries))
    assert [master for master, _ in nodes] == [(1000, 0), (1100, 0), (1200, 0)]
    big = tuple(StreamEntry((1, i), ((b"f", b"x" * 3000),)) for i in range(3))
    assert len(list(writer.stream_nodes(big))) == 3  # 4096-byte nodes: one 3000-byte entry each
    items = listpack_items(nodes[0][1])
    # master entry: count, deleted, 1 field, "f", 0; then each entry: SAMEFIELDS flag, ms-diff, seq-diff, value, 4
    assert items[:5] == [100, 0, 1, b"f", 0]
    assert items[5:10] == [2, 0, 0, b"v", 4]


def test_stream_fills_what_an_older_value_lacks():
    value = StreamValue((StreamEntry((5, 1), ((b"a", b"1"),)),), 1, (5, 1),
                        groups=(StreamGroup(b"g", (5, 1), None, (), (StreamConsumer(b"c", 77, None, ()),)),))
    decoded = roundtrip(*writer.encode_stream(value, 3), 12)
    assert (decoded.first_id, decoded.max_deleted_id, decoded.entries_added) == ((5, 1), (0, 0), 1)
    assert decoded.groups[0].entries_read == -1  # unknown, as a v1 loader leaves it before estimating
    assert decoded.groups[0].consumers[0].active_time_ms == 77  # seen-time, as a v2 loader sets it


def test_key_record_and_header():
    record = writer.key_record(0, b"k", writer.string(b"v"), expire_ms=1234, idle=5)
    assert record == b"\xfc" + (1234).to_bytes(8, "little") + b"\xf8\x05" + b"\x00\x01k\x01v"
    assert writer.key_record(0, b"k", b"\x00", freq=200)[:2] == b"\xf9\xc8"
    assert writer.header(11) == b"REDIS0011"
    assert writer.header(80) == b"VALKEY080"
    assert writer.header(9) == b"REDIS0009"


# -- the listpack fast path of field-TTL hashes ------------------------------------------------------------------------

@SETTINGS
@given(st.dictionaries(BLOBS, BLOBS, max_size=20), st.data(), st.sampled_from([23, 25]), st.booleans())
def test_listpack_ex_fast_path_equals_decoding(fields, data, type_byte, compressed):
    """Redis 23/25 into a target without field TTLs: copying the entries gives what decode + re-encode gives."""
    now = 1_800_000_000_000
    ttl = {f: data.draw(st.sampled_from([0, now - 5, now + 5, (1 << 48) - 1])) for f in fields}
    blob = rdb_builders.listpack([x for f, v in fields.items() for x in (f, v, ttl[f])])
    packed = lzf.compress(blob) if compressed else None  # None too when LZF cannot shrink it
    encoded = (b"\xc3" + writer.length(len(packed)) + writer.length(len(blob)) + packed) if packed else \
        writer.length(len(blob)) + blob
    payload = (b"\x00" * 8 if type_byte == 25 else b"") + encoded
    target = target_format("valkey:8.1")
    fast = listpack_ex_as_listpack(type_byte, payload, target, now)
    slow = reencode(decode_object(type_byte, payload, rdb_version=12), "hash", target, now)
    assert fast is not None
    assert (fast.losses, fast.fields_expired, fast.empty) == (slow.losses, slow.fields_expired, slow.empty)
    if not fast.empty:
        assert fast.type_byte == 16
        assert roundtrip(fast.type_byte, fast.body, 12) == roundtrip(slow.type_byte, slow.body, 12)


def test_listpack_ex_fast_path_declines_what_it_does_not_cover():
    target = target_format("valkey:8.1")
    blob = writer.listpack([writer.listpack_entry(x) for x in (b"f", b"v", 0)])
    assert listpack_ex_as_listpack(25, b"\x00" * 8 + writer.string(blob), target_format("valkey:9.1"), 0) is None
    assert listpack_ex_as_listpack(25, b"\x00" * 8 + writer.string(blob), target_format("redis:6.0"), 0) is None
    assert listpack_ex_as_listpack(16, writer.string(blob), target, 0) is None
    assert listpack_ex_as_listpack(23, writer.string(blob[:-1] + b"\x00"), target, 0) is None  # malformed
