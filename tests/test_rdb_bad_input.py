"""Bad input never hangs, crashes or allocates without bound: it raises RdbFormatError naming an offset.

Truncated files, wrong magic, unsupported versions, bad checksums, corrupt lengths and counts, flipped bytes and
random bytes (hypothesis), for the streaming reader and for decode_object. No server needed.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.rdb.decode import decode_object
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader, read_records
from migrate.rdb.records import End, KeyRecord
from tests import rdb_builders as B

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rdb"
FIXTURE_FILES = sorted(FIXTURES.glob("*.rdb"))
SMALL = FIXTURES / "valkey-8.0.rdb"
TYPE_BYTES = [0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]


def read_all(data: bytes, **options: object) -> list[object]:
    return list(RdbReader(io.BytesIO(data), **options).records())  # type: ignore[arg-type]


def file_with(body: bytes, version: int = 11, checksum: bool = False) -> bytes:
    """A complete RDB: header, body, EOF and a checksum (0: disabled, unless checksum=True)."""
    data = b"REDIS%04d" % version + body + b"\xff"
    crc = B.CRC64.calc(data) if checksum else 0
    return data + struct.pack("<Q", crc)


def assert_fails_at(data: bytes, *, lo: int = 0, hi: int | None = None, **options: object) -> RdbFormatError:
    with pytest.raises(RdbFormatError) as info:
        read_all(data, **options)
    offset = info.value.offset
    assert offset is not None and lo <= offset <= (len(data) if hi is None else hi), (offset, info.value)
    assert "offset" in str(info.value)
    return info.value


# -- header -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [b"", b"REDIS", b"RDB0009", b"redis0009", b"REDIS00x9", b"VALKEY08",
                                  b"\x00" * 9, b"GIF89a..."])
def test_wrong_or_short_magic(head):
    assert_fails_at(head + b"\xff" + b"\x00" * 8, hi=0)


@pytest.mark.parametrize("head", [b"REDIS0000", b"REDIS0013", b"REDIS0080", b"VALKEY079", b"VALKEY082"])
def test_unsupported_versions(head):
    err = assert_fails_at(head + b"\xff" + b"\x00" * 8, hi=9)
    assert "version" in str(err)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RdbFormatError, match="cannot open"):
        RdbReader(tmp_path / "nope.rdb")


# -- truncation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_every_truncation_is_reported(path, tmp_path):
    data = path.read_bytes()
    cuts = sorted(set(range(0, 300)) | set(range(300, len(data), 89)) | set(range(len(data) - 12, len(data))))
    for cut in cuts:
        assert_fails_at(data[:cut], hi=cut)
    # the same through a real file: lengths are checked against the file size
    for cut in cuts[::9]:
        part = tmp_path / "cut.rdb"
        part.write_bytes(data[:cut])
        with pytest.raises(RdbFormatError):
            list(read_records(part))


def test_truncated_payloads_fail_in_decode():
    for record in read_records(SMALL):
        if not isinstance(record, KeyRecord) or not record.payload:
            continue
        payload = record.payload
        for cut in sorted({0, 1, len(payload) // 2, len(payload) - 1}):
            if cut < len(payload):
                with pytest.raises(RdbFormatError):
                    decode_object(record.type_byte, payload[:cut], rdb_version=11)


# -- checksum ---------------------------------------------------------------------------------------------------


def test_bad_checksum_is_reported_at_the_checksum():
    data = bytearray(SMALL.read_bytes())
    data[-1] ^= 0x01
    err = assert_fails_at(bytes(data), lo=len(data) - 8, hi=len(data) - 8)
    assert "checksum" in str(err)
    records = read_all(bytes(data), verify_checksum=False)
    assert isinstance(records[-1], End) and records[-1].checksum_ok is False


def test_zero_checksum_means_not_checked():
    data = SMALL.read_bytes()[:-8] + b"\x00" * 8
    end = read_all(data)[-1]
    assert isinstance(end, End) and end.checksum == 0 and end.checksum_ok is None and end.computed


def test_old_versions_have_no_checksum():
    body = b"\xfe\x00" + b"\x00" + B.string(b"k") + B.string(b"v")
    records = read_all(b"REDIS0004" + body + b"\xff")
    assert isinstance(records[-1], End) and records[-1].checksum is None
    assert [r.key for r in records if isinstance(r, KeyRecord)] == [b"k"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=9, max_value=SMALL.stat().st_size - 1), xor=st.integers(1, 255))
def test_any_flipped_byte_is_caught(position, xor):
    """One corrupt byte anywhere: a format error where the structure breaks, else the checksum catches it."""
    data = bytearray(SMALL.read_bytes())
    data[position] ^= xor
    assert_fails_at(bytes(data))


# -- corrupt lengths and counts: fail before allocating ----------------------------------------------------------


def huge_string_record() -> bytes:
    return b"\x00" + B.string(b"key") + b"\x81" + struct.pack(">Q", 2**40) + b"x" * 100


@pytest.mark.parametrize("source", ["file", "stream"])
def test_corrupt_string_length_fails_fast_without_allocating(tmp_path, source):
    data = file_with(huge_string_record())
    tracemalloc.start()
    try:
        if source == "file":
            path = tmp_path / "huge.rdb"
            path.write_bytes(data)
            with pytest.raises(RdbFormatError) as info:
                list(read_records(path))
        else:
            with pytest.raises(RdbFormatError) as info:
                read_all(data, max_value_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.offset == 9
    assert peak < 8 << 20


def test_a_stream_never_buffers_past_max_value_bytes():
    """A socket that keeps sending: the reader stops at max_value_bytes instead of reading forever."""
    class Endless(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            n = len(buffer)
            buffer[:n] = b"\x01" * n
            self.sent += n
            return n

    stream = Endless()  # a set of 3M members claimed, endless 2-byte members sent: 6 MB for one record
    header = io.BytesIO(b"REDIS0011" + b"\x02" + B.string(b"k") + B.length(3_000_000))
    joined = io.BufferedReader(_Chain(header, stream))  # type: ignore[arg-type]
    with pytest.raises(RdbFormatError, match="max_value_bytes"):
        list(RdbReader(joined, max_value_bytes=4 << 20, chunk_size=1 << 16).records())
    assert stream.sent < 16 << 20


class _Chain(io.RawIOBase):
    def __init__(self, *parts: io.RawIOBase | io.BytesIO) -> None:
        self.parts = list(parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while self.parts:
            n = self.parts[0].readinto(buffer)
            if n:
                return n
            self.parts.pop(0)
        return 0


@pytest.mark.parametrize("type_byte", [1, 2, 3, 4, 5, 14, 18])
def test_corrupt_element_count_fails_at_once(type_byte):
    body = bytes([type_byte]) + B.string(b"k") + b"\x81" + struct.pack(">Q", 2**62) + b"\x01a" * 10
    err = assert_fails_at(file_with(body), hi=9 + 3)
    assert "count" in str(err)


def test_lzf_bomb_is_refused_before_decompressing():
    bomb = b"\xc3" + B.length(3) + b"\x80" + struct.pack(">I", 2**31) + b"abc"
    with pytest.raises(RdbFormatError, match="LZF"):
        decode_object(0, bomb)
    assert_fails_at(file_with(b"\x00" + bomb + B.string(b"v")), hi=10)


@pytest.mark.parametrize("body", [
    b"\x08" + B.string(b"k") + B.string(b"v"),  # type 8 was never assigned
    b"\x1a" + B.string(b"k") + B.string(b"v"),  # Redis 8.6 stream type 26: not readable
    b"\xf2",  # opcode 242 (Valkey forkless-save inline command): never in a file
    b"\xf6" + B.string(b"f"),  # FUNCTION_PRE_GA
    b"\xf3" + B.string(b"meta"),  # KEY_META in a REDIS file
    b"\x06" + B.string(b"k") + b"\x01",  # MODULE_PRE_GA cannot be skipped
])
def test_unknown_or_unsupported_bytes_are_named(body):
    err = assert_fails_at(file_with(body, version=12), lo=9, hi=9)
    assert str(err.offset) in str(err)


# -- random input (hypothesis) ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400), version=st.sampled_from([b"REDIS0009", b"REDIS0011", b"REDIS0012",
                                                                  b"VALKEY080"]))
def test_random_bytes_after_a_header(body, version):
    try:
        records = read_all(version + body)
    except RdbFormatError as err:
        assert err.offset is not None and 0 <= err.offset <= len(version + body)
    else:
        assert isinstance(records[-1], End)


@settings(max_examples=600, deadline=None)
@given(type_byte=st.sampled_from(TYPE_BYTES), payload=st.binary(max_size=300),
       version=st.sampled_from([None, 9, 11, 12, 80]))
def test_random_payloads_decode_or_fail_cleanly(type_byte, payload, version):
    try:
        decode_object(type_byte, payload, rdb_version=version)
    except RdbFormatError as err:
        assert err.offset is not None and 0 <= err.offset <= len(payload)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_real_payloads_decode_or_fail_cleanly(data):
    records = [r for r in read_records(SMALL) if isinstance(r, KeyRecord)]
    record = data.draw(st.sampled_from(records))
    payload = bytearray(record.payload)
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_object(record.type_byte, bytes(payload), rdb_version=11)
    except RdbFormatError as err:
        assert err.offset is not None
