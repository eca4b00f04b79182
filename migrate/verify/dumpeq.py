"""A fast path for small collections at --level full: equal DUMP bodies prove equal values.

A DUMP payload is the value serialized in its current encoding (a type byte and the body), then a 2-byte RDB version
and an 8-byte CRC. Two servers holding a small hash, zset, set or list in the same compact encoding serialize it to the
same body (after `migrate run`, a listpack travels byte for byte), and equal bodies under a type byte that both products
define alike mean equal values. The converse does not hold (the same value in another encoding, such as a Redis 7.0
hashtable set that Valkey restored as a listpack, has another body), so equal bodies settle a key and anything else
takes the canonical type-native read, which alone decides every mismatch: verdicts never depend on encodings.

Why: a canonical read of such a value costs the server several times a DUMP (ZRANGE formats every score, HSCAN builds
a reply per field) and Python a parse and a digest of every element, where the migration moved one opaque payload.

Eligible: the same collection type on both sides, a compact encoding on both (its MEMORY USAGE is exact, not sampled),
and MEMORY USAGE within DUMP_LIMIT on both. Memory: the keys DUMPed in one round trip hold at most DUMP_BUDGET bytes
of MEMORY USAGE per side (a whole batch of small values is one round trip). An error reply (a user without MEMORY,
OBJECT or DUMP, a renamed command) only means the canonical read.
"""

from __future__ import annotations

from typing import Any, Final

from migrate.facts.types import COMMON_TYPES

COMPACT_ENCODINGS: Final = frozenset({b"listpack", b"ziplist", b"intset"})
COLLECTIONS: Final = frozenset({b"hash", b"zset", b"set", b"list"})
SHARED_TYPE_BYTES: Final = frozenset(t.byte for t in COMMON_TYPES if t.logical.encode() in COLLECTIONS)
DUMP_LIMIT: Final = 16 * 1024  # bytes of MEMORY USAGE (a listpack's size plus a few dozen bytes of overhead)
DUMP_BUDGET: Final = 4 * 1024 * 1024  # MEMORY USAGE bytes DUMPed per round trip and side (memory bound)
FOOTER: Final = 10  # RDB version (2 bytes) and CRC64 (8 bytes): differ between versions, not part of the value
EQUAL_BODIES: Final = {"dump_body": "equal"}  # the fingerprint of a settled key on both sides
DUMP: Final = b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n"  # packed per key, like batch.py's templates


def eligible(kind: Any, encoding: Any, usage: Any) -> bool:
    return (kind in COLLECTIONS and encoding in COMPACT_ENCODINGS and type(usage) is int
            and 0 < usage <= DUMP_LIMIT)


def candidates(src_first: list[Any], tgt_first: list[Any], keys: int) -> list[list[int]]:
    """Positions of the keys whose first-round replies (TYPE, expiry, OBJECT ENCODING, MEMORY USAGE per key) make
    them eligible on both sides, in groups of at most DUMP_BUDGET bytes (one round trip each)."""
    groups: list[list[int]] = [[]]
    budget = DUMP_BUDGET
    src = zip(src_first[0::4], src_first[2::4], src_first[3::4], strict=True)
    tgt = zip(tgt_first[0::4], tgt_first[2::4], tgt_first[3::4], strict=True)
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        if s[0] == t[0] and eligible(*s) and eligible(*t):
            size = max(s[2], t[2])
            if size > budget:
                groups.append([])
                budget = DUMP_BUDGET
            groups[-1].append(i)
            budget -= size
    return [g for g in groups if g]


def same_body(src: Any, tgt: Any) -> bool:
    return (type(src) is bytes and type(tgt) is bytes and len(src) > FOOTER and len(tgt) == len(src)
            and src[0] == tgt[0] and src[0] in SHARED_TYPE_BYTES and src[:-FOOTER] == tgt[:-FOOTER])
