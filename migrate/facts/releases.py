"""Releases: which RDB version each release writes, and which RDB versions it loads (docs/compatibility.md)."""

from __future__ import annotations

from typing import Final

Version = tuple[int, ...]

PRODUCTS: Final = ("redis", "valkey", "keydb", "dragonfly")

# (product, first release with this RDB version, RDB version written). Looked up by the highest release <= version.
RDB_VERSION_WRITTEN: Final[tuple[tuple[str, Version, int], ...]] = (
    ("redis", (2, 6), 6),
    ("redis", (3, 2), 7),
    ("redis", (4, 0), 8),
    ("redis", (5, 0), 9),
    ("redis", (7, 0), 10),
    ("redis", (7, 2), 11),
    ("redis", (7, 4), 12),
    ("redis", (8, 6), 13),  # UNCONFIRMED in the reference; treated as foreign by every Valkey release
    ("valkey", (7, 2), 11),
    ("valkey", (9, 0), 80),
    ("valkey", (9, 2), 81),
    ("keydb", (6, 0), 9),
    ("dragonfly", (0, 0), 9),  # Dragonfly emits RDB 9 for Redis compatibility (UNCONFIRMED)
)

# RDB versions 12..79 are "foreign" for Valkey: written by Redis after the fork.
VALKEY_FOREIGN_RANGE: Final = range(12, 80)

# Valkey accepts foreign payloads with `rdb-version-check relaxed` from this release (it still refuses type bytes
# 22-243 in them, see FOREIGN_TYPE_BYTES_REFUSED).
VALKEY_RELAXED_FROM: Final[Version] = (9, 0)
FOREIGN_TYPE_BYTES_REFUSED: Final = range(22, 244)

# Replicas that do not hold a stream consumer group's entries-read: XINFO GROUPS on the replica says -1 where its
# primary says the real count (measured 2026-12-01 with XADD + XGROUP CREATE + XREADGROUP on the primary, WAIT 1, then
# XINFO STREAM FULL on both: Redis 7.0.15 replica -1; Redis 8.0.2, Valkey 8.1.1 and 9.1.2 replicas equal to the
# primary; Valkey forked Redis 7.2.4, so 7.2 keeps it). Reading a shard on such a replica (--read-from replica) copies
# the -1: the target then shows no lag for that group.
REPLICA_LOSES_ENTRIES_READ: Final[dict[str, tuple[Version, Version]]] = {"redis": ((7, 0), (7, 1))}


def replica_loses_entries_read(product: str, version: Version) -> bool:
    span = REPLICA_LOSES_ENTRIES_READ.get(product)
    return span is not None and span[0] <= version[:2] <= span[1]


def parse_version(text: str) -> Version:
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or (0,)


def rdb_version_written(product: str, version: Version) -> int | None:
    best: int | None = None
    for prod, first, rdb in RDB_VERSION_WRITTEN:
        if prod == product and version >= first:
            best = rdb
    return best


def accepts_rdb_version(product: str, version: Version, rdb_version: int, relaxed: bool = False) -> bool:
    """Whether a server of this release loads an RDB file / DUMP payload of `rdb_version`.

    Measured here with RESTORE (2026-11-26): Valkey 8.1 strict takes <= 11, relaxed also 80 and 81 but never 12-79;
    Valkey 9.1 strict takes <= 11 and 80, relaxed every version 9-81 (foreign payloads then still refuse type bytes
    22 and above). Redis takes its own version and older.
    """
    own = rdb_version_written(product, version)
    if own is None:
        return False
    if product != "valkey":
        return rdb_version <= own
    if rdb_version in VALKEY_FOREIGN_RANGE:
        return relaxed and version >= VALKEY_RELAXED_FROM
    return rdb_version <= own or relaxed


def parse_release(spec: str) -> tuple[str, Version, str | None]:
    """'valkey:8.1', 'valkey-9.1.2' or 'valkey:9.1:relaxed' -> (product, version, rdb-version-check or None).

    ValueError when the product is unknown or the version is missing.
    """
    parts = spec.strip().replace("-", ":").replace(" ", ":").split(":")
    product, version_text = parts[0].lower(), parts[1] if len(parts) > 1 else ""
    version = parse_version(version_text)
    if not version_text or product not in PRODUCTS or rdb_version_written(product, version) is None:
        raise ValueError(f"not a release: {spec!r}")
    check = parts[2] if len(parts) > 2 else ("strict" if product == "valkey" and version >= (8, 1) else None)
    return product, version, check
