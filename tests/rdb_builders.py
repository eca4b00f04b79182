"""Tiny encoders for RDB structures no server of the matrix writes any more (tests only).

They build serialized objects the way old releases did (linked lists, zipmaps, ziplists, ASCII-double sorted sets) or
the Redis 7.4 release candidates did (hash metadata types 22/23); the tests RESTORE them into real servers, which
validate them, and compare what the servers then return with what decode_object makes of the same bytes.
"""

from __future__ import annotations

import struct

import anycrc
import lzf

CRC64 = anycrc.Model("CRC64-REDIS")


def dump_payload(type_byte: int, body: bytes, rdb_version: int) -> bytes:
    data = bytes([type_byte]) + body + struct.pack("<H", rdb_version)
    return data + struct.pack("<Q", CRC64.calc(data))


def length(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 2**32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def string(value: bytes) -> bytes:
    return length(len(value)) + value


def int_string(n: int) -> bytes:
    """An integer-encoded RDB string (INT8/16/32)."""
    for enc, fmt in ((0, "<b"), (1, "<h"), (2, "<i")):
        try:
            return bytes([0xC0 | enc]) + struct.pack(fmt, n)
        except struct.error:
            continue
    raise ValueError(n)


def lzf_string(value: bytes) -> bytes:
    packed = lzf.compress(value)
    assert packed is not None, "incompressible"
    return b"\xc3" + length(len(packed)) + length(len(value)) + packed


def ascii_double(value: float) -> bytes:
    if value != value:
        return b"\xfd"
    if value in (float("inf"), float("-inf")):
        return b"\xfe" if value > 0 else b"\xff"
    text = repr(value).encode()
    return bytes([len(text)]) + text


# -- ziplist ----------------------------------------------------------------------------------------------------


def _ziplist_entry_body(item: bytes | int) -> bytes:
    if isinstance(item, int):
        if 0 <= item <= 12:
            return bytes([0xF1 + item])
        for code, fmt in ((0xFE, "<b"), (0xC0, "<h")):
            try:
                return bytes([code]) + struct.pack(fmt, item)
            except struct.error:
                pass
        if -(2**23) <= item < 2**23:
            return b"\xf0" + (item & 0xFFFFFF).to_bytes(3, "little")
        for code, fmt in ((0xD0, "<i"), (0xE0, "<q")):
            try:
                return bytes([code]) + struct.pack(fmt, item)
            except struct.error:
                pass
        raise ValueError(item)
    n = len(item)
    if n < 64:
        return bytes([n]) + item
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF]) + item
    return b"\x80" + struct.pack(">I", n) + item


def ziplist(items: list[bytes | int]) -> bytes:
    entries = []
    prev = 0
    for item in items:
        prevlen = bytes([prev]) if prev < 254 else b"\xfe" + struct.pack("<I", prev)
        entry = prevlen + _ziplist_entry_body(item)
        entries.append(entry)
        prev = len(entry)
    body = b"".join(entries)
    tail = 10 + len(body) - (len(entries[-1]) if entries else 0)
    total = 10 + len(body) + 1
    return struct.pack("<IIH", total, tail, min(len(items), 65535)) + body + b"\xff"


# -- zipmap -----------------------------------------------------------------------------------------------------


def _zipmap_len(n: int) -> bytes:
    return bytes([n]) if n < 254 else b"\xfe" + struct.pack("<I", n)


def zipmap(pairs: list[tuple[bytes, bytes]], free: int = 0) -> bytes:
    out = bytearray([min(len(pairs), 254)])
    for field, value in pairs:
        out += _zipmap_len(len(field)) + field + _zipmap_len(len(value)) + bytes([free]) + value + b"\x00" * free
    return bytes(out + b"\xff")


# -- listpack ---------------------------------------------------------------------------------------------------


def _backlen(n: int) -> bytes:
    """lpEncodeBacklen: 7 bits per byte, most significant first; every byte but the first has bit 7 set."""
    size = 1 if n < 128 else 2 if n < 16383 else 3 if n < 2097151 else 4 if n < 268435455 else 5
    groups = [(n >> (7 * i)) & 0x7F for i in range(size)][::-1]
    return bytes([groups[0]] + [g | 0x80 for g in groups[1:]])


def _listpack_entry(item: bytes | int) -> bytes:
    if isinstance(item, int):
        if 0 <= item < 128:
            body = bytes([item])
        elif -4096 <= item < 4096:
            v = item & 0x1FFF
            body = bytes([0xC0 | (v >> 8), v & 0xFF])
        elif -(2**15) <= item < 2**15:
            body = b"\xf1" + struct.pack("<h", item)
        elif -(2**23) <= item < 2**23:
            body = b"\xf2" + (item & 0xFFFFFF).to_bytes(3, "little")
        elif -(2**31) <= item < 2**31:
            body = b"\xf3" + struct.pack("<i", item)
        else:
            body = b"\xf4" + struct.pack("<q", item)
    else:
        n = len(item)
        if n < 64:
            body = bytes([0x80 | n]) + item
        elif n < 4096:
            body = bytes([0xE0 | (n >> 8), n & 0xFF]) + item
        else:
            body = b"\xf0" + struct.pack("<I", n) + item
    return body + _backlen(len(body))


def listpack(items: list[bytes | int]) -> bytes:
    body = b"".join(_listpack_entry(i) for i in items)
    return struct.pack("<IH", 6 + len(body) + 1, min(len(items), 65535)) + body + b"\xff"


# -- whole RDB files ----------------------------------------------------------------------------------------------

# (key, type byte, serialized value, absolute expiry in ms or None[, opcodes written before the type byte: IDLE, FREQ])
RdbKey = tuple[bytes, int, bytes, int | None] | tuple[bytes, int, bytes, int | None, bytes]


def rdb_file(version: int, dbs: dict[int, list[RdbKey]], *, aux: dict[bytes, bytes] | None = None,
             magic: bytes = b"REDIS") -> bytes:
    """A whole RDB file as a server of that format writes it: magic and version, aux fields (RDB 7+), per database a
    SELECTDB, then its keys (expiries as EXPIRETIME_MS, or EXPIRETIME in seconds before RDB 3), EOF and the CRC64
    (RDB 5+; older files end at EOF)."""
    head = magic + (b"%04d" % version if magic == b"REDIS" else b"%03d" % version)
    out = bytearray(head)
    if version >= 7:
        for name, value in (aux if aux is not None else {b"redis-ver": b"255.255.255"}).items():
            out += b"\xfa" + string(name) + string(value)
    for db, keys in sorted(dbs.items()):
        out += b"\xfe" + length(db)
        for spec in keys:
            key, type_byte, value, expire_ms = spec[:4]
            if expire_ms is not None:
                out += (b"\xfc" + struct.pack("<q", expire_ms) if version >= 3 else
                        b"\xfd" + struct.pack("<i", expire_ms // 1000))
            out += (spec[4] if len(spec) > 4 else b"") + bytes([type_byte]) + string(key) + value
    out += b"\xff"
    if version >= 5:
        out += struct.pack("<Q", CRC64.calc(bytes(out)))
    return bytes(out)


# -- streams (type 15, STREAM_LISTPACKS: Redis 5.0 to 6.2) ---------------------------------------------------------

STREAM_DELETED = 1  # STREAM_ITEM_FLAG_DELETED
STREAM_SAMEFIELDS = 2  # STREAM_ITEM_FLAG_SAMEFIELDS
StreamEntrySpec = tuple[int, tuple[int, int], list[tuple[bytes, bytes]]]  # (flags, id, fields)


def stream_id_raw(ms: int, seq: int) -> bytes:
    return struct.pack(">QQ", ms, seq)


def stream_node(master: tuple[int, int], master_fields: list[bytes], entries: list[StreamEntrySpec],
                live: int | None = None, deleted: int | None = None) -> bytes:
    """A stream listpack node: the master entry (live count, deleted count, master fields, 0), then each entry (flags,
    id deltas, values only when SAMEFIELDS else the field count and pairs, lp-count). The counts default to what the
    flags say; give others to build a node whose header disagrees with its entries."""
    flagged = sum(1 for flags, _, _ in entries if flags & STREAM_DELETED)
    items: list[bytes | int] = [len(entries) - flagged if live is None else live,
                                flagged if deleted is None else deleted, len(master_fields), *master_fields, 0]
    for flags, (ms, seq), fields in entries:
        body: list[bytes | int] = [flags, ms - master[0], seq - master[1]]
        if flags & STREAM_SAMEFIELDS:
            body += [v for _, v in fields]
        else:
            body += [len(fields), *(x for pair in fields for x in pair)]
        items += [*body, len(body)]
    return listpack(items)


def stream_15(nodes: list[tuple[tuple[int, int], bytes]], length_: int, last_id: tuple[int, int],
              groups: bytes = b"\x00") -> bytes:
    """A STREAM_LISTPACKS (type 15) value: the nodes (master id, listpack), length, last id, then `groups` as
    stream_group_15 builds them (a count first)."""
    body = length(len(nodes))
    for master, node in nodes:
        body += string(stream_id_raw(*master)) + string(node)
    return body + length(length_) + length(last_id[0]) + length(last_id[1]) + groups


def stream_groups_15(groups: list[tuple[bytes, tuple[int, int], list[tuple[tuple[int, int], int, int]],
                                        list[tuple[bytes, int, list[tuple[int, int]]]]]]) -> bytes:
    """Consumer groups of a type-15 stream: (name, last id, PEL [(id, delivery time ms, count)], consumers
    [(name, seen time ms, [ids])])."""
    out = length(len(groups))
    for name, last, pel, consumers in groups:
        out += string(name) + length(last[0]) + length(last[1]) + length(len(pel))
        for sid, when, count in pel:
            out += stream_id_raw(*sid) + struct.pack("<q", when) + length(count)
        out += length(len(consumers))
        for cname, seen, ids in consumers:
            out += string(cname) + struct.pack("<q", seen) + length(len(ids))
            out += b"".join(stream_id_raw(*sid) for sid in ids)
    return out
