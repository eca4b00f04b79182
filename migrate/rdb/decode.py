"""Decode a serialized object (the bytes after the type byte of an RDB key record or DUMP payload) into a Value.

Every core type and encoding any Redis or Valkey release writes, plus module values (named, not decoded). The result
is the encoding-free model of migrate/rdb/values.py, so a value decoded from an RDB file, from a DUMP payload or read
from a live server compare equal when the data is the same.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from migrate.facts import types as T
from migrate.rdb import constants as C
from migrate.rdb.encodings import (
    FormatProblem,
    as_bytes,
    intset_items,
    listpack_items,
    read_ascii_double,
    read_length,
    read_ms_time,
    read_string,
    read_strings,
    ziplist_items,
    zipmap_pairs,
)
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import NeedMore, skip_module_opcodes
from migrate.rdb.values import (
    HashValue,
    ModuleValue,
    PendingEntry,
    StreamConsumer,
    StreamEntry,
    StreamGroup,
    StreamId,
    StreamValue,
    Value,
)

_STREAM_ID = struct.Struct(">QQ").unpack_from
_F64_LE = struct.Struct("<d").unpack_from
NO_FIELD_TTL_VALKEY = -1  # Valkey HASH_2: EXPIRY_NONE
NO_FIELD_TTL_REDIS = 0  # Redis HASH_METADATA / listpack-ex: 0 means no TTL
ENTRIES_READ_UNKNOWN = (1 << 64) - 1  # SCG_INVALID_ENTRIES_READ, which XINFO reports as -1


class Cursor:
    """A position in a payload; every read moves it, so a failure can name where it happened."""

    __slots__ = ("data", "pos", "rdb_version")

    def __init__(self, data: bytes, rdb_version: int | None = None) -> None:
        self.data = data
        self.pos = 0
        self.rdb_version = rdb_version

    def length(self) -> int:
        value, self.pos = read_length(self.data, self.pos)
        return value

    def string(self) -> bytes:
        value, self.pos = read_string(self.data, self.pos)
        return value

    def ms_time(self) -> int:
        value, self.pos = read_ms_time(self.data, self.pos)
        return value

    def ascii_double(self) -> float:
        value, self.pos = read_ascii_double(self.data, self.pos)
        return value

    def stream_id(self) -> StreamId:
        ms, seq = _STREAM_ID(self.data, self.pos)
        self.pos += 16
        return ms, seq

    def blob(self, parse: Callable[[bytes], list[bytes | int]]) -> list[bytes | int]:
        """Parse a string holding a listpack/ziplist/...; problems inside it are reported at payload offsets."""
        start = self.pos
        data = self.string()
        try:
            return parse(data)
        except FormatProblem as exc:
            raise FormatProblem(exc.message, start) from None
        except (IndexError, struct.error):
            raise FormatProblem("truncated encoded blob", start) from None


def decode_object(type_byte: int, payload: bytes, *, rdb_version: int | None = None, base_offset: int = 0) -> Value:
    """Decode `payload` (serialized object WITHOUT its type byte and WITHOUT any DUMP footer).

    `rdb_version` tells Redis's meaning of type bytes 22+ from Valkey's (12-79 Redis, 80+ Valkey); without it a
    type 22 payload is read as Valkey's HASH_2 when it parses as such, else as Redis's pre-GA hash metadata.
    Raises RdbFormatError naming the offset (`base_offset` + position in the payload) of the first bad byte.
    """
    decoder = _decoder_for(type_byte, rdb_version, base_offset)
    cursor = Cursor(payload, rdb_version)
    try:
        value = decoder(cursor)
    except FormatProblem as exc:
        raise RdbFormatError(f"{T.type_name(type_byte, rdb_version)} value: {exc.message}",
                             base_offset + exc.pos) from None
    except (IndexError, struct.error, NeedMore):
        raise RdbFormatError(f"{T.type_name(type_byte, rdb_version)} value is truncated",
                             base_offset + min(cursor.pos, len(payload))) from None
    except (ValueError, OverflowError) as exc:
        raise RdbFormatError(f"{T.type_name(type_byte, rdb_version)} value is malformed: {exc}",
                             base_offset + cursor.pos) from None
    if cursor.pos != len(payload):
        raise RdbFormatError(f"{len(payload) - cursor.pos} unexpected bytes after a "
                             f"{T.type_name(type_byte, rdb_version)} value", base_offset + cursor.pos)
    return value


def logical_type(type_byte: int, rdb_version: int | None = None) -> str:
    """"string", "list", "set", "zset", "hash", "stream" or "module" for an object type byte."""
    return T.logical_type(type_byte, rdb_version)


_DECODER_CACHE: dict[tuple[int, int | None], Callable[[Cursor], Value]] = {}


def _decoder_for(type_byte: int, rdb_version: int | None, base_offset: int) -> Callable[[Cursor], Value]:
    decoder = _DECODER_CACHE.get((type_byte, rdb_version))
    if decoder is None:
        decoder = _DECODER_CACHE[(type_byte, rdb_version)] = _find_decoder(type_byte, rdb_version, base_offset)
    return decoder


def _find_decoder(type_byte: int, rdb_version: int | None, base_offset: int) -> Callable[[Cursor], Value]:
    if type_byte == 22 and rdb_version is None:
        return _hash_22_guess
    candidates = ([T.type_info(type_byte, rdb_version)] if rdb_version is not None
                  else [T.type_info(type_byte, 80), T.type_info(type_byte, 12)])  # Valkey's meaning first
    known = [info for info in candidates if info is not None]
    if not known:
        raise RdbFormatError(f"unknown object type byte {type_byte}", base_offset)
    for info in known:
        decoder = _DECODERS.get((info.product, type_byte))
        if info.readable and decoder is not None:
            return decoder
    raise RdbFormatError(f"object type {known[0].name} ({type_byte}) cannot be decoded by this reader", base_offset,
                         hint="this format is not supported yet; migrate the key with a server-side tool")


# -- strings and lists ------------------------------------------------------------------------------------------


def _string(c: Cursor) -> Value:
    return c.string()


def _list_linked(c: Cursor) -> Value:
    n = c.length()
    items, c.pos = read_strings(c.data, c.pos, n)
    return items


def _list_ziplist(c: Cursor) -> Value:
    return [as_bytes(x) for x in c.blob(ziplist_items)]


def _list_quicklist(c: Cursor) -> Value:
    out: list[bytes] = []
    for _ in range(c.length()):
        out.extend(as_bytes(x) for x in c.blob(ziplist_items))
    return out


def _list_quicklist_2(c: Cursor) -> Value:
    out: list[bytes] = []
    for _ in range(c.length()):
        start = c.pos
        container = c.length()
        if container == C.QUICKLIST_PLAIN:
            out.append(c.string())
        elif container == C.QUICKLIST_PACKED:
            out.extend([x if type(x) is bytes else str(x).encode() for x in c.blob(listpack_items)])
        else:
            raise FormatProblem(f"unknown quicklist container {container}", start)
    return out


# -- sets -------------------------------------------------------------------------------------------------------


def _set_hashtable(c: Cursor) -> Value:
    n = c.length()
    items, c.pos = read_strings(c.data, c.pos, n)
    return set(items)


def _set_intset(c: Cursor) -> Value:
    start = c.pos
    data = c.string()
    try:
        return {str(x).encode() for x in intset_items(data)}
    except FormatProblem as exc:
        raise FormatProblem(exc.message, start) from None
    except struct.error:
        raise FormatProblem("truncated intset", start) from None


def _set_listpack(c: Cursor) -> Value:
    return {as_bytes(x) for x in c.blob(listpack_items)}


# -- sorted sets: always returned in rank order (score, then member bytes) ---------------------------------------


def _ranked(pairs: list[tuple[bytes, float]]) -> list[tuple[bytes, float]]:
    pairs.sort(key=lambda pair: (pair[1], pair[0]))
    return pairs


def _zset_ascii(c: Cursor) -> Value:
    return _ranked([(c.string(), c.ascii_double()) for _ in range(c.length())])


def _zset_binary(c: Cursor) -> Value:
    pairs = []
    b = c.data
    for _ in range(c.length()):
        member, p = read_string(b, c.pos)
        pairs.append((member, _F64_LE(b, p)[0]))
        c.pos = p + 8
    return _ranked(pairs)


def _zset_packed(c: Cursor, parse: Callable[[bytes], list[bytes | int]]) -> Value:
    start = c.pos
    items = c.blob(parse)
    if len(items) % 2:
        raise FormatProblem("sorted set blob with an odd number of elements", start)
    return _ranked([(as_bytes(items[i]), _score(items[i + 1], start)) for i in range(0, len(items), 2)])


def _score(item: bytes | int, pos: int) -> float:
    if isinstance(item, int):
        return float(item)
    try:
        return float(item)
    except ValueError:
        raise FormatProblem(f"invalid sorted set score {item[:32]!r}", pos) from None


# -- hashes -----------------------------------------------------------------------------------------------------


def _hash_hashtable(c: Cursor) -> Value:
    n = c.length()
    items, c.pos = read_strings(c.data, c.pos, 2 * n)
    return HashValue(dict(zip(items[0::2], items[1::2], strict=True)))


def _hash_pairs(c: Cursor, parse: Callable[[bytes], list[bytes | int]]) -> Value:
    start = c.pos
    items = c.blob(parse)
    if len(items) % 2:
        raise FormatProblem("hash blob with an odd number of elements", start)
    return HashValue({as_bytes(items[i]): as_bytes(items[i + 1]) for i in range(0, len(items), 2)})


def _hash_zipmap(c: Cursor) -> Value:
    start = c.pos
    data = c.string()
    try:
        return HashValue(dict(zipmap_pairs(data)))
    except FormatProblem as exc:
        raise FormatProblem(exc.message, start) from None
    except (IndexError, struct.error):
        raise FormatProblem("truncated zipmap", start) from None


def _hash_listpack_ex(c: Cursor, *, with_min_expire: bool) -> Value:
    """Redis 7.4+ listpack hash with field TTLs: (field, value, absolute expiry ms or 0) triplets."""
    if with_min_expire:
        c.ms_time()  # the smallest field expiry, kept for the server's own bookkeeping
    start = c.pos
    items = c.blob(listpack_items)
    if len(items) % 3:
        raise FormatProblem("listpack-ex hash with an incomplete (field, value, ttl) triplet", start)
    fields: dict[bytes, bytes] = {}
    expiry: dict[bytes, int] = {}
    for i in range(0, len(items), 3):
        field = as_bytes(items[i])
        fields[field] = as_bytes(items[i + 1])
        ttl = items[i + 2]
        if not isinstance(ttl, int):
            raise FormatProblem("listpack-ex hash field TTL is not an integer", start)
        if ttl != NO_FIELD_TTL_REDIS:
            expiry[field] = ttl
    return HashValue(fields, expiry)


def _hash_metadata(c: Cursor, *, relative: bool) -> Value:
    """Redis hashtable hash with field TTLs: (ttl, field, value); 24 stores ttl as offset+1 from a min expiry."""
    min_expire = c.ms_time() if relative else 0
    fields: dict[bytes, bytes] = {}
    expiry: dict[bytes, int] = {}
    for _ in range(c.length()):
        ttl = c.length()
        field = c.string()
        fields[field] = c.string()
        if ttl != NO_FIELD_TTL_REDIS:
            expiry[field] = ttl + min_expire - 1 if relative else ttl
    return HashValue(fields, expiry)


def _hash_2_valkey(c: Cursor) -> Value:
    """Valkey 9 HASH_2: (field, value, absolute expiry ms as int64 or -1) per field."""
    fields: dict[bytes, bytes] = {}
    expiry: dict[bytes, int] = {}
    for _ in range(c.length()):
        field = c.string()
        fields[field] = c.string()
        ttl = c.ms_time()
        if ttl != NO_FIELD_TTL_VALKEY:
            if ttl < 0:
                raise FormatProblem(f"invalid hash field expiry {ttl}", c.pos - 8)
            expiry[field] = ttl
    return HashValue(fields, expiry)


def _hash_22_guess(c: Cursor) -> Value:
    """Type 22 without a version: Valkey's HASH_2 if the payload parses exactly as one, else Redis's pre-GA form."""
    probe = Cursor(c.data, c.rdb_version)
    try:
        value = _hash_2_valkey(probe)
        if probe.pos == len(c.data):
            c.pos = probe.pos
            return value
    except (FormatProblem, IndexError, struct.error, ValueError, NeedMore):
        pass
    return _hash_metadata(c, relative=False)


# -- streams ----------------------------------------------------------------------------------------------------


def _stream(c: Cursor, version: int) -> Value:
    entries: list[StreamEntry] = []
    for _ in range(c.length()):
        start = c.pos
        node_key = c.string()
        if len(node_key) != 16:
            raise FormatProblem("stream node key is not a 128-bit stream ID", start)
        master = _STREAM_ID(node_key, 0)
        lp_start = c.pos
        items = c.blob(listpack_items)
        try:
            entries.extend(_stream_node_entries(items, master))
        except (IndexError, TypeError):
            raise FormatProblem("malformed stream listpack node", lp_start) from None
    length = c.length()
    last_id = (c.length(), c.length())
    first_id = max_deleted = entries_added = None
    if version >= 2:
        first_id = (c.length(), c.length())
        max_deleted = (c.length(), c.length())
        entries_added = c.length()
    groups = tuple(_stream_group(c, version) for _ in range(c.length()))
    return StreamValue(tuple(entries), length, last_id, first_id, max_deleted, entries_added, groups)


def _stream_node_entries(items: list[bytes | int], master: tuple[int, int]) -> list[StreamEntry]:
    """Entries of one stream listpack node: master entry (count, deleted, fields..., 0) then the entries."""
    count, deleted, num_master = _int(items[0]), _int(items[1]), _int(items[2])
    master_fields = [as_bytes(x) for x in items[3:3 + num_master]]
    p = 3 + num_master + 1  # skip the master entry's terminating 0
    out: list[StreamEntry] = []
    for _ in range(count + deleted):
        flags = _int(items[p])
        entry_id = (master[0] + _int(items[p + 1]), master[1] + _int(items[p + 2]))
        p += 3
        if flags & C.STREAM_ITEM_FLAG_SAMEFIELDS:
            values = [as_bytes(x) for x in items[p:p + num_master]]
            if len(values) != num_master:
                raise IndexError(p)
            pairs = tuple(zip(master_fields, values, strict=True))
            p += num_master
        else:
            n = _int(items[p])
            flat = [as_bytes(x) for x in items[p + 1:p + 1 + 2 * n]]
            if len(flat) != 2 * n:
                raise IndexError(p)
            pairs = tuple(zip(flat[0::2], flat[1::2], strict=True))
            p += 1 + 2 * n
        p += 1  # lp-count: the number of elements of this entry, for backward iteration
        if not flags & C.STREAM_ITEM_FLAG_DELETED:
            out.append(StreamEntry(entry_id, pairs))
    if p != len(items):
        raise IndexError(p)
    return out


def stream_inconsistency(type_byte: int, payload: bytes, rdb_version: int | None = None) -> str | None:
    """Why a stream's counters disagree with its entries (the stream's length against its live entries, a node's
    live/deleted header against its entries' flags), or None. Redis 5.0-rc1's XDEL left such streams (its length was
    not decremented); Valkey 9.1 refuses their payloads (facts.types.STREAM_COUNTS_CHECKED), Redis loads them."""
    if T.logical_type(type_byte, rdb_version) != "stream":
        return None
    c = Cursor(payload, rdb_version)
    try:
        live = 0
        for _ in range(c.length()):
            c.string()
            items = c.blob(listpack_items)
            count, deleted, fields = _int(items[0]), _int(items[1]), _int(items[2])
            flagged = _flagged(items, count + deleted, 3 + fields + 1, fields)
            if flagged != deleted:
                return (f"a node's header counts {count} live and {deleted} deleted entries, its entries "
                        f"{count + deleted - flagged} and {flagged}")
            live += count
        length = c.length()
    except (FormatProblem, IndexError, TypeError, struct.error, NeedMore):
        return None  # malformed: the decoder says how
    return None if length == live else f"its length is {length} but it holds {live} entries"


def _flagged(items: list[bytes | int], entries: int, p: int, master_fields: int) -> int:
    """How many of a node's entries carry the deleted flag."""
    flagged = 0
    for _ in range(entries):
        flags = _int(items[p])
        flagged += flags & C.STREAM_ITEM_FLAG_DELETED
        p += 3 + (master_fields if flags & C.STREAM_ITEM_FLAG_SAMEFIELDS else 1 + 2 * _int(items[p + 3])) + 1
    return flagged


def _int(item: bytes | int) -> int:
    if isinstance(item, int):
        return item
    raise TypeError("expected an integer element")


def _stream_group(c: Cursor, version: int) -> StreamGroup:
    name = c.string()
    last_id = (c.length(), c.length())
    entries_read: int | None = c.length() if version >= 2 else None
    if entries_read == ENTRIES_READ_UNKNOWN:
        entries_read = -1
    pel = []
    for _ in range(c.length()):
        pel.append((c.stream_id(), c.ms_time(), c.length()))
    consumers = []
    owner: dict[StreamId, bytes] = {}
    for _ in range(c.length()):
        cname = c.string()
        seen = c.ms_time()
        active = c.ms_time() if version >= 3 else None
        pending = tuple(c.stream_id() for _ in range(c.length()))
        for entry_id in pending:
            owner[entry_id] = cname
        consumers.append(StreamConsumer(cname, seen, active, pending))
    pending_entries = tuple(PendingEntry(eid, owner.get(eid, b""), when, count) for eid, when, count in pel)
    return StreamGroup(name, last_id, entries_read, pending_entries, tuple(consumers))


# -- modules ----------------------------------------------------------------------------------------------------


def _module_2(c: Cursor) -> Value:
    mid = c.length()
    c.pos = skip_module_opcodes(c.data, c.pos)
    if c.pos > len(c.data):
        raise IndexError(c.pos)
    return ModuleValue(C.module_type_name(mid), C.module_encoding_version(mid), mid, c.data)


_DECODERS: dict[tuple[str, int], Callable[[Cursor], Value]] = {
    ("any", 0): _string,
    ("any", 1): _list_linked,
    ("any", 2): _set_hashtable,
    ("any", 3): _zset_ascii,
    ("any", 4): _hash_hashtable,
    ("any", 5): _zset_binary,
    ("any", 7): _module_2,
    ("any", 9): _hash_zipmap,
    ("any", 10): _list_ziplist,
    ("any", 11): _set_intset,
    ("any", 12): lambda c: _zset_packed(c, ziplist_items),
    ("any", 13): lambda c: _hash_pairs(c, ziplist_items),
    ("any", 14): _list_quicklist,
    ("any", 15): lambda c: _stream(c, 1),
    ("any", 16): lambda c: _hash_pairs(c, listpack_items),
    ("any", 17): lambda c: _zset_packed(c, listpack_items),
    ("any", 18): _list_quicklist_2,
    ("any", 19): lambda c: _stream(c, 2),
    ("any", 20): _set_listpack,
    ("any", 21): lambda c: _stream(c, 3),
    ("redis", 22): lambda c: _hash_metadata(c, relative=False),
    ("redis", 23): lambda c: _hash_listpack_ex(c, with_min_expire=False),
    ("redis", 24): lambda c: _hash_metadata(c, relative=True),
    ("redis", 25): lambda c: _hash_listpack_ex(c, with_min_expire=True),
    ("valkey", 22): _hash_2_valkey,
}
