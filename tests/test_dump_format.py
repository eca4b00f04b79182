"""DUMP payload format without servers: CRC64, footer parsing, restamping, bad input, the decision table's edges."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.facts.capabilities import Capabilities
from migrate.rdb.constants import module_id
from migrate.rdb.crc import CHECK_VALUE, Crc64, crc64
from migrate.rdb.dump import Action, build_dump, parse_dump, plan_conversion, restamp
from migrate.rdb.errors import RdbFormatError

# A real DUMP of `SET k v` on Redis 8.0.2 (RDB 12): type 0, string "v", version 12, CRC64.
REDIS8_STRING = bytes.fromhex("000176") + (12).to_bytes(2, "little")
REDIS8_STRING += crc64(REDIS8_STRING).to_bytes(8, "little")


def identity(product: str, version: tuple[int, ...], rdb: int | None, check: str | None = None) -> Capabilities:
    capabilities = Capabilities(product, version, check == "relaxed")
    assert capabilities.rdb_version == rdb
    return capabilities


VALKEY_81 = identity("valkey", (8, 1, 1), 11, "strict")
VALKEY_91 = identity("valkey", (9, 1, 2), 80, "strict")


def test_crc64_check_value_and_increments():
    assert crc64(b"123456789") == CHECK_VALUE == 0xE9C6D914C4B8D9CA
    assert crc64(b"6789", crc64(b"12345")) == CHECK_VALUE
    assert Crc64().update(b"1").update(memoryview(b"2345678")).update(bytearray(b"9")).value == CHECK_VALUE
    assert crc64(b"") == 0


def test_crc64_of_a_large_buffer_matches_chunked():
    data = os.urandom(3 * 1024 * 1024 + 7)
    running = Crc64()
    for at in range(0, len(data), 65536):
        running.update(data[at:at + 65536])
    assert running.value == crc64(data)


def test_parse_splits_type_body_version_crc():
    payload = parse_dump(REDIS8_STRING)
    assert (payload.type_byte, payload.body, payload.rdb_version) == (0, b"\x01v", 12)
    assert payload.crc == int.from_bytes(REDIS8_STRING[-8:], "little")
    assert payload.dialect == "redis" and payload.type_name == "STRING"


def test_build_is_the_inverse_of_parse():
    assert build_dump(0, b"\x01v", 12) == REDIS8_STRING
    body = os.urandom(1000)
    assert parse_dump(build_dump(21, body, 80)).body == body


def test_restamp_changes_only_version_and_crc():
    out = restamp(REDIS8_STRING, 11)
    assert out[:-10] == REDIS8_STRING[:-10]
    assert parse_dump(out).rdb_version == 11
    assert parse_dump(restamp(out, 12)) == parse_dump(REDIS8_STRING)


@pytest.mark.parametrize("length", [0, 1, 5, 10])
def test_too_short_names_its_length(length):
    with pytest.raises(RdbFormatError, match="too short") as info:
        parse_dump(REDIS8_STRING[:length])
    assert info.value.offset == length


@pytest.mark.parametrize("position", range(len(REDIS8_STRING)))
def test_any_flipped_byte_fails_the_checksum(position):
    broken = bytearray(REDIS8_STRING)
    broken[position] ^= 0x40
    with pytest.raises(RdbFormatError, match="checksum mismatch") as info:
        parse_dump(bytes(broken))
    assert info.value.offset == len(REDIS8_STRING) - 8
    assert "offset 5" in str(info.value)


def test_restamp_refuses_a_corrupt_payload():
    with pytest.raises(RdbFormatError):
        restamp(REDIS8_STRING[:-1] + b"\x00", 11)


def test_build_refuses_out_of_range_values():
    with pytest.raises(ValueError):
        build_dump(256, b"", 12)
    with pytest.raises(ValueError):
        build_dump(0, b"", 70000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_parse_or_raise_format_error(data):
    try:
        payload = parse_dump(data)
    except RdbFormatError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
    else:
        assert build_dump(payload.type_byte, payload.body, payload.rdb_version) == data


def test_unknown_future_type_is_unsupported():
    conversion = plan_conversion(build_dump(26, b"\x00" * 8, 13), VALKEY_91)
    assert conversion.action is Action.UNSUPPORTED and conversion.payload is None
    assert "type byte 26" in conversion.reason


def test_module_value_is_unsupported_and_named():
    mid = module_id("ReJSON-RL", 3)
    body = b"\x81" + mid.to_bytes(8, "big") + b"\x02\x05\x00"
    conversion = plan_conversion(build_dump(7, body, 12), VALKEY_91)
    assert conversion.action is Action.UNSUPPORTED
    assert "'ReJSON-RL'" in conversion.reason and "encoding version 3" in conversion.reason


def test_module_value_with_a_broken_id_is_still_unsupported():
    conversion = plan_conversion(build_dump(7, b"\xc5", 12), VALKEY_91)
    assert conversion.action is Action.UNSUPPORTED and "module id" in conversion.reason


def test_unknown_target_release_rewrites_instead_of_guessing():
    mystery = identity("mystery", (1, 0), None)
    conversion = plan_conversion(REDIS8_STRING, mystery)
    assert conversion.action is Action.REWRITE and conversion.losses == ()


def test_field_ttl_hash_loses_ttls_only_where_the_target_cannot_keep_them():
    hfe = build_dump(25, b"\x00" * 16, 12)
    to_81, to_91 = plan_conversion(hfe, VALKEY_81), plan_conversion(hfe, VALKEY_91)
    assert (to_81.action, to_81.losses) == (Action.REWRITE, ("field TTLs",))
    assert (to_91.action, to_91.losses) == (Action.REWRITE, ())


def test_valkey_own_type_22_is_not_restamped_into_redis_dialect():
    valkey_hash2 = build_dump(22, b"\x00" * 16, 80)
    redis8 = identity("redis", (8, 0, 2), 12)
    assert plan_conversion(valkey_hash2, redis8).action is Action.REWRITE
    assert plan_conversion(valkey_hash2, VALKEY_91).action is Action.AS_IS


def test_own_dialect_types_restamp_within_the_dialect():
    """A Valkey 9.2 (RDB 81) HASH_2 into Valkey 9.1 (RDB 80): same meaning of 22, only the version is refused."""
    valkey_92_hash2 = build_dump(22, b"\x00" * 16, 81)
    conversion = plan_conversion(valkey_92_hash2, VALKEY_91)
    assert conversion.action is Action.RESTAMP and parse_dump(conversion.payload).rdb_version == 80
