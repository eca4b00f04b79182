"""RDB encoders: the inverse of migrate/rdb/encodings.py and decode.py, for the transcoder (migrate/rdb/transcode.py).

Each logical type has one encoder that writes one well-defined form, chosen by the caller from what the target reads:
strings (type 0), lists (1, LIST), sets (2, SET), sorted sets (5, ZSET_2: binary doubles, exact), hashes (4, HASH),
hashes with field TTLs (Valkey 22 HASH_2, Redis 24 HASH_METADATA) and streams (15, 19 or 21 with their listpack
nodes, consumer groups, PELs and consumers). The plain forms are read by every release since Redis 4.0; the server
re-encodes them into its compact forms itself when it loads them.

Format facts (src/rdb.c and src/t_stream.c of redis/redis 7.2 and 8.0, src/rdb.c of valkey-io/valkey unstable,
src/listpack.c): lengths are 6/14-bit big-endian in the first bytes, 32/64-bit big-endian after a marker byte; times
in milliseconds are little-endian int64; stream IDs in PELs and node keys are 128-bit big-endian; listpack entries are
`<encoding+data><backlen>`, the header `<total bytes u32 LE><element count u16 LE>`, the terminator 0xFF.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from migrate.facts import types as T
from migrate.rdb import constants as C
from migrate.rdb.values import HashValue, StreamEntry, StreamValue

_U32_BE = struct.Struct(">I").pack
_U64_BE = struct.Struct(">Q").pack
_I64_LE = struct.Struct("<q").pack
_F64_LE = struct.Struct("<d").pack
_ID_BE = struct.Struct(">QQ").pack
_LP_HEADER = struct.Struct("<IH").pack

U64_MAX: Final = (1 << 64) - 1
ENTRIES_READ_UNKNOWN: Final = U64_MAX  # SCG_INVALID_ENTRIES_READ: what a loader assumes without the counter
NO_FIELD_TTL_VALKEY: Final = -1  # HASH_2: EXPIRY_NONE
# Redis's own stream node limits (stream-node-max-entries / -max-bytes defaults): the nodes we write look like the
# ones a server builds with XADD. The loader does not check them.
STREAM_NODE_MAX_ENTRIES: Final = 100
STREAM_NODE_MAX_BYTES: Final = 4096
# Stream forms: the type byte per version of the stream format (v2 adds first-id, max-deleted-id, entries-added and
# group entries-read; v3 adds the consumer active-time).
STREAM_TYPES: Final = {1: 15, 2: 19, 3: 21}


# -- primitives ---------------------------------------------------------------------------------------------------

def length(n: int) -> bytes:
    """rdbSaveLen: 6-bit, 14-bit, 32-bit or 64-bit length."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + _U32_BE(n)
    if n <= U64_MAX:
        return b"\x81" + _U64_BE(n)
    raise ValueError(f"length {n} does not fit in 64 bits")


def canonical_int(value: bytes) -> int | None:
    """The integer a string spells in canonical decimal (what string2ll accepts: no sign but '-', no leading zero,
    no '-0', int64 range), else None. Only such strings may be stored integer-encoded: they read back identically."""
    n = len(value)
    if not 0 < n <= 20:
        return None
    digits = value[1:] if value[0] == 0x2D else value
    if not digits or not digits.isdigit() or (digits[0] == 0x30 and (len(digits) > 1 or digits is not value)):
        return None
    number = int(value)
    return number if -(1 << 63) <= number < (1 << 63) else None


_SHORT_LENGTH: Final = tuple(bytes((n,)) for n in range(64))


def string(value: bytes) -> bytes:
    """An RDB string: integer-encoded when it is a canonical int32 of up to 11 characters (rdbTryIntegerEncoding),
    else raw with its length (never LZF-compressed: always valid, and the bytes here are few)."""
    n = len(value)
    if 0 < n <= 11 and (0x2F < value[0] < 0x3A or value[0] == 0x2D):  # starts like a number
        number = canonical_int(value)
        if number is not None:
            if -0x80 <= number <= 0x7F:
                return bytes((0xC0, number & 0xFF))
            if -0x8000 <= number <= 0x7FFF:
                return b"\xc1" + (number & 0xFFFF).to_bytes(2, "little")
            if -0x80000000 <= number <= 0x7FFFFFFF:
                return b"\xc2" + (number & 0xFFFFFFFF).to_bytes(4, "little")
    if n < 0x40:
        return _SHORT_LENGTH[n] + value
    return length(n) + value


def ms_time(ms: int) -> bytes:
    """rdbSaveMillisecondTime: signed 64-bit little-endian."""
    return _I64_LE(ms)


def binary_double(value: float) -> bytes:
    return _F64_LE(value)


def raw_stream_id(sid: tuple[int, int]) -> bytes:
    """A stream ID as the 16 big-endian bytes of node keys and PELs."""
    return _ID_BE(sid[0], sid[1])


# -- listpack -----------------------------------------------------------------------------------------------------

def _backlen(n: int) -> bytes:
    """lpEncodeBacklen: the entry length, 7 bits per byte, most significant group first and without bit 7."""
    if n < 128:
        return bytes((n,))
    if n < 16383:
        return bytes((n >> 7, (n & 127) | 128))
    if n < 2097151:
        return bytes((n >> 14, ((n >> 7) & 127) | 128, (n & 127) | 128))
    if n < 268435455:
        return bytes((n >> 21, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128, (n & 127) | 128))
    return bytes((n >> 28, ((n >> 21) & 127) | 128, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128,
                  (n & 127) | 128))


def _lp_int(v: int) -> bytes:
    if 0 <= v < 128:
        return bytes((v, 1))
    if -4096 <= v < 4096:
        u = v & 0x1FFF
        return bytes((0xC0 | (u >> 8), u & 0xFF, 2))
    if -(1 << 15) <= v < (1 << 15):
        return b"\xf1" + (v & 0xFFFF).to_bytes(2, "little") + b"\x03"
    if -(1 << 23) <= v < (1 << 23):
        return b"\xf2" + (v & 0xFFFFFF).to_bytes(3, "little") + b"\x04"
    if -(1 << 31) <= v < (1 << 31):
        return b"\xf3" + (v & 0xFFFFFFFF).to_bytes(4, "little") + b"\x05"
    if -(1 << 63) <= v < (1 << 63):
        return b"\xf4" + (v & U64_MAX).to_bytes(8, "little") + b"\x09"
    raise ValueError(f"listpack integer {v} does not fit in 64 bits")


def _lp_str(s: bytes) -> bytes:
    n = len(s)
    if n < 64:
        return bytes((0x80 | n,)) + s + _backlen(n + 1)
    if n < 4096:
        return bytes((0xE0 | (n >> 8), n & 0xFF)) + s + _backlen(n + 2)
    return b"\xf0" + n.to_bytes(4, "little") + s + _backlen(n + 5)


def listpack_entry(item: bytes | int) -> bytes:
    """One listpack entry with its backlen. Strings that spell a canonical int64 are stored as integers, as
    lpAppend does; they read back as the same text."""
    if isinstance(item, int):
        return _lp_int(item)
    number = canonical_int(item) if len(item) <= 20 else None
    return _lp_int(number) if number is not None else _lp_str(item)


def listpack(entries: Sequence[bytes]) -> bytes:
    """A listpack of already encoded entries (listpack_entry); the header counts 65535 and up as "unknown"."""
    body = b"".join(entries)
    total = 6 + len(body) + 1
    if total > 0xFFFFFFFF:
        raise ValueError("listpack larger than 4 GiB")
    return _LP_HEADER(total, min(len(entries), 65535)) + body + b"\xff"


# -- values: (type byte, serialized object) -------------------------------------------------------------------------

def encode_string(value: bytes) -> tuple[int, bytes]:
    return 0, string(value)


def encode_list(items: Sequence[bytes]) -> tuple[int, bytes]:
    return 1, b"".join([length(len(items)), *map(string, items)])


def encode_set(members: Iterable[bytes]) -> tuple[int, bytes]:
    items = list(members)
    return 2, b"".join([length(len(items)), *map(string, items)])


def encode_zset(pairs: Sequence[tuple[bytes, float]]) -> tuple[int, bytes]:
    """ZSET_2: member, then the score as a binary double (exact; every release since Redis 4.0 reads it)."""
    return 5, length(len(pairs)) + b"".join(string(m) + _F64_LE(s) for m, s in pairs)


def encode_hash(fields: dict[bytes, bytes]) -> tuple[int, bytes]:
    parts = [length(len(fields))]
    for name, value in fields.items():
        parts += (string(name), string(value))
    return 4, b"".join(parts)


def encode_hash_2_valkey(value: HashValue) -> tuple[int, bytes]:
    """Valkey 9 HASH_2 (22): per field its name, value and absolute expiry in ms (int64 LE, -1: none)."""
    ttl = value.field_expiry_ms
    parts = [length(len(value.fields))]
    for name, field_value in value.fields.items():
        parts.append(string(name) + string(field_value) + _I64_LE(ttl.get(name, NO_FIELD_TTL_VALKEY)))
    return 22, b"".join(parts)


def encode_hash_metadata_redis(value: HashValue) -> tuple[int, bytes]:
    """Redis 7.4+ HASH_METADATA (24): the smallest field expiry (ms), then per field its TTL as a length (0: none,
    else expiry - smallest + 1), name and value. A hash without field TTLs is written as a plain HASH (4), as Redis
    itself does."""
    ttl = {name: at for name, at in value.field_expiry_ms.items() if name in value.fields}
    if not ttl:
        return encode_hash(value.fields)
    smallest = min(ttl.values())
    parts = [_I64_LE(smallest), length(len(value.fields))]
    for name, field_value in value.fields.items():
        at = ttl.get(name)
        parts.append(length(0 if at is None else at - smallest + 1) + string(name) + string(field_value))
    return 24, b"".join(parts)


# -- streams --------------------------------------------------------------------------------------------------------

def encode_stream(value: StreamValue, version: int) -> tuple[int, bytes]:
    """STREAM_LISTPACKS (1: 15, 2: 19, 3: 21) from a decoded stream. Metadata the chosen form lacks is dropped;
    metadata the value lacks is filled as a loader of an older form would (first id from the entries, no deleted
    id, entries-added = length, entries-read unknown, active-time = seen-time)."""
    if version not in STREAM_TYPES:
        raise ValueError(f"stream format version {version} (1, 2 or 3)")
    nodes = list(stream_nodes(value.entries))
    parts = [length(len(nodes))]
    for master, node in nodes:
        parts.append(string(raw_stream_id(master)) + string(node))
    parts.append(length(value.length) + _id_lengths(value.last_id))
    if version >= 2:
        first = value.first_id if value.first_id is not None else (value.entries[0].id if value.entries else (0, 0))
        added = value.entries_added if value.entries_added is not None else value.length
        parts.append(_id_lengths(first) + _id_lengths(value.max_deleted_id or (0, 0)) + length(added))
    parts.append(length(len(value.groups)))
    for group in value.groups:
        parts.append(string(group.name) + _id_lengths(group.last_id))
        if version >= 2:
            read = group.entries_read if group.entries_read is not None else ENTRIES_READ_UNKNOWN
            parts.append(length(read & U64_MAX))
        pending = sorted(group.pending, key=lambda p: p.id)
        parts.append(length(len(pending)))
        parts.extend(raw_stream_id(p.id) + _I64_LE(p.delivery_time_ms) + length(p.delivery_count) for p in pending)
        parts.append(length(len(group.consumers)))
        for consumer in group.consumers:
            parts.append(string(consumer.name) + _I64_LE(consumer.seen_time_ms))
            if version >= 3:
                active = consumer.active_time_ms
                parts.append(_I64_LE(consumer.seen_time_ms if active is None else active))
            ids = sorted(consumer.pending)
            parts.append(length(len(ids)) + b"".join(raw_stream_id(i) for i in ids))
    return STREAM_TYPES[version], b"".join(parts)


def _id_lengths(sid: tuple[int, int]) -> bytes:
    return length(sid[0]) + length(sid[1])


def stream_nodes(entries: Sequence[StreamEntry]) -> Iterator[tuple[tuple[int, int], bytes]]:
    """(master ID, listpack) per node, filled like streamAppendItem fills them: the node's first entry gives the
    master fields; a new node starts at STREAM_NODE_MAX_ENTRIES entries or when the next entry would take the node
    to STREAM_NODE_MAX_BYTES."""
    i = 0
    while i < len(entries):
        master = entries[i].id
        master_fields = tuple(f for f, _ in entries[i].fields)
        body: list[bytes] = []
        size = 0
        count = 0
        while i < len(entries) and count < STREAM_NODE_MAX_ENTRIES:
            entry = entries[i]
            if count and size + sum(len(f) + len(v) for f, v in entry.fields) >= STREAM_NODE_MAX_BYTES:
                break
            encoded = _stream_entry(entry, master, master_fields)
            body.extend(encoded)
            size += sum(len(e) for e in encoded)
            count += 1
            i += 1
        head = [_lp_int(count), _lp_int(0), _lp_int(len(master_fields))]
        head += [listpack_entry(f) for f in master_fields]
        head.append(_lp_int(0))  # the master entry's terminator
        yield master, listpack(head + body)


def _stream_entry(entry: StreamEntry, master: tuple[int, int], master_fields: tuple[bytes, ...]) -> list[bytes]:
    """flags, ms-diff, seq-diff, [num-fields, field, value... | value...], lp-count (t_stream.c)."""
    fields = entry.fields
    same = len(fields) == len(master_fields) and all(f == m for (f, _), m in zip(fields, master_fields, strict=True))
    out = [_lp_int(C.STREAM_ITEM_FLAG_SAMEFIELDS if same else 0),
           _lp_int(_signed64(entry.id[0] - master[0])), _lp_int(_signed64(entry.id[1] - master[1]))]
    if same:
        out += [listpack_entry(v) for _, v in fields]
        out.append(_lp_int(len(fields) + 3))
    else:
        out.append(_lp_int(len(fields)))
        for f, v in fields:
            out += [listpack_entry(f), listpack_entry(v)]
        out.append(_lp_int(2 * len(fields) + 4))
    return out


def _signed64(diff: int) -> int:
    """The ID difference as the int64 the server stores (C unsigned subtraction, read back as signed)."""
    diff &= U64_MAX
    return diff - (1 << 64) if diff >= 1 << 63 else diff


# -- records --------------------------------------------------------------------------------------------------------

def key_record(type_byte: int, key: bytes, body: bytes, *, expire_ms: int | None = None, idle: int | None = None,
               freq: int | None = None) -> bytes:
    """A key record as rdbSaveKeyValuePair writes it: [EXPIRETIME_MS][IDLE | FREQ] type, key, value."""
    head = b""
    if expire_ms is not None:
        head = bytes((C.OP_EXPIRETIME_MS,)) + _I64_LE(expire_ms)
    if idle is not None:
        head += bytes((C.OP_IDLE,)) + length(idle)
    if freq is not None:
        head += bytes((C.OP_FREQ, freq & 0xFF))
    return head + bytes((type_byte,)) + string(key) + body


def header(rdb_version: int) -> bytes:
    """The 9-byte magic: REDIS%04d below version 80, VALKEY%03d from 80 on (rdbUseValkeyMagic)."""
    if rdb_version >= T.VALKEY_FIRST_OWN_VERSION:
        return b"VALKEY%03d" % rdb_version
    return b"REDIS%04d" % rdb_version
