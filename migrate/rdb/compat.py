"""What a target server can take: the object type bytes its RESTORE reads, and the commands the rewriter may use.

Facts as data, measured on this project's machines (2026-11-26) unless marked otherwise. The measurement: every key of
fixtures/dataset.py populate() was DUMPed on Redis 6.0.16, 7.0.15, 8.0.2, 8.0.6 and Valkey 8.0.1, 8.1.1, 9.1.2, its
footer rewritten to RDB versions 9, 10, 11, 12, 80 and 81 (CRC recomputed), and RESTOREd into every one of them.

RESTORE payload versions accepted (`DUMP payload version or checksum are wrong` otherwise):
- Redis 6.0.16: <= 9.  Redis 7.0.15: <= 10.  Redis 8.0.2 / 8.0.6: <= 12.
- Valkey 8.0.1: <= 11.  Valkey 8.1.1 strict (default): <= 11; with `CONFIG SET rdb-version-check relaxed` (settable
  at runtime): <= 11, 80 and 81 too, still not 12-79 ("foreign": written by Redis after the fork).
- Valkey 9.1.2 strict (default): <= 11 and 80; not 12-79, not 81. Relaxed (settable at runtime): every version
  measured, 9-81, including foreign ones, but a foreign (12-79) payload whose type byte is 22-243 is refused as
  `Unsupported foreign data type: 22`; Redis types 24/25 are refused as `Bad data format` at any version.
migrate.facts.accepts_rdb_version encodes these version rules.

No server checks the type byte against the payload's version: only the version against its own, then the object
parser. Redis 8 payloads of types 0-21 restamped to 10 restore on Redis 7.0 (types 0-19) and to 11 or 80 on every
Valkey; Valkey 9.1 even restores its own type-22 payload restamped to 9, 10 or 11. A type byte the target does not know
is refused as `Bad data format`: Redis 6.0 refuses 16-25, Redis 7.0 refuses 20-25, Valkey 8.x refuses 22-25, Valkey
9.1 refuses Redis's 24/25 and Redis 8 refuses Valkey's 22 (Redis's 22 is another encoding).

Restamping: the planner stamps the target's own RDB version. Measured to restore every type 0-21: Redis 8 payloads
stamped 11 into Valkey 8.0/8.1, stamped 80 (or 9-11) into Valkey 9.1 strict; Redis 8 / Valkey 9.1 payloads stamped 10
into Redis 7.0 (types 0-19) and 9 into Redis 6.0 (types 0-15). No payload form of a Redis hash with field TTLs (24, 25)
restores on any Valkey: those, and every type a target lacks, are rewritten with commands (migrate.rdb.rewrite).
"""

from __future__ import annotations

from typing import Final

from migrate.facts import Version

FIELD_TTL_TYPES: Final[frozenset[tuple[str, int]]] = frozenset({
    ("redis", 22), ("redis", 23), ("redis", 24), ("redis", 25),  # HASH_METADATA(_PRE_GA), HASH_LISTPACK_EX(_PRE_GA)
    ("valkey", 22),  # HASH_2
})
"""(dialect, type byte) of hashes that may carry field TTLs. Dialect: "redis" for RDB < 80, "valkey" for 80+."""

MODULE_TYPES: Final[frozenset[int]] = frozenset({6, 7})
"""MODULE_PRE_GA, MODULE_2: restorable only where the same module (and type) is loaded."""

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
"""(product, first release, type bytes added): what RESTORE reads, cumulative by release. Bytes 22+ mean different
things to Redis and Valkey: a byte >= 22 counts only in a payload of the target's own dialect (see readable_types)."""

COMMANDS_FROM: Final[dict[str, dict[str, Version]]] = {
    # measured: Redis 6.0.16 lacks it (`Unknown subcommand`); Redis 7.0.15 and every Valkey have it
    "XGROUP CREATECONSUMER": {"redis": (6, 2), "valkey": (7, 2), "keydb": (6, 2)},
    # measured: Redis 6.0.16 XSETID takes no options (`wrong number of arguments`); 7.0+ and Valkey take them
    "XSETID ENTRIESADDED": {"redis": (7, 0), "valkey": (7, 2)},
    "XGROUP CREATE ENTRIESREAD": {"redis": (7, 0), "valkey": (7, 2)},
    # measured: Redis 7.0.15, Valkey 8.0.1/8.1.1 lack HPEXPIRETIME/HPEXPIREAT; Redis 8.0.x and Valkey 9.1.2 have them
    "HPEXPIREAT": {"redis": (7, 4), "valkey": (9, 0)},
    "PEXPIRETIME": {"redis": (7, 0), "valkey": (7, 2)},
}
"""Command (or option) -> first release per product that has it. Unknown products get none of them."""

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


def readable_types(product: str, version: Version) -> frozenset[int]:
    out: frozenset[int] = frozenset()
    for prod, first, added in TYPE_BYTES_READ:
        if prod == product and version >= first:
            out |= added
    return out


def readable_opcodes(product: str, version: Version) -> frozenset[int]:
    out: frozenset[int] = frozenset()
    for prod, first, added in OPCODES_READ:
        if prod == product and version >= first:
            out |= added
    return out


def has_command(product: str, version: Version, command: str) -> bool:
    first = COMMANDS_FROM.get(command, {}).get(product)
    return first is not None and version >= first
