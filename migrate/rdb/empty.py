"""Is a serialized value an empty collection? (what servers skip when they load a file: facts.types.EMPTY_SKIPPED)

Read from the value's first bytes only: a length prefix of 0, or a ziplist / listpack / intset / zipmap blob without
entries. A blob with entries is never decompressed to find out: an empty one is at most 11 bytes, so a longer blob
(raw, or LZF whose uncompressed length says so) is not empty. A quicklist is empty when it has no node or every node
is empty; the walk stops at the first node with an entry (the first one, in any file a server wrote normally).

    checker = EmptyCheck(rdb_version)
    kind = checker.kind(type_byte, body)   # None, "skipped" (servers skip it) or "refused" (servers refuse the file)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from migrate.facts import types as T
from migrate.rdb.constants import ENC_LZF
from migrate.rdb.encodings import FormatProblem, read_length, read_lzf

SKIPPED: Final = "skipped"  # a server skips it when it loads a file
REFUSED: Final = "refused"  # a server refuses the whole file for it (empty intset or zipmap)

CAPTURE_BYTES: Final = 256  # what a reader must capture to tell (quicklists of up to ~20 empty nodes; longer ones
# are rarer still, and found when the values are read in full, at load time)
EMPTY_ZIPLIST_BYTES: Final = 11  # 10-byte header + end byte
EMPTY_LISTPACK_BYTES: Final = 7  # 6-byte header + end byte
_END: Final = 0xFF
_U32_LE = struct.Struct("<I").unpack_from

Probe = Callable[[bytes], bool]


def _blob(body: bytes, p: int, largest_empty: int) -> bytes | None:
    """The blob (an RDB string) at p when it is small enough to be empty, else None (it has entries)."""
    c = body[p]
    kind = c >> 6
    if kind == 3:
        if c & 0x3F != ENC_LZF:
            return None  # an integer-encoded string is no blob: the server decides
        _, q = read_length(body, p + 1)
        ulen, _ = read_length(body, q)
        return read_lzf(body, p)[0] if ulen <= largest_empty else None
    n, q = read_length(body, p)
    return body[q:q + n] if n <= largest_empty else None


def _ziplist_empty(blob: bytes | None) -> bool:
    return blob is not None and len(blob) > 10 and blob[10] == _END


def _listpack_empty(blob: bytes | None) -> bool:
    return blob is not None and len(blob) > 6 and blob[6] == _END


def _length_zero(body: bytes, p: int = 0) -> bool:
    return read_length(body, p)[0] == 0


def _ziplist(body: bytes) -> bool:
    return _ziplist_empty(_blob(body, 0, EMPTY_ZIPLIST_BYTES))


def _listpack(body: bytes) -> bool:
    return _listpack_empty(_blob(body, 0, EMPTY_LISTPACK_BYTES))


def _intset(body: bytes) -> bool:
    blob = _blob(body, 0, 8)
    return blob is not None and len(blob) >= 8 and _U32_LE(blob, 4)[0] == 0


def _zipmap(body: bytes) -> bool:
    blob = _blob(body, 0, 2)
    return blob is not None and len(blob) == 2 and blob[1] == _END


def _quicklist(body: bytes) -> bool:
    n, p = read_length(body, 0)
    for _ in range(n):
        if not _ziplist_empty(_blob(body, p, EMPTY_ZIPLIST_BYTES)):
            return False
        p = _skip_string(body, p)
    return True


def _quicklist_2(body: bytes) -> bool:
    n, p = read_length(body, 0)
    for _ in range(n):
        container, p = read_length(body, p)
        if container != 2 or not _listpack_empty(_blob(body, p, EMPTY_LISTPACK_BYTES)):
            return False  # a PLAIN node (1) holds one element
        p = _skip_string(body, p)
    return True


def _skip_string(body: bytes, p: int) -> int:
    c = body[p]
    if c >> 6 == 3:
        if c & 0x3F != ENC_LZF:
            raise FormatProblem("an integer where a quicklist node should be", p)
        clen, q = read_length(body, p + 1)
        _, q = read_length(body, q)
        return q + clen
    n, q = read_length(body, p)
    return q + n


PROBES: Final[dict[str, Probe]] = {
    "LIST": _length_zero, "SET": _length_zero, "ZSET": _length_zero, "HASH": _length_zero, "ZSET_2": _length_zero,
    "HASH_ZIPMAP": _zipmap, "LIST_ZIPLIST": _ziplist, "SET_INTSET": _intset, "ZSET_ZIPLIST": _ziplist,
    "HASH_ZIPLIST": _ziplist, "LIST_QUICKLIST": _quicklist, "HASH_LISTPACK": _listpack, "ZSET_LISTPACK": _listpack,
    "LIST_QUICKLIST_2": _quicklist_2, "SET_LISTPACK": _listpack, "HASH_METADATA_PRE_GA": _length_zero,
    "HASH_LISTPACK_EX_PRE_GA": _listpack, "HASH_METADATA": lambda body: _length_zero(body, 8),
    "HASH_LISTPACK_EX": lambda body: _listpack_empty(_blob(body, 8, EMPTY_LISTPACK_BYTES)), "HASH_2": _length_zero,
}
"""How to tell, per type name (facts.types.TypeInfo.name), that a serialized value is empty."""


class EmptyCheck:
    """Empty-value checks for data of one RDB version (type bytes 22+ mean different things to Redis and Valkey)."""

    def __init__(self, rdb_version: int) -> None:
        self.rdb_version = rdb_version
        self.probes: list[tuple[Probe, str] | None] = [None] * 256
        for byte in range(256):
            info = T.type_info(byte, rdb_version)
            if info is None or info.name not in PROBES:
                continue
            kind = SKIPPED if info.name in T.EMPTY_SKIPPED else REFUSED if info.name in T.EMPTY_REFUSED else None
            if kind is not None:
                self.probes[byte] = (PROBES[info.name], kind)

    def kind(self, type_byte: int, body: bytes) -> str | None:
        """None when the value holds something (or is malformed: the target judges it), else SKIPPED or REFUSED."""
        entry = self.probes[type_byte]
        if entry is None or not body:
            return None
        probe, kind = entry
        try:
            return kind if probe(body) else None
        except (IndexError, FormatProblem, ValueError):
            return None


def reason(kind: str, type_name: str) -> str:
    """How the report names an empty key."""
    if kind == SKIPPED:
        return "empty, skipped as the server does"
    return (f"empty, skipped (an empty {type_name} makes Redis 7.0+ and Valkey refuse the whole file; Redis 6.0 kept "
            "it as an empty key)")


def payload_kind(payload: bytes) -> tuple[str, str] | None:
    """(kind, type name) when a DUMP payload holds an empty collection, else None."""
    if len(payload) < 11:
        return None
    type_byte, version = payload[0], payload[-10] | (payload[-9] << 8)
    info = T.type_info(type_byte, version)
    kind = _checker(version).kind(type_byte, payload[1:-10])
    return (kind, info.name if info else str(type_byte)) if kind else None


_CHECKERS: dict[int, EmptyCheck] = {}


def _checker(version: int) -> EmptyCheck:
    checker = _CHECKERS.get(version)
    if checker is None:
        checker = _CHECKERS[version] = EmptyCheck(version)
    return checker
