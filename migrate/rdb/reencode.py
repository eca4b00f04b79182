"""Re-encode a decoded value in a form a target release reads, saying what the target cannot hold of it.

One rule per logical type (the forms are in migrate/rdb/writer.py):
- string, list, set, sorted set, hash without field TTLs: the plain forms 0, 1, 2, 5, 4, read by every release of
  the matrix (the loader converts them to its compact encodings itself);
- hash with field TTLs: the target's own field-TTL form (Valkey 9+: HASH_2, 22; Redis 7.4+: HASH_METADATA, 24);
  on a target without field TTLs a plain hash, the TTLs named as lost;
- stream: the newest stream form the target reads (21, 19 or 15), so that as much metadata as it can hold is kept;
  metadata the form lacks and the target cannot derive is named as lost.
Hash fields whose TTL has passed are dropped, as a server drops them: a hash left without fields is reported empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

from migrate.rdb import writer
from migrate.rdb.encodings import FormatProblem, _backlen_size, _listpack_entry, read_string
from migrate.rdb.target import TargetFormat
from migrate.rdb.values import HashValue, StreamValue, Value

LOST_FIELD_TTLS = "field TTLs"
LOST_ACTIVE_TIME = "consumer active-time"
LOST_STREAM_COUNTERS = "stream entries-added and max-deleted-id"
LOST_ENTRIES_READ = "consumer group entries-read"


@dataclass(frozen=True)
class Reencoded:
    type_byte: int  # meaningless when `empty` is set
    body: bytes
    losses: tuple[str, ...] = ()  # what the target cannot hold of this value (a lossy conversion)
    fields_expired: int = 0  # hash fields dropped because their TTL had passed
    empty: str = ""  # why nothing is left to write ("empty", "every field expired"), else ""


class UnsupportedLogicalType(ValueError):
    """A value of a logical type with no re-encoder (module values)."""


def reencode(value: Value, logical: str, target: TargetFormat, now_ms: int) -> Reencoded:
    """The value in the form `target` reads. `logical` is the logical type of the source type byte (decoded lists and
    sorted sets are both Python lists). Raises UnsupportedLogicalType for module values."""
    if logical == "string" and isinstance(value, bytes):
        return Reencoded(*writer.encode_string(value))
    if logical == "list" and isinstance(value, list):
        return _collection(value, writer.encode_list)
    if logical == "set" and isinstance(value, set):
        return _collection(value, writer.encode_set)
    if logical == "zset" and isinstance(value, list):
        return _collection(value, writer.encode_zset)
    if logical == "hash" and isinstance(value, HashValue):
        return _hash(value, target, now_ms)
    if logical == "stream" and isinstance(value, StreamValue):
        return _stream(value, target)
    raise UnsupportedLogicalType(f"no re-encoder for a {logical} value ({type(value).__name__})")


def _collection(value: Sized, encode: Callable[[Any], tuple[int, bytes]]) -> Reencoded:
    if not len(value):
        return Reencoded(0, b"", empty="empty")
    return Reencoded(*encode(value))


def _hash(value: HashValue, target: TargetFormat, now_ms: int) -> Reencoded:
    live, expired = without_expired_fields(value, now_ms)
    if not live.fields:
        return Reencoded(0, b"", fields_expired=expired, empty="every field expired" if expired else "empty")
    if not live.field_expiry_ms:
        return Reencoded(*writer.encode_hash(live.fields), fields_expired=expired)
    if target.field_ttls and target.product == "valkey" and target.reads_type(22, "valkey"):
        return Reencoded(*writer.encode_hash_2_valkey(live), fields_expired=expired)
    if target.field_ttls and target.product == "redis" and target.reads_type(24, "redis"):
        return Reencoded(*writer.encode_hash_metadata_redis(live), fields_expired=expired)
    return Reencoded(*writer.encode_hash(live.fields), losses=(LOST_FIELD_TTLS,), fields_expired=expired)


def listpack_ex_as_listpack(type_byte: int, payload: bytes, target: TargetFormat, now_ms: int) -> Reencoded | None:
    """The fast path of the commonest conversion: a small Redis hash with field TTLs (23, 25: a listpack of field,
    value, TTL triplets) into a target without field TTLs that reads HASH_LISTPACK (16: Valkey 8, Redis 7.0). The
    field and value entries are copied as they are (no decoding); TTL entries are read to drop expired fields and to
    tell whether TTLs are lost. None: not applicable, or not a well-formed listpack (the caller decodes instead)."""
    if target.field_ttls or not target.reads_type(16, "redis") or type_byte not in (23, 25):
        return None
    try:
        blob, end = read_string(payload, 8 if type_byte == 25 else 0)
        kept, ttls, expired = _triplets(blob, now_ms)
    except (FormatProblem, IndexError, KeyError, ValueError):
        return None
    if end != len(payload):
        return None
    if not kept:
        return Reencoded(0, b"", fields_expired=expired, empty="every field expired" if expired else "empty")
    body = b"".join(kept)
    count = 2 * len(kept)
    header = (7 + len(body)).to_bytes(4, "little") + min(count, 65535).to_bytes(2, "little")
    return Reencoded(16, writer.string(header + body + b"\xff"), losses=(LOST_FIELD_TTLS,) if ttls else (),
                     fields_expired=expired)


def _triplets(blob: bytes, now_ms: int) -> tuple[list[bytes], int, int]:
    """(the field and value entries of each live field, live TTLs, expired fields) of a (field, value, TTL)
    listpack."""
    if len(blob) < 7 or blob[-1] != 0xFF or int.from_bytes(blob[:4], "little") != len(blob):
        raise ValueError("not a listpack")
    kept: list[bytes] = []
    ttls = expired = 0
    p, end = 6, len(blob) - 1
    while p < end:
        field_end = _entry_end(blob, p)
        value_end = _entry_end(blob, field_end)
        c = blob[value_end]
        if c < 0x80:
            ttl, ttl_end = c, value_end + 2
        else:
            ttl_value, data_end = _listpack_entry(blob, value_end, c)
            if not isinstance(ttl_value, int):
                raise ValueError("a field TTL that is not an integer")
            ttl, ttl_end = ttl_value, data_end + _backlen_size(data_end - value_end)
        if ttl and ttl < now_ms:
            expired += 1
        else:
            ttls += ttl != 0
            kept.append(blob[p:value_end])  # the field and value entries as they are
        p = ttl_end
    if p != end:
        raise ValueError("listpack entries overrun it")
    return kept, ttls, expired


_INT_ENTRY_SIZE = {0xF1: 4, 0xF2: 5, 0xF3: 6, 0xF4: 10}  # 16/24/32/64-bit integers: encoding, data, one backlen


def _entry_end(blob: bytes, p: int) -> int:
    """Where the listpack entry at p ends, its back-length included (listpack.c encodings; nothing is copied)."""
    c = blob[p]
    if c < 0x80:  # 7-bit unsigned integer
        return p + 2
    if c < 0xC0:  # string of up to 63 bytes
        return p + 2 + (c & 0x3F)
    if c < 0xE0:  # 13-bit signed integer
        return p + 3
    if c < 0xF0:  # string of up to 4095 bytes
        size = 2 + (((c & 0x0F) << 8) | blob[p + 1])
    elif c == 0xF0:
        size = 5 + int.from_bytes(blob[p + 1:p + 5], "little")
    else:
        return p + _INT_ENTRY_SIZE[c]  # KeyError: not an encoding
    return p + size + _backlen_size(size)


def without_expired_fields(value: HashValue, now_ms: int) -> tuple[HashValue, int]:
    """The hash without the fields whose expiry is before now (the loader's `expire < now`), and how many went.
    Expiries of fields that are not in the hash are dropped too."""
    ttl = value.field_expiry_ms
    if not ttl:
        return value, 0
    gone = {name for name, at in ttl.items() if at < now_ms and name in value.fields}
    if not gone and all(name in value.fields for name in ttl):
        return value, 0
    fields = {k: v for k, v in value.fields.items() if k not in gone}
    return HashValue(fields, {k: at for k, at in ttl.items() if k in fields}), len(gone)


def stream_version_for(target: TargetFormat) -> int | None:
    """The newest stream format the target reads (3: type 21, 2: 19, 1: 15), None when it reads none."""
    for version in (3, 2, 1):
        if target.reads_type(writer.STREAM_TYPES[version], target.product):
            return version
    return None


def _stream(value: StreamValue, target: TargetFormat) -> Reencoded:
    version = stream_version_for(target)
    if version is None:
        raise UnsupportedLogicalType(f"{target.label} reads no stream form")
    type_byte, body = writer.encode_stream(value, version)
    return Reencoded(type_byte, body, losses=stream_losses(value, version))


def stream_losses(value: StreamValue, version: int) -> tuple[str, ...]:
    """What stream form `version` cannot carry of this value and a loader cannot derive: a consumer's active-time
    (a v1/v2 loader takes the seen-time), entries-added and max-deleted-id (a v1 loader takes the length and 0-0),
    a group's entries-read when known (a v1 loader estimates it; the decoder gives -1 for "unknown"). First-entry
    IDs are derived from the entries by every loader."""
    losses = []
    consumers = [c for g in value.groups for c in g.consumers]
    if version < 3 and any(c.active_time_ms not in (None, c.seen_time_ms) for c in consumers):
        losses.append(LOST_ACTIVE_TIME)
    if version < 2:
        added = value.entries_added not in (None, value.length)
        if added or value.max_deleted_id not in (None, (0, 0)):
            losses.append(LOST_STREAM_COUNTERS)
        if any(g.entries_read not in (None, -1, writer.ENTRIES_READ_UNKNOWN) for g in value.groups):
            losses.append(LOST_ENTRIES_READ)
    return tuple(losses)
