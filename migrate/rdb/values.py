"""Decoded values: the one Python model of a key's value shared by the RDB reader, the rewriter and verify.

Encodings (ziplist, listpack, intset, quicklist...) are gone at this level: two values are equal here exactly when the
servers would return the same data for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

StreamId = tuple[int, int]  # (milliseconds, sequence)


@dataclass(frozen=True)
class HashValue:
    fields: dict[bytes, bytes]
    # Absolute expiry in unix ms per field (Redis 7.4+ / Valkey 9.0+ hash field TTLs); empty when none.
    field_expiry_ms: dict[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamEntry:
    id: StreamId
    fields: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class PendingEntry:
    id: StreamId
    consumer: bytes
    delivery_time_ms: int
    delivery_count: int


@dataclass(frozen=True)
class StreamConsumer:
    name: bytes
    seen_time_ms: int
    active_time_ms: int | None  # RDB STREAM_LISTPACKS_3 and later; None when the format has no such field
    pending: tuple[StreamId, ...]


@dataclass(frozen=True)
class StreamGroup:
    name: bytes
    last_id: StreamId
    entries_read: int | None  # STREAM_LISTPACKS_2 and later
    pending: tuple[PendingEntry, ...]
    consumers: tuple[StreamConsumer, ...]


@dataclass(frozen=True)
class StreamValue:
    entries: tuple[StreamEntry, ...]
    length: int
    last_id: StreamId
    first_id: StreamId | None = None
    max_deleted_id: StreamId | None = None
    entries_added: int | None = None
    groups: tuple[StreamGroup, ...] = ()


@dataclass(frozen=True)
class ModuleValue:
    """A module-typed value: not decoded, named by its module type and encoding version."""

    type_name: str
    encoding_version: int
    module_id: int
    raw: bytes = field(repr=False, default=b"")


# string: bytes | list: list[bytes] | set: set[bytes] | zset: list[(member, score)] in rank order
Value = bytes | list[bytes] | set[bytes] | list[tuple[bytes, float]] | HashValue | StreamValue | ModuleValue
