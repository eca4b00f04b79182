"""Low-level RDB encodings over bytes: lengths, strings (int, LZF), doubles, listpack, ziplist, intset, zipmap.

Functions take a buffer and a position and return the value and the next position. They are the hot path of the
reader, so they do not check bounds on every byte: reading past the end raises IndexError or struct.error (the reader
treats that as "need more bytes", the decoder as "truncated"), and a malformed structure raises FormatProblem with the
position relative to the buffer given. Any length is checked against the bytes that can follow before anything is
allocated, so corrupt input never costs more memory than its own size.
"""

from __future__ import annotations

import struct
from typing import Final

import lzf

from migrate.rdb.constants import ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF

Buffer = bytes | bytearray | memoryview

_U32_BE = struct.Struct(">I").unpack_from
_U64_BE = struct.Struct(">Q").unpack_from
_I16_LE = struct.Struct("<h").unpack_from
_I32_LE = struct.Struct("<i").unpack_from
_I64_LE = struct.Struct("<q").unpack_from
_U16_LE = struct.Struct("<H").unpack_from
_U32_LE = struct.Struct("<I").unpack_from
_F64_LE = struct.Struct("<d").unpack_from
_I8 = struct.Struct("<b").unpack_from

# LZF emits at most 264 bytes for a 3-byte back reference: a larger claimed ratio is corrupt input.
LZF_MAX_RATIO: Final = 100


class FormatProblem(Exception):
    """Malformed data at a position of the buffer being parsed (converted to RdbFormatError with a file offset)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def read_length(b: Buffer, p: int) -> tuple[int, int]:
    """A plain length (6, 14, 32 or 64 bits). A string-encoding marker here is malformed."""
    c = b[p]
    kind = c >> 6
    if kind == 0:
        return c & 0x3F, p + 1
    if kind == 1:
        return ((c & 0x3F) << 8) | b[p + 1], p + 2
    if c == 0x80:
        return _U32_BE(b, p + 1)[0], p + 5
    if c == 0x81:
        return _U64_BE(b, p + 1)[0], p + 9
    raise FormatProblem(f"invalid length encoding byte 0x{c:02x}", p)


def read_string(b: Buffer, p: int) -> tuple[bytes, int]:
    """An RDB string: raw, integer-encoded (returned as its decimal text) or LZF-compressed."""
    c = b[p]
    kind = c >> 6
    if kind == 0:
        end = p + 1 + (c & 0x3F)
        start = p + 1
    elif kind == 1:
        start = p + 2
        end = start + (((c & 0x3F) << 8) | b[p + 1])
    elif kind == 3:
        return _read_encoded_string(b, p, c & 0x3F)
    else:
        length, start = read_length(b, p)
        end = start + length
    if end > len(b):
        raise IndexError(end)
    return bytes(b[start:end]), end


def read_strings(b: bytes, p: int, n: int) -> tuple[list[bytes], int]:
    """n consecutive RDB strings (the elements of hashtable-encoded values). A truncation is reported where it is."""
    out: list[bytes] = []
    append = out.append
    size = len(b)
    try:
        for _ in range(n):
            c = b[p]
            if c < 0x40:
                q = p + 1 + c
                if q > size:
                    raise IndexError(q)
                append(b[p + 1:q])
                p = q
            else:
                value, p = read_string(b, p)
                append(value)
    except (IndexError, struct.error):
        raise FormatProblem("value is truncated", min(p, size)) from None
    return out, p


def _read_encoded_string(b: Buffer, p: int, enc: int) -> tuple[bytes, int]:
    if enc == ENC_INT8:
        return str(_I8(b, p + 1)[0]).encode(), p + 2
    if enc == ENC_INT16:
        return str(_I16_LE(b, p + 1)[0]).encode(), p + 3
    if enc == ENC_INT32:
        return str(_I32_LE(b, p + 1)[0]).encode(), p + 5
    if enc == ENC_LZF:
        return read_lzf(b, p)
    raise FormatProblem(f"unknown string encoding {enc}", p)


def read_lzf(b: Buffer, p: int) -> tuple[bytes, int]:
    """An LZF string starting at its 0xC3 marker: compressed length, original length, data."""
    clen, q = read_length(b, p + 1)
    ulen, q = read_length(b, q)
    end = q + clen
    if end > len(b):
        raise IndexError(end)
    if ulen > clen * LZF_MAX_RATIO + 64 or (clen and not ulen):
        raise FormatProblem(f"LZF string claims {ulen} bytes from {clen} compressed bytes", p)
    if ulen == 0:
        return b"", end
    try:
        data = lzf.decompress(bytes(b[q:end]), ulen)
    except ValueError:  # python-lzf: "error in compressed data"
        data = None
    if data is None or len(data) != ulen:
        raise FormatProblem("invalid LZF compressed string", p)
    return data, end


def read_ascii_double(b: Buffer, p: int) -> tuple[float, int]:
    """A double as an ASCII string with a one-byte length (253 NaN, 254 +inf, 255 -inf): ZSET (type 3) scores."""
    n = b[p]
    if n == 255:
        return float("-inf"), p + 1
    if n == 254:
        return float("inf"), p + 1
    if n == 253:
        return float("nan"), p + 1
    end = p + 1 + n
    if end > len(b):
        raise IndexError(end)
    try:
        return float(bytes(b[p + 1:end])), end
    except ValueError:
        raise FormatProblem("invalid ASCII double", p) from None


def read_ms_time(b: Buffer, p: int) -> tuple[int, int]:
    """A signed 64-bit little-endian time in milliseconds."""
    return _I64_LE(b, p)[0], p + 8


# ---------------------------------------------------------------------------------------------------------------
# listpack (listpack.c): <total-bytes u32><num-elements u16> entries... 0xFF; entry = <encoding+data><backlen>


def _backlen_size(entry_len: int) -> int:
    """Bytes of the back-length after an entry of entry_len bytes (thresholds exactly as lpEncodeBacklen's)."""
    if entry_len < 128:
        return 1
    if entry_len < 16383:
        return 2
    if entry_len < 2097151:
        return 3
    if entry_len < 268435455:
        return 4
    return 5


def listpack_items(blob: bytes) -> list[bytes | int]:
    """Every element of a listpack: bytes for strings, int for integer-encoded elements."""
    size = len(blob)
    if size < 7:
        raise FormatProblem("listpack shorter than its header", 0)
    total, count = _U32_LE(blob, 0)[0], _U16_LE(blob, 4)[0]
    if total != size:
        raise FormatProblem(f"listpack header says {total} bytes, blob has {size}", 0)
    if blob[size - 1] != 0xFF:
        raise FormatProblem("listpack does not end with 0xFF", size - 1)
    items: list[bytes | int] = []
    append = items.append
    p = 6
    end = size - 1
    while p < end:
        c = blob[p]
        if c < 0x80:  # 7-bit unsigned int, one backlen byte
            append(c)
            p += 2
        elif c < 0xC0:  # string of up to 63 bytes: the entry is < 128 bytes, one backlen byte
            q = p + 1 + (c & 0x3F)
            append(blob[p + 1:q])
            p = q + 1
        elif c < 0xE0:  # 13-bit signed int
            v = ((c & 0x1F) << 8) | blob[p + 1]
            append(v - 8192 if v >= 4096 else v)
            p += 3
        else:
            value, q = _listpack_entry(blob, p, c)
            append(value)
            p = q + _backlen_size(q - p)
    if p != end:  # an entry ran past the end (a short slice above is then never returned)
        raise FormatProblem("listpack entry overruns the blob", min(p, end))
    if count != 65535 and count != len(items):
        raise FormatProblem(f"listpack header says {count} elements, found {len(items)}", 4)
    return items


def _listpack_entry(b: Buffer, p: int, c: int) -> tuple[bytes | int, int]:
    """One entry after its first byte c (>= 0x80): the value and the position after the data (before backlen)."""
    if c < 0xC0:  # 6-bit string length
        end = p + 1 + (c & 0x3F)
        return _slice(b, p + 1, end), end
    if c < 0xE0:  # 13-bit signed int
        v = ((c & 0x1F) << 8) | b[p + 1]
        return (v - 8192 if v >= 4096 else v), p + 2
    if c < 0xF0:  # 12-bit string length
        start = p + 2
        end = start + (((c & 0x0F) << 8) | b[p + 1])
        return _slice(b, start, end), end
    if c == 0xF0:
        start = p + 5
        end = start + _U32_LE(b, p + 1)[0]
        return _slice(b, start, end), end
    if c == 0xF1:
        return _I16_LE(b, p + 1)[0], p + 3
    if c == 0xF2:
        v = b[p + 1] | (b[p + 2] << 8) | (b[p + 3] << 16)
        return (v - (1 << 24) if v >= (1 << 23) else v), p + 4
    if c == 0xF3:
        return _I32_LE(b, p + 1)[0], p + 5
    if c == 0xF4:
        return _I64_LE(b, p + 1)[0], p + 9
    raise FormatProblem(f"invalid listpack entry encoding 0x{c:02x}", p)


def _slice(b: Buffer, start: int, end: int) -> bytes:
    if end > len(b):
        raise FormatProblem("listpack/ziplist string overruns the blob", start)
    return bytes(b[start:end])


# ---------------------------------------------------------------------------------------------------------------
# ziplist (ziplist.c): <zlbytes u32><zltail u32><zllen u16> entries... 0xFF; entry = <prevlen><encoding><data>

_ZIPLIST_INT: Final[dict[int, tuple[int, struct.Struct]]] = {
    0xC0: (2, struct.Struct("<h")),
    0xD0: (4, struct.Struct("<i")),
    0xE0: (8, struct.Struct("<q")),
    0xFE: (1, struct.Struct("<b")),
}


def ziplist_items(blob: Buffer) -> list[bytes | int]:
    size = len(blob)
    if size < 11:
        raise FormatProblem("ziplist shorter than its header", 0)
    total, count = _U32_LE(blob, 0)[0], _U16_LE(blob, 8)[0]
    if total != size:
        raise FormatProblem(f"ziplist header says {total} bytes, blob has {size}", 0)
    if blob[size - 1] != 0xFF:
        raise FormatProblem("ziplist does not end with 0xFF", size - 1)
    items: list[bytes | int] = []
    p = 10
    end = size - 1
    while p < end:
        p += 5 if blob[p] == 0xFE else 1  # prevlen
        if p >= end:
            raise FormatProblem("ziplist entry overruns the blob", p)
        value, p = _ziplist_entry(blob, p)
        items.append(value)
    if p != end:
        raise FormatProblem("ziplist entry overruns the blob", min(p, end))
    if count != 65535 and count != len(items):
        raise FormatProblem(f"ziplist header says {count} entries, found {len(items)}", 8)
    return items


def _ziplist_entry(b: Buffer, p: int) -> tuple[bytes | int, int]:
    c = b[p]
    kind = c >> 6
    if kind == 0:
        end = p + 1 + (c & 0x3F)
        return _slice(b, p + 1, end), end
    if kind == 1:
        start = p + 2
        end = start + (((c & 0x3F) << 8) | b[p + 1])
        return _slice(b, start, end), end
    if c == 0x80:
        start = p + 5
        end = start + _U32_BE(b, p + 1)[0]
        return _slice(b, start, end), end
    if c in _ZIPLIST_INT:
        width, fmt = _ZIPLIST_INT[c]
        return fmt.unpack_from(b, p + 1)[0], p + 1 + width
    if c == 0xF0:  # 24-bit signed
        v = b[p + 1] | (b[p + 2] << 8) | (b[p + 3] << 16)
        return (v - (1 << 24) if v >= (1 << 23) else v), p + 4
    if 0xF1 <= c <= 0xFD:  # 4-bit immediate 0..12
        return (c & 0x0F) - 1, p + 1
    raise FormatProblem(f"invalid ziplist entry encoding 0x{c:02x}", p)


# ---------------------------------------------------------------------------------------------------------------
# intset (intset.c): <encoding u32 (2, 4 or 8)><length u32><sorted little-endian integers>

_INTSET_FORMATS: Final = {2: "h", 4: "i", 8: "q"}


def intset_items(blob: Buffer) -> list[int]:
    if len(blob) < 8:
        raise FormatProblem("intset shorter than its header", 0)
    width, count = _U32_LE(blob, 0)[0], _U32_LE(blob, 4)[0]
    if width not in _INTSET_FORMATS:
        raise FormatProblem(f"invalid intset encoding {width}", 0)
    if 8 + width * count != len(blob):
        raise FormatProblem(f"intset of {count} x {width} bytes does not match a blob of {len(blob)} bytes", 4)
    return list(struct.unpack_from(f"<{count}{_INTSET_FORMATS[width]}", blob, 8))


# ---------------------------------------------------------------------------------------------------------------
# zipmap (zipmap.c, Redis < 2.6): <zmlen u8> (<len><key><len><free u8><value><free bytes>)... 0xFF


def zipmap_pairs(blob: Buffer) -> list[tuple[bytes, bytes]]:
    if len(blob) < 2:
        raise FormatProblem("zipmap shorter than its header", 0)
    pairs: list[tuple[bytes, bytes]] = []
    p = 1
    while True:
        if p >= len(blob):
            raise FormatProblem("zipmap does not end with 0xFF", len(blob) - 1)
        if blob[p] == 0xFF:
            break
        field, p = _zipmap_string(blob, p, with_free=False)
        value, p = _zipmap_string(blob, p, with_free=True)
        pairs.append((field, value))
    if p != len(blob) - 1:
        raise FormatProblem("bytes after the zipmap end marker", p)
    return pairs


def _zipmap_string(b: Buffer, p: int, *, with_free: bool) -> tuple[bytes, int]:
    c = b[p]
    if c < 254:
        length, p = c, p + 1
    elif c == 254:
        length, p = _U32_LE(b, p + 1)[0], p + 5
    else:
        raise FormatProblem("zipmap entry where the end marker is", p)
    free = 0
    if with_free:
        free, p = b[p], p + 1
    value = _slice(b, p, p + length)
    return value, p + length + free


def as_bytes(item: bytes | int) -> bytes:
    """A listpack/ziplist element as the server returns it: integers as their decimal text."""
    return item if isinstance(item, bytes) else str(item).encode()
