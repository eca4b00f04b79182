"""RDB object type bytes: what each byte means (per product from byte 22 on), its logical type, and which bytes each
release reads (in an RDB file and in a RESTORE payload).

Sources: src/rdb.h of redis/redis and valkey-io/valkey (docs/compatibility.md). The two products agree on every type
byte up to 21; from 22 on they assign different meanings, so every lookup that can differ takes the product (or the
RDB version, which implies it: 12-79 Redis, 80+ Valkey).

What RESTORE reads was measured on this project's machines (2026-11-26): every key of fixtures/dataset.py populate()
was DUMPed on Redis 6.0.16, 7.0.15, 8.0.2, 8.0.6 and Valkey 8.0.1, 8.1.1, 9.1.2, its footer rewritten to RDB versions
9, 10, 11, 12, 80 and 81 (CRC recomputed), and RESTOREd into every one of them. No server checks the type byte against
the payload's version: only the version against its own (migrate.facts.releases), then the object parser. A type byte
the target does not know is refused as `Bad data format`: Redis 6.0 refuses 16-25, Redis 7.0 refuses 20-25, Valkey 8.x
refuses 22-25, Valkey 9.1 refuses Redis's 24/25 and Redis 8 refuses Valkey's 22 (Redis's 22 is another encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from migrate.facts.releases import Version

# Logical types as TYPE reports them; every other TYPE reply names a module type.
CORE_TYPES: Final = ("string", "list", "set", "zset", "hash", "stream")
LOGICAL_TYPES: Final = (*CORE_TYPES, "module")

# Type bytes below this mean the same to Redis and Valkey; from it on they differ.
SHARED_TYPES_BELOW: Final = 22
# RDB versions >= 80 are Valkey's own; 12-79 are Redis's ("foreign" to Valkey).
VALKEY_FIRST_OWN_VERSION: Final = 80


@dataclass(frozen=True)
class TypeInfo:
    byte: int
    name: str  # the constant's name in rdb.h, without the RDB_TYPE_ prefix
    logical: str  # the logical type as TYPE reports it (module values: "module")
    first_rdb_version: int  # first RDB version that could contain it
    product: str  # "any", "redis" or "valkey": who defines this meaning of the byte
    readable: bool = True  # False: known, but our reader cannot parse it


# Meanings shared by both products.
COMMON_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(0, "STRING", "string", 1, "any"),
    TypeInfo(1, "LIST", "list", 1, "any"),
    TypeInfo(2, "SET", "set", 1, "any"),
    TypeInfo(3, "ZSET", "zset", 1, "any"),
    TypeInfo(4, "HASH", "hash", 2, "any"),
    TypeInfo(5, "ZSET_2", "zset", 8, "any"),
    TypeInfo(6, "MODULE_PRE_GA", "module", 8, "any", readable=False),  # 4.0 RCs: no opcodes, cannot be skipped
    TypeInfo(7, "MODULE_2", "module", 8, "any"),
    TypeInfo(9, "HASH_ZIPMAP", "hash", 2, "any"),
    TypeInfo(10, "LIST_ZIPLIST", "list", 4, "any"),
    TypeInfo(11, "SET_INTSET", "set", 2, "any"),
    TypeInfo(12, "ZSET_ZIPLIST", "zset", 4, "any"),
    TypeInfo(13, "HASH_ZIPLIST", "hash", 4, "any"),
    TypeInfo(14, "LIST_QUICKLIST", "list", 7, "any"),
    TypeInfo(15, "STREAM_LISTPACKS", "stream", 9, "any"),
    TypeInfo(16, "HASH_LISTPACK", "hash", 10, "any"),
    TypeInfo(17, "ZSET_LISTPACK", "zset", 10, "any"),
    TypeInfo(18, "LIST_QUICKLIST_2", "list", 10, "any"),
    TypeInfo(19, "STREAM_LISTPACKS_2", "stream", 10, "any"),
    TypeInfo(20, "SET_LISTPACK", "set", 11, "any"),
    TypeInfo(21, "STREAM_LISTPACKS_3", "stream", 11, "any"),
)

# Redis after the fork (RDB 12+, REDIS magic).
REDIS_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(22, "HASH_METADATA_PRE_GA", "hash", 12, "redis"),  # 7.4 release candidates: absolute field TTLs
    TypeInfo(23, "HASH_LISTPACK_EX_PRE_GA", "hash", 12, "redis"),
    TypeInfo(24, "HASH_METADATA", "hash", 12, "redis"),  # 7.4 GA: field TTLs relative to a min-expire prefix
    TypeInfo(25, "HASH_LISTPACK_EX", "hash", 12, "redis"),
    TypeInfo(26, "STREAM_LISTPACKS_4", "stream", 13, "redis", readable=False),  # Redis 8.6 (IDMP), UNCONFIRMED
)

# Valkey 9+ (RDB 80+, VALKEY magic).
VALKEY_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(22, "HASH_2", "hash", 80, "valkey"),  # hashtable hash whose fields carry absolute expiries
    TypeInfo(23, "PATH_HASH", "hash", 81, "valkey", readable=False),  # Valkey 9.2; format not implemented here
)

STREAM_TYPE_BYTES: Final[frozenset[int]] = frozenset(i.byte for i in COMMON_TYPES if i.logical == "stream")
"""The stream type bytes both products share (STREAM_LISTPACKS, _2, _3): 15, 19, 21."""

MODULE_TYPES: Final[frozenset[int]] = frozenset({6, 7})
"""MODULE_PRE_GA, MODULE_2: restorable only where the same module (and type) is loaded."""

FIELD_TTL_TYPES: Final[frozenset[tuple[str, int]]] = frozenset({
    ("redis", 22), ("redis", 23), ("redis", 24), ("redis", 25),  # HASH_METADATA(_PRE_GA), HASH_LISTPACK_EX(_PRE_GA)
    ("valkey", 22),  # HASH_2
})
"""(dialect, type byte) of hashes that may carry field TTLs. Dialect: "redis" for RDB < 80, "valkey" for 80+."""

TYPE_BYTES_READ: Final[tuple[tuple[str, Version, frozenset[int]], ...]] = (
    ("redis", (4, 0), frozenset({0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14})),
    ("redis", (5, 0), frozenset({15})),  # measured: Redis 6.0.16 reads 0-5, 9-15
    ("redis", (7, 0), frozenset({16, 17, 18, 19})),  # measured: Redis 7.0.15 reads 0-19, refuses 20, 21
    ("redis", (7, 2), frozenset({20, 21})),  # source: rdb.h of 7.2 (not in the matrix)
    ("redis", (7, 4), frozenset({22, 23, 24, 25})),  # measured for 24/25 (Redis 8.0.x); 22/23 from source (7.4 RCs)
    ("valkey", (7, 2), frozenset(range(0, 6)) | frozenset(range(9, 22))),  # measured: Valkey 8.0.1/8.1.1 read 0-21
    ("valkey", (9, 0), frozenset({22})),  # measured: Valkey 9.1.2 reads its own HASH_2 (22)
    ("keydb", (6, 0), frozenset({0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15})),  # UNCONFIRMED: KeyDB writes RDB 9
)
"""(product, first release, type bytes added): what a release reads, cumulative by release. Bytes 22+ mean different
things to Redis and Valkey: a byte >= 22 counts only in data of the reader's own dialect (see reads_type)."""

OPCODES_READ: Final[tuple[tuple[str, Version, frozenset[int]], ...]] = (
    ("redis", (2, 6), frozenset({255, 254, 253, 252})),  # EOF, SELECTDB, EXPIRETIME, EXPIRETIME_MS
    ("redis", (3, 2), frozenset({251, 250})),  # RESIZEDB, AUX (rdb.h of 3.2, RDB 7)
    ("redis", (5, 0), frozenset({249, 248, 247})),  # FREQ, IDLE, MODULE_AUX (rdb.h of 5.0, RDB 9)
    ("redis", (7, 0), frozenset({245})),  # FUNCTION2; measured: Redis 6.0.16 refuses it, 7.0.15 reads it
    ("redis", (7, 4), frozenset({244})),  # SLOT_INFO; measured: 7.0.15 refuses it, 8.0.2/8.0.6 read it
    ("valkey", (7, 2), frozenset({255, 254, 253, 252, 251, 250, 249, 248, 247, 245})),  # as Redis 7.2
    ("valkey", (9, 0), frozenset({244, 243})),  # SLOT_INFO, SLOT_IMPORT; measured: 8.0.1/8.1.1 refuse 244, 9.1.2 reads
)  # measured: Valkey 9.1.2 reads SLOT_IMPORT (243) in cluster mode only; started standalone on it, it crashes
"""(product, first release, opcodes added): what a server's RDB loader reads (rdbLoadRioWithLoadingCtx), cumulative.
Any other byte in opcode position is read as an object type and refused (`Unknown RDB encoding type`). Unknown AUX
fields are skipped by every release (measured on the whole matrix, 2026-12-01); Valkey 8.0+ parses the AUX field
`slot-info` and refuses a malformed one. FUNCTION_PRE_GA (246) was read by Redis 7.0 only and is written by none."""

_COMMON_BY_BYTE: Final = {t.byte: t for t in COMMON_TYPES}
_REDIS_BY_BYTE: Final = {**_COMMON_BY_BYTE, **{t.byte: t for t in REDIS_TYPES}}
_VALKEY_BY_BYTE: Final = {**_COMMON_BY_BYTE, **{t.byte: t for t in VALKEY_TYPES}}


def dialect_of_version(rdb_version: int | None) -> str:
    """Who defines type bytes 22+ for data of this RDB version: "redis" (< 80), "valkey" (80+), "any" (unknown)."""
    if rdb_version is None:
        return "any"
    return "valkey" if rdb_version >= VALKEY_FIRST_OWN_VERSION else "redis"


def type_info(type_byte: int, rdb_version: int | None = None) -> TypeInfo | None:
    """The meaning of an object type byte for data of this RDB version (None: unknown byte).

    Without a version, bytes 22+ are looked up as Valkey's first, then Redis's (the logical type is "hash" either
    way for 22-25).
    """
    dialect = dialect_of_version(rdb_version)
    if dialect == "valkey":
        return _VALKEY_BY_BYTE.get(type_byte)
    if dialect == "redis":
        return _REDIS_BY_BYTE.get(type_byte)
    return _VALKEY_BY_BYTE.get(type_byte) or _REDIS_BY_BYTE.get(type_byte)


def type_name(type_byte: int, rdb_version: int | None = None) -> str:
    info = type_info(type_byte, rdb_version)
    return info.name if info else f"UNKNOWN_{type_byte}"


def logical_type(type_byte: int, rdb_version: int | None = None) -> str:
    """The logical type ("string", "list", "set", "zset", "hash", "stream", "module") of an object type byte."""
    info = type_info(type_byte, rdb_version)
    if info is None:
        raise ValueError(f"unknown RDB object type byte {type_byte}")
    return info.logical


def is_object_type(type_byte: int, rdb_version: int | None = None) -> bool:
    return type_info(type_byte, rdb_version) is not None


def has_field_ttls(type_byte: int, rdb_version: int | None) -> bool:
    """Whether values of this type byte (in data of this RDB version) are hashes that may carry field TTLs."""
    return (dialect_of_version(rdb_version), type_byte) in FIELD_TTL_TYPES


def readable_types(product: str, version: Version) -> frozenset[int]:
    return _cumulative(TYPE_BYTES_READ, product, version)


def readable_opcodes(product: str, version: Version) -> frozenset[int]:
    return _cumulative(OPCODES_READ, product, version)


def _cumulative(table: tuple[tuple[str, Version, frozenset[int]], ...], product: str,
                version: Version) -> frozenset[int]:
    """What a release has in a table of additions per (product, first release)."""
    out: frozenset[int] = frozenset()
    for prod, first, added in table:
        if prod == product and version >= first:
            out |= added
    return out


def same_meaning(type_byte: int, dialect: str, product: str) -> bool:
    """Whether a type byte of data in `dialect` means the same thing to a reader of `product` (always below 22)."""
    return type_byte < SHARED_TYPES_BELOW or dialect == product


# -- empty values: what a loader does with a collection that holds nothing ------------------------------------------

EMPTY_SKIPPED: Final[frozenset[str]] = frozenset({
    "LIST", "SET", "ZSET", "HASH", "ZSET_2", "LIST_ZIPLIST", "ZSET_ZIPLIST", "HASH_ZIPLIST", "LIST_QUICKLIST",
    "HASH_LISTPACK", "ZSET_LISTPACK", "LIST_QUICKLIST_2", "SET_LISTPACK", "HASH_METADATA_PRE_GA",
    "HASH_LISTPACK_EX_PRE_GA", "HASH_METADATA", "HASH_LISTPACK_EX", "HASH_2",
})
"""Type names (TypeInfo.name) whose empty values a server skips when it loads a file (`goto emptykey` in
rdbLoadObject, src/rdb.c of redis unstable 2024-10 and valkey 8.0; redis/redis#9297 and #9349, Redis 7.0+): a length
of 0, a ziplist or listpack without entries, a quicklist without nodes or whose every node is empty (empty nodes of a
non-empty quicklist are dropped). The server logs "rdbLoadObject skipping empty key: <key>" and "empty keys skipped:
N"; RESTORE of the same bytes answers `Bad data format`. Measured on Redis 7.0.15, 8.0.6, Valkey 8.1.1 and 9.1.2
(2026-12-01, tests/test_persistence_files.py). Redis 6.0 and older load empty values as empty keys and keep them (a
live Redis 6.0 can hold them and DUMP them: measured on 6.0.16)."""

EMPTY_REFUSED: Final[frozenset[str]] = frozenset({"SET_INTSET", "HASH_ZIPMAP"})
"""Type names whose empty values make a server refuse the whole file: intsetValidateIntegrity and
zipmapValidateIntegrity fail on zero entries ("Intset integrity check failed", "Zipmap integrity check failed"),
measured on the same servers. Redis 6.0 loads and keeps them."""

EMPTY_LEGAL: Final[frozenset[str]] = frozenset({"STRING", "STREAM_LISTPACKS", "STREAM_LISTPACKS_2",
                                                "STREAM_LISTPACKS_3"})
"""Values that may be empty and are loaded as they are: an empty string, a stream without entries (it keeps its last
id and consumer groups; XTRIM MAXLEN 0 and XDEL of every entry leave one)."""


STREAM_COUNTS_CHECKED: Final[tuple[tuple[str, Version], ...]] = (("valkey", (9, 1)),)
"""(product, first release) that refuse a stream payload whose counters disagree with its entries: a length other
than its live entries, or a node whose live/deleted header differs from its entries' deleted flags (RESTORE answers
`Bad data format`, loading a file fails). Source: valkey-io/valkey#3922 (length against the live counts) and #4381
(the live/deleted split), 2026; measured 2026-12-01: Valkey 9.1.2 refuses, Valkey 8.1.1, Redis 7.0.15 and 8.0.6 load
them. Redis merged a similar check (redis/redis#15124, 2026-04) in a release not in the matrix: not listed."""


def checks_stream_counts(product: str, version: Version) -> bool:
    return any(product == p and version >= first for p, first in STREAM_COUNTS_CHECKED)


MEMORY_USAGE_UNSAFE: Final[tuple[tuple[str, Version], ...]] = (("redis", (7, 0)),)
"""(product, first release without the fault) whose MEMORY USAGE kills the server on an empty list: releases that
keep the empty values of a file they load (EMPTY_SKIPPED above: before Redis 7.0) hold a quicklist without nodes,
and objectComputeSize (src/object.c, 6.x) reads the head node's size before checking that there is one (a do-while
over the nodes). Measured 2026-12-01 on Redis 6.0.16 loading fixtures/rdb/handbuilt/rdb9-empty-keys.rdb: `MEMORY
USAGE e:quicklist` closes every connection (the process died); the other empty values of that file answer. Every
MEMORY USAGE sent to such a server is guarded (an LLEN round first; migrate.sizes)."""


def memory_usage_unsafe(product: str, version: Version) -> bool:
    return any(product == p and version < fixed for p, fixed in MEMORY_USAGE_UNSAFE)
