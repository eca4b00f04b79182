"""Encodings no server of the matrix writes any more, built by hand, validated by real servers.

Each payload is RESTOREd (with sanitize-dump-payload on where the server has it, so the server checks every byte) into
a real server that still reads that encoding; what the server then returns must equal what decode_object makes of
the same bytes.
"""

from __future__ import annotations

import itertools

import pytest

from migrate.rdb.decode import decode_object
from migrate.rdb.values import HashValue
from tests import rdb_builders as B
from tests.matrix import params
from tests.readback import read_value

EDGE_INTS = [0, 5, 12, 13, -1, 127, -128, 128, 32767, -32768, 32768, 8388607, -8388608, 8388608, 2147483647,
             -2147483648, 2147483648, 9223372036854775807, -9223372036854775808]
LONG = b"L" * 300  # a 14-bit ziplist string length, and a prevlen >= 254 for the next entry
HUGE = b"H" * 17000  # a 32-bit ziplist string length
OLD_READERS = ("redis-6.0", "redis-7.0", "valkey-9.1")

_counter = itertools.count()


def old_payloads() -> list[tuple[str, int, bytes]]:
    zl_items: list[bytes | int] = [b"a", b"", LONG, b"b", *EDGE_INTS, HUGE, b"end"]
    zset_pairs = [(b"m1", 1.5), (b"m2", -2.0), (b"m3", float("inf")), (b"m4", 0.1), (b"m5", float("-inf"))]
    return [
        ("string raw", 0, B.string(b"plain")),
        ("string int8", 0, B.int_string(-7)),
        ("string int16", 0, B.int_string(1000)),
        ("string int32", 0, B.int_string(-100000)),
        ("string lzf", 0, B.lzf_string(b"abcd" * 1000)),
        ("list linked", 1, B.length(4) + b"".join(B.string(x) for x in (b"x", b"", b"12", LONG))),
        ("list linked lzf+int", 1, B.length(2) + B.lzf_string(b"q" * 100) + B.int_string(42)),
        ("set hashtable", 2, B.length(3) + b"".join(B.string(x) for x in (b"a", b"b", b"7"))),
        ("zset ascii doubles", 3, B.length(len(zset_pairs)) + b"".join(B.string(m) + B.ascii_double(s)
                                                                       for m, s in zset_pairs)),
        ("hash hashtable", 4, B.length(2) + B.string(b"f1") + B.string(b"v1") + B.string(b"f2") + B.int_string(9)),
        ("hash zipmap", 9, B.string(B.zipmap([(b"f1", b"v1"), (b"field-2", LONG), (b"", b"empty")], free=2))),
        ("list ziplist", 10, B.string(B.ziplist(zl_items))),
        ("zset ziplist", 12, B.string(B.ziplist([b"c", -3, b"a", 1, b"b", b"2.5", b"e", 2**40, b"d", b"inf"]))),
        ("hash ziplist", 13, B.string(B.ziplist([b"f", 1, b"g", LONG, b"h", b"", 2**33, b"int field"]))),
        ("list quicklist", 14, B.length(3) + B.string(B.ziplist([b"n1", 1, 2])) + B.lzf_string(B.ziplist(
            [b"n2-" + bytes([65 + i % 26]) * 40 for i in range(20)])) + B.string(B.ziplist([HUGE, -5]))),
    ]


@pytest.mark.parametrize("name", params(OLD_READERS))
def test_old_encodings_decode_as_the_server_reads_them(servers, name):
    args = () if name == "redis-6.0" else ("--sanitize-dump-payload", "yes")
    client = servers.get(name, *args).client()
    for label, type_byte, body in old_payloads():
        key = f"old:{next(_counter)}"
        client.restore(key, 0, B.dump_payload(type_byte, body, 9))
        assert decode_object(type_byte, body) == read_value(client, key.encode()), label


def hfe_fields() -> tuple[dict[bytes, bytes], dict[bytes, int]]:
    fields = {b"keep": b"forever", b"soon": b"1", b"later": LONG, b"int": b"-77"}
    expiry = {b"soon": 4102444800000, b"later": 4102444900123}
    return fields, expiry


def redis_pre_ga_22(fields: dict[bytes, bytes], expiry: dict[bytes, int]) -> bytes:
    """HASH_METADATA_PRE_GA (Redis 7.4 RCs): count, then (absolute ttl or 0, field, value)."""
    body = B.length(len(fields))
    for f, v in fields.items():
        body += B.length(expiry.get(f, 0)) + B.string(f) + B.string(v)
    return body


def redis_pre_ga_23(fields: dict[bytes, bytes], expiry: dict[bytes, int]) -> bytes:
    """HASH_LISTPACK_EX_PRE_GA: a listpack of (field, value, absolute ttl or 0) triplets."""
    items: list[bytes | int] = []
    for f, v in fields.items():
        items += [f, int(v) if v.lstrip(b"-").isdigit() else v, expiry.get(f, 0)]
    return B.string(B.listpack(items))


@pytest.mark.redis
@pytest.mark.parametrize("type_byte", [22, 23])
def test_redis_release_candidate_field_ttl_hashes(servers, type_byte):
    """Redis 8 still reads the 7.4-RC hash types; their field TTLs are absolute."""
    fields, expiry = hfe_fields()
    body = (redis_pre_ga_22 if type_byte == 22 else redis_pre_ga_23)(fields, expiry)
    client = servers.get("redis-8.0.2").client()
    client.restore("rc:hash", 0, B.dump_payload(type_byte, body, 12))
    decoded = decode_object(type_byte, body, rdb_version=12)
    assert decoded == HashValue(fields, expiry)
    assert decoded == read_value(client, b"rc:hash")


@pytest.mark.valkey
def test_type_22_without_a_version_is_told_apart_by_its_shape(servers):
    """Valkey's HASH_2 and Redis's pre-GA hash metadata share type byte 22: decode_object tells them apart."""
    fields, expiry = hfe_fields()
    assert decode_object(22, redis_pre_ga_22(fields, expiry)) == HashValue(fields, expiry)
    client = servers.get("valkey-9.1").client()
    client.hset("v:hfe", mapping=fields)
    for field, at in expiry.items():
        client.execute_command("HPEXPIREAT", "v:hfe", at, "FIELDS", 1, field)
    payload = client.dump("v:hfe")
    assert payload[0] == 22
    assert decode_object(22, payload[1:-10]) == decode_object(22, payload[1:-10], rdb_version=80)
    assert decode_object(22, payload[1:-10]) == HashValue(fields, expiry) == read_value(client, b"v:hfe")
