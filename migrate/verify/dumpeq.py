"""A fast path at --level full: equal DUMP bodies prove equal values.

A DUMP payload is the value serialized in its current encoding (a type byte and the body), then a 2-byte RDB version
and an 8-byte CRC. Two servers holding a value in the same encoding serialize it to the same body (after `migrate run`,
a listpack travels byte for byte; a Redis 7.0 quicklist of one node and Valkey's listpack list serialize alike), and
equal bodies under a type byte that both products define alike mean equal values. The converse does not hold (the same
value in another encoding, such as a Redis 7.0 hashtable set that Valkey restored as a listpack, has another body), so
equal bodies settle a key and anything else is decoded (decoded.py) or read type-natively, which decide every
mismatch: verdicts never depend on encodings.

Why: a canonical read costs the server several times a DUMP for most types (ZRANGE formats every score, a stream
needs XINFO STREAM, XRANGE and XINFO GROUPS) and Python a parse and a digest of every element, where the migration
moved one opaque payload.

Eligible: the same core type on both sides and MEMORY USAGE within DUMP_LIMIT on both (the size `migrate run` also
trusts to set big keys aside; exact for compact encodings, sampled for the others). Memory: the keys DUMPed in one
round trip hold at most DUMP_BUDGET bytes of MEMORY USAGE per side. An error reply (a user without MEMORY or DUMP, a
renamed command) only means the type-native read.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from migrate.facts.types import COMMON_TYPES
from migrate.rdb.constants import ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF
from migrate.rdb.encodings import FormatProblem, read_length

# Type bytes both products define alike, modules excepted (a module may serialize equal values differently: those are
# compared by digest.read_module).
SHARED_TYPE_BYTES: Final = frozenset(t.byte for t in COMMON_TYPES if t.logical != "module")
KIND_BY_BYTE: Final = {t.byte: t.logical.encode() for t in COMMON_TYPES if t.logical != "module"}  # TYPE's reply
DUMP_LIMIT: Final = 16 * 1024  # bytes of MEMORY USAGE (a listpack's size plus a few dozen bytes of overhead)
DUMP_BUDGET: Final = 4 * 1024 * 1024  # MEMORY USAGE bytes DUMPed per round trip and side (memory bound)
FOOTER: Final = 10  # RDB version (2 bytes) and CRC64 (8 bytes): differ between versions, not part of the value
DUMP: Final = b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n"  # packed per key, like batch.py's templates


def small(usage: Any) -> bool:
    """A MEMORY USAGE reply that allows reading the value whole."""
    return type(usage) is int and 0 < usage <= DUMP_LIMIT


def same_body(src: Any, tgt: Any) -> bool:
    return (type(src) is bytes and type(tgt) is bytes and len(src) > FOOTER and len(tgt) == len(src)
            and src[0] == tgt[0] and src[0] in SHARED_TYPE_BYTES and src[:-FOOTER] == tgt[:-FOOTER]) \
        or same_stream_without_groups(src, tgt)


# STREAM_LISTPACKS_2 (Redis 7.0) and _3 (7.2+, Valkey) differ only in the consumer records (_3 adds active-time): a
# stream without consumer groups has the same body in both, and `migrate run` restores 7.0's as is.
STREAM_2_AND_3: Final = frozenset({19, 21})


def same_stream_without_groups(src: Any, tgt: Any) -> bool:
    """A type-19 and a type-21 payload with the same body and no consumer group: the same stream."""
    if not (type(src) is bytes and type(tgt) is bytes and src[0] in STREAM_2_AND_3 and tgt[0] in STREAM_2_AND_3
            and len(src) == len(tgt) and src[-FOOTER - 1] == 0 and src[1:-FOOTER] == tgt[1:-FOOTER]):
        return False  # without groups, the body ends with a group count of 0
    try:
        return stream_groups(src) == 0
    except (FormatProblem, IndexError, struct.error):
        return False  # not a stream this walk understands: decoded.py decides


def stream_groups(payload: bytes) -> int:
    """The consumer group count of a type-19/21 payload, found by skipping its listpacks and metadata (inlined: this
    runs for every Redis 7.0 stream)."""
    nodes, p = read_length(payload, 1)
    for _ in range(2 * nodes):  # node key and listpack: two strings per node
        p = skip_string(payload, p)
    value = 0
    for _ in range(9):  # length, last id (2), first id (2), max deleted id (2), entries added, then the group count
        c = payload[p]
        if c < 0x40:
            value, p = c, p + 1
        elif c < 0x80:
            value, p = ((c & 0x3F) << 8) | payload[p + 1], p + 2
        else:
            value, p = read_length(payload, p)
    if p > len(payload) - FOOTER:
        raise IndexError(p)
    return value


def skip_string(b: bytes, p: int) -> int:
    """The position after the RDB string at p, without copying it."""
    c = b[p]
    if c >> 6 != 3:
        length, q = read_length(b, p)
        return q + length
    enc = c & 0x3F
    if enc in (ENC_INT8, ENC_INT16, ENC_INT32):
        return p + 1 + (1 << enc)
    if enc == ENC_LZF:
        compressed, q = read_length(b, p + 1)
        _, q = read_length(b, q)
        return q + compressed
    raise FormatProblem(f"unknown string encoding {enc}", p)


def budget_groups(positions: list[int], sizes: list[int], budget: int = DUMP_BUDGET) -> list[list[int]]:
    """Positions cut into groups of at most `budget` bytes of MEMORY USAGE (one round trip each)."""
    groups: list[list[int]] = [[]]
    left = budget
    for i, size in zip(positions, sizes, strict=True):
        if size > left and groups[-1]:
            groups.append([])
            left = budget
        groups[-1].append(i)
        left -= size
    return [g for g in groups if g]
