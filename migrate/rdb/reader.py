"""Streaming RDB reader: RDB versions 1-12 (REDIS magic) and Valkey 80/81 (VALKEY magic), from a path or a stream.

The reader never seeks and never holds more than the record being parsed plus one read chunk: values are skipped
structurally (lengths and counts only), and the raw serialized bytes of each key are captured so that a RESTORE
payload can be built without decoding them. A CRC64 is computed over the bytes as they stream past and checked
against the checksum after the EOF opcode.

Parsing is optimistic: a record is parsed from the buffer as if it were complete; when it is not (IndexError,
struct.error, or a length pointing past the buffer), more bytes are read and the record is parsed again from its start.
Every length is checked against the bytes that can still follow (file size, or `max_value_bytes` for a stream) before
the buffer grows, so corrupt input fails fast with an offset instead of exhausting memory.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, Final

import anycrc

from migrate.facts import types as T
from migrate.rdb import constants as C
from migrate.rdb.encodings import FormatProblem, read_length, read_string
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.records import (
    AuxField,
    End,
    FunctionRecord,
    KeyRecord,
    ModuleAux,
    Record,
    ResizeDb,
    SelectDb,
    SlotImport,
    SlotInfo,
    function_library_name,
)

DEFAULT_CHUNK: Final = 1 << 20
DEFAULT_MAX_VALUE: Final = 1 << 30  # for streams of unknown size; files are bounded by their size
KEY: Final = 0  # first element of the internal key tuples

_CRC = anycrc.Model("CRC64-REDIS")
_U32_BE = struct.Struct(">I").unpack_from
_U64_BE = struct.Struct(">Q").unpack_from
_I32_LE = struct.Struct("<i").unpack_from
_I64_LE = struct.Struct("<q").unpack_from
_U64_LE = struct.Struct("<Q").unpack_from

Source = str | os.PathLike[str] | IO[bytes]
# (KEY, db, key, type_byte, expire_ms, idle, freq, payload, offset, size, module_id)
KeyTuple = tuple[int, int, bytes, int, int | None, int | None, int | None, bytes, int, int, int | None]
Skipper = Callable[[bytes, int, int], int]


class NeedMore(Exception):
    """The record continues past the buffer; `need` is the buffer index required, when known."""

    def __init__(self, need: int | None) -> None:
        super().__init__(need)
        self.need = need


# -- structural skipping: (buffer, position, limit) -> position after the value --------------------------------


def _str(b: bytes, p: int) -> int:
    c = b[p]
    if c < 0x40:
        return p + 1 + c
    if c < 0x80:
        return p + 2 + (((c & 0x3F) << 8) | b[p + 1])
    if c == 0xC0:
        return p + 2
    if c == 0xC1:
        return p + 3
    if c == 0xC2:
        return p + 5
    end: int
    if c == 0x80:
        end = p + 5 + _U32_BE(b, p + 1)[0]
    elif c == 0x81:
        end = p + 9 + _U64_BE(b, p + 1)[0]
    elif c == 0xC3:
        clen, q = read_length(b, p + 1)
        _, q = read_length(b, q)
        end = q + clen
    else:
        raise FormatProblem(f"invalid string encoding byte 0x{c:02x}", p)
    if end > len(b):
        raise NeedMore(end)
    return end


def _count(b: bytes, p: int, lim: int) -> tuple[int, int]:
    n, q = read_length(b, p)
    if n > lim - q:  # every element takes at least one byte
        raise FormatProblem(f"element count {n} exceeds the bytes that can follow", p)
    return n, q


def _skip_string(b: bytes, p: int, lim: int) -> int:
    return _str(b, p)


def _skip_n_strings(b: bytes, p: int, n: int) -> int:
    # the hot loop of big values: short strings inline, the rest through _str
    for _ in range(n):
        c = b[p]
        if c < 0x40:
            p += 1 + c
        else:
            p = _str(b, p)
    return p


def _skip_strings(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    return _skip_n_strings(b, p, n)


def _skip_pairs(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    if n > (lim - p) // 2:
        raise FormatProblem(f"element count {n} exceeds the bytes that can follow", p)
    return _skip_n_strings(b, p, 2 * n)


def _skip_zset_ascii(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    for _ in range(n):
        p = _str(b, p)
        d = b[p]
        p += 1 if d >= 253 else 1 + d
    return p


def _skip_zset_binary(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    for _ in range(n):
        c = b[p]
        p = (p + 9 + c) if c < 0x40 else _str(b, p) + 8
    return p


def _skip_quicklist_2(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    for _ in range(n):
        c = b[p]  # the container: 1 (plain) or 2 (packed), a one-byte length in any valid file
        p = _str(b, p + 1) if c < 0x40 else _str(b, read_length(b, p)[1])
    return p


def _skip_hash_2_valkey(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    for _ in range(n):
        p = _skip_n_strings(b, p, 2) + 8
    return p


def _skip_hash_metadata_pre_ga(b: bytes, p: int, lim: int) -> int:
    n, p = _count(b, p, lim)
    for _ in range(n):
        _, p = read_length(b, p)
        p = _skip_n_strings(b, p, 2)
    return p


def _skip_hash_metadata(b: bytes, p: int, lim: int) -> int:
    return _skip_hash_metadata_pre_ga(b, p + 8, lim)


def _skip_listpack_ex(b: bytes, p: int, lim: int) -> int:
    return _str(b, p + 8)


def _skip_lengths(b: bytes, p: int, n: int) -> int:
    for _ in range(n):
        _, p = read_length(b, p)
    return p


def _stream_skipper(version: int) -> Skipper:
    def skip(b: bytes, p: int, lim: int) -> int:
        n, p = _count(b, p, lim)
        for _ in range(n):
            p = _str(b, _str(b, p))
        p = _skip_lengths(b, p, 8 if version >= 2 else 3)  # length, last id [, first id, max deleted, added]
        groups, p = _count(b, p, lim)
        for _ in range(groups):
            p = _skip_lengths(b, _str(b, p), 3 if version >= 2 else 2)  # last id [, entries read]
            pel, p = _count(b, p, lim)
            for _ in range(pel):
                _, p = read_length(b, p + 24)  # 128-bit id, delivery time, then the delivery count
            consumers, p = _count(b, p, lim)
            for _ in range(consumers):
                p = _str(b, p) + (16 if version >= 3 else 8)  # name, seen time [, active time]
                k, p = _count(b, p, lim)
                p += 16 * k
        return p

    return skip


def skip_module_opcodes(b: bytes, p: int) -> int:
    """Position after a module-format-2 opcode sequence, its EOF opcode included."""
    while True:
        op, p = read_length(b, p)
        if op == C.MODULE_OPCODE_EOF:
            return p
        if op == C.MODULE_OPCODE_SINT or op == C.MODULE_OPCODE_UINT:
            _, p = read_length(b, p)
        elif op == C.MODULE_OPCODE_FLOAT:
            p += 4
        elif op == C.MODULE_OPCODE_DOUBLE:
            p += 8
        elif op == C.MODULE_OPCODE_STRING:
            p = _str(b, p)
        else:
            raise FormatProblem(f"unknown module opcode {op}", p)


def _skip_module_2(b: bytes, p: int, lim: int) -> int:
    _, p = read_length(b, p)
    return skip_module_opcodes(b, p)


_COMMON_SKIPPERS: Final[dict[int, Skipper]] = {
    0: _skip_string, 1: _skip_strings, 2: _skip_strings, 3: _skip_zset_ascii, 4: _skip_pairs, 5: _skip_zset_binary,
    7: _skip_module_2, 9: _skip_string, 10: _skip_string, 11: _skip_string, 12: _skip_string, 13: _skip_string,
    14: _skip_strings, 15: _stream_skipper(1), 16: _skip_string, 17: _skip_string, 18: _skip_quicklist_2,
    19: _stream_skipper(2), 20: _skip_string, 21: _stream_skipper(3),
}
_PRODUCT_SKIPPERS: Final[dict[str, dict[int, Skipper]]] = {
    "redis": {22: _skip_hash_metadata_pre_ga, 23: _skip_string, 24: _skip_hash_metadata, 25: _skip_listpack_ex},
    "valkey": {22: _skip_hash_2_valkey},
}


def skipper_table(product: str) -> list[Skipper | None]:
    """Skipper per byte (None: an opcode, or a type byte this product does not define / we cannot read)."""
    table: list[Skipper | None] = [None] * 256
    for byte, fn in {**_COMMON_SKIPPERS, **_PRODUCT_SKIPPERS[product]}.items():
        table[byte] = fn
    return table


def skip_value(type_byte: int, payload: bytes, product: str = "redis") -> int:
    """Size of the serialized value at the start of `payload` (used by tests and the DUMP side)."""
    skip = skipper_table(product)[type_byte]
    if skip is None:
        raise RdbFormatError(f"unknown or unsupported object type {type_byte}", 0)
    try:
        end = skip(payload, 0, len(payload))
    except (IndexError, struct.error, NeedMore):
        raise RdbFormatError("serialized value is truncated", len(payload)) from None
    except FormatProblem as exc:
        raise RdbFormatError(exc.message, exc.pos) from None
    if end > len(payload):
        raise RdbFormatError("serialized value is truncated", len(payload))
    return end


# -- the reader -------------------------------------------------------------------------------------------------


class RdbReader:
    """Iterate the records of one RDB file or stream: `for record in RdbReader(path): ...`.

    `rdb_version`, `magic` ("REDIS"/"VALKEY") and `product` ("redis"/"valkey": who defines type bytes 22+) are known
    after construction; `aux` fills as aux fields stream past, `writer` tells which server wrote the file.
    """

    def __init__(self, source: Source, *, capture_payload: bool = True, verify_checksum: bool = True,
                 max_value_bytes: int = DEFAULT_MAX_VALUE, chunk_size: int = DEFAULT_CHUNK,
                 capture_small: int = 0, capture_types: frozenset[int] = frozenset()) -> None:
        """Without capture_payload, still capture values of collections up to `capture_small` bytes (what tells an
        empty one, migrate.rdb.empty, at almost no cost) and every value of a type byte in `capture_types`."""
        self.capture_payload = capture_payload
        self.capture_small = capture_small
        self.capture_types = capture_types
        self.verify_checksum = verify_checksum
        self.max_value_bytes = max_value_bytes
        self.chunk_size = chunk_size
        self._own: IO[bytes] | None = None
        self._size: int | None = None
        self._stream = self._open(source)
        read1 = getattr(self._stream, "read1", None)
        self._read: Callable[[int], bytes] = read1 if read1 is not None else self._stream.read
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of self._buf[0]
        self._crc = 0
        self._crc_from = 0  # self._buf[:_crc_from] is already in self._crc
        self._eof = False
        self.finished = False
        self.leftover = b""  # bytes read past the checksum (a replication stream continues there)
        self.aux: dict[str, bytes] = {}
        try:
            self.magic, self.rdb_version = self._header()
        except RdbFormatError:
            self.close()
            raise
        self.product = "valkey" if self.magic == "VALKEY" else "redis"
        self._skippers = skipper_table(self.product)

    # -- input ------------------------------------------------------------------------------------------------

    def _open(self, source: Source) -> IO[bytes]:
        if isinstance(source, (str, os.PathLike)):
            try:
                stream: IO[bytes] = open(source, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise RdbFormatError(f"cannot open RDB file: {exc.strerror}", hint="check the path") from None
            self._own = stream
        else:
            stream = source
        try:
            info = os.fstat(stream.fileno())
            if stat.S_ISREG(info.st_mode):
                self._size = info.st_size - stream.tell()
        except (OSError, AttributeError, ValueError):
            self._size = None  # a pipe, socket or in-memory stream: bounded by max_value_bytes instead
        return stream

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> RdbReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bytes_read(self) -> int:
        """Bytes consumed by records so far (the whole file once finished)."""
        return self._base + self._pos

    def _limit(self, buf: bytes) -> int:
        """Highest buffer index any record may reach: the end of the file, or max_value_bytes past the buffer."""
        if self._size is not None:
            return self._size - self._base
        return len(buf) + self.max_value_bytes

    def _refill(self, buf: bytes, start: int, need: int | None) -> bytes:
        """Drop buf[:start] (checksummed), read more, return the new buffer (the record now starts at index 0)."""
        if start > self._crc_from:
            self._crc = _CRC.calc(memoryview(buf)[self._crc_from:start], self._crc)
        self._crc_from = 0
        self._base += start
        kept = buf[start:]
        have = len(kept)
        minimum = (need - start - have) if need is not None else 1
        self._check_record_size(have + minimum)
        request = max(minimum, self.chunk_size, have if need is None else 0)
        if self._size is not None:
            request = max(minimum, min(request, self._size - self._base - have))
        parts = [kept]
        got = 0
        while got < minimum and not self._eof:
            data = self._read(request - got)
            if not data:
                self._eof = True
                break
            parts.append(data)
            got += len(data)
        if got < minimum:
            raise RdbFormatError(f"unexpected end of data in the record starting at offset {self._base}",
                                 self._base + have + got, hint="the RDB file is truncated")
        return b"".join(parts)

    def _check_record_size(self, size: int) -> None:
        if self._size is not None and self._base + size > self._size:
            raise RdbFormatError(f"the record starting at offset {self._base} needs {size} bytes but only "
                                 f"{self._size - self._base} remain (corrupt length or truncated file)", self._base)
        if self._size is None and size > self.max_value_bytes:
            raise RdbFormatError(f"the record starting at offset {self._base} needs {size} bytes, more than "
                                 f"max_value_bytes={self.max_value_bytes}", self._base,
                                 hint="corrupt length, or raise max_value_bytes for a huge value")

    def _header(self) -> tuple[str, int]:
        buf = self._buf
        while len(buf) < 9:
            try:
                buf = self._refill(buf, 0, 9)
            except RdbFormatError:
                raise RdbFormatError("not an RDB file: shorter than the 9-byte header", 0) from None
        head = buf[:9]
        if head.startswith(C.MAGIC_VALKEY) and head[6:].isdigit():
            magic, version = "VALKEY", int(head[6:])
            ok = T.VALKEY_FIRST_OWN_VERSION <= version <= C.MAX_KNOWN_VERSION["valkey"]
        elif head.startswith(C.MAGIC_REDIS) and head[5:].isdigit():
            magic, version = "REDIS", int(head[5:])
            ok = 1 <= version <= C.MAX_KNOWN_VERSION["redis"]
        else:
            raise RdbFormatError(f"not an RDB file: bad magic {head[:9]!r}", 0,
                                 hint="expected REDISnnnn or VALKEYnnn at the start of the file")
        if not ok:
            raise RdbFormatError(f"unsupported RDB version {version} with {magic} magic", 5 if magic == "REDIS" else 6,
                                 hint="this reader reads REDIS versions 1-12 and VALKEY versions 80-81")
        self._buf, self._pos = buf, 9
        return magic, version

    # -- records ----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        """Every record as a frozen dataclass, in file order, End last."""
        for item in self.scan():
            if isinstance(item, tuple):
                _, db, key, t, expire, idle, freq, payload, offset, size, mid = item
                yield KeyRecord(db, key, t, expire, idle, freq, payload, offset, size,
                                C.module_type_name(mid) if mid is not None else None,
                                C.module_encoding_version(mid) if mid is not None else None)
            else:
                yield item

    def keys(self) -> Iterator[KeyRecord]:
        for record in self.records():
            if isinstance(record, KeyRecord):
                yield record

    def scan(self) -> Iterator[KeyTuple | Record]:
        """The fast path: keys as plain KeyTuples (see KeyTuple), every other record as its dataclass."""
        buf, p = self._buf, self._pos
        n, base, lim = len(buf), self._base, self._limit(buf)
        capture = self.capture_payload
        small = 0 if capture else self.capture_small
        wanted_types = self.capture_types
        skippers = self._skippers
        db = 0
        expire: int | None = None
        idle: int | None = None
        freq: int | None = None
        while True:
            start = p
            try:
                t = buf[p]
                skip = skippers[t]
                if skip is not None:
                    c = buf[p + 1]
                    if c < 0x40:  # most keys: a raw string shorter than 64 bytes
                        vstart = p + 2 + c
                        key = buf[p + 2:vstart]
                    else:
                        key, vstart = read_string(buf, p + 1)
                    if t == 0:  # most values: strings
                        c = buf[vstart]
                        q = vstart + 1 + c if c < 0x40 else _str(buf, vstart)
                    else:
                        q = skip(buf, vstart, lim)
                    if q > n:
                        raise NeedMore(q)
                    item = (KEY, db, key, t, expire, idle, freq,
                            buf[vstart:q] if capture or (t and (q - vstart <= small or t in wanted_types)) else b"",
                            base + start,
                            q - vstart, read_length(buf, vstart)[0] if t == 7 else None)
                    p = self._pos = q
                    expire = idle = freq = None
                    yield item
                elif t == C.OP_EXPIRETIME_MS:
                    expire = _I64_LE(buf, p + 1)[0]
                    p += 9
                elif t == C.OP_SELECTDB:
                    db, p = read_length(buf, p + 1)
                    self._pos = p
                    yield SelectDb(db, base + start)
                elif t == C.OP_FREQ:
                    freq = buf[p + 1]
                    p += 2
                elif t == C.OP_IDLE:
                    idle, p = read_length(buf, p + 1)
                elif t == C.OP_EXPIRETIME:
                    expire = _I32_LE(buf, p + 1)[0] * 1000
                    p += 5
                elif t == C.OP_EOF:
                    yield self._end(buf, p)
                    return
                else:
                    record, p = self._special(buf, p, t)
                    if p > n:
                        raise NeedMore(p)
                    self._pos = p
                    if isinstance(record, AuxField):
                        self.aux[record.name] = record.value
                    yield record
            except (IndexError, struct.error):
                buf, p = self._refill(buf, start, None), 0
                self._buf, self._pos, n, base, lim = buf, 0, len(buf), self._base, self._limit(buf)
            except NeedMore as more:
                buf, p = self._refill(buf, start, more.need), 0
                self._buf, self._pos, n, base, lim = buf, 0, len(buf), self._base, self._limit(buf)
            except FormatProblem as exc:
                raise RdbFormatError(exc.message, self._base + exc.pos) from None

    def _special(self, buf: bytes, p: int, t: int) -> tuple[Record, int]:
        """Opcodes that yield a record of their own (and every byte that is neither an opcode nor a known type)."""
        offset = self._base + p
        if t == C.OP_AUX:
            name, q = read_string(buf, p + 1)
            value, q = read_string(buf, q)
            return AuxField(name.decode("utf-8", "replace"), value, offset), q
        if t == C.OP_RESIZEDB:
            size, q = read_length(buf, p + 1)
            expires, q = read_length(buf, q)
            return ResizeDb(size, expires, offset), q
        if t == C.OP_FUNCTION2:
            code, q = read_string(buf, p + 1)
            return FunctionRecord(code, function_library_name(code), offset), q
        if t == C.OP_MODULE_AUX:
            return self._module_aux(buf, p, offset)
        if t == C.OP_SLOT_INFO:
            q = p + 1
            slot, q = read_length(buf, q)
            size, q = read_length(buf, q)
            expires, q = read_length(buf, q)
            return SlotInfo(slot, size, expires, offset), q
        if t == C.OP_SLOT_IMPORT and self.product == "valkey":
            return self._slot_import(buf, p, offset)
        raise self._unreadable(t, offset)

    def _module_aux(self, buf: bytes, p: int, offset: int) -> tuple[Record, int]:
        mid, q = read_length(buf, p + 1)
        when_opcode, q = read_length(buf, q)
        if when_opcode != C.MODULE_OPCODE_UINT:
            raise FormatProblem(f"module aux data without its 'when' field (opcode {when_opcode})", q)
        when, q = read_length(buf, q)
        start = q
        q = skip_module_opcodes(buf, q)
        if q > len(buf):
            raise NeedMore(q)
        raw = buf[start:q]
        return ModuleAux(mid, C.module_type_name(mid), C.module_encoding_version(mid), when, raw, offset), q

    def _slot_import(self, buf: bytes, p: int, offset: int) -> tuple[Record, int]:
        name, q = read_string(buf, p + 1)
        n, q = _count(buf, q, self._limit(buf))
        ranges = []
        for _ in range(n):
            first, q = read_length(buf, q)
            last, q = read_length(buf, q)
            ranges.append((first, last))
        return SlotImport(name, tuple(ranges), offset), q

    def _unreadable(self, t: int, offset: int) -> RdbFormatError:
        info = T.type_info(t, self.rdb_version)
        if info is not None:
            return RdbFormatError(f"object type {info.name} ({t}) cannot be read by this reader", offset,
                                  hint="this format is not supported yet")
        name = C.opcode_name(t, self.product)
        if name is not None:
            return RdbFormatError(f"opcode {name} ({t}) in a {self.magic} {self.rdb_version} file is not supported",
                                  offset, hint="this format is not supported yet")
        return RdbFormatError(f"unknown type or opcode byte {t}", offset)

    def _end(self, buf: bytes, p: int) -> End:
        end = p + 1
        offset = self._base + p
        checksum = computed = None
        ok = None
        if self.rdb_version >= C.CHECKSUM_FROM_VERSION:
            if end + 8 > len(buf):
                raise NeedMore(end + 8)
            checksum = _U64_LE(buf, end)[0]
            computed = _CRC.calc(memoryview(buf)[self._crc_from:end], self._crc)
            if checksum != 0:
                ok = checksum == computed
            end += 8
        self._pos = end
        self.leftover = buf[end:]
        self.finished = True
        if ok is False and self.verify_checksum:
            raise RdbFormatError(f"RDB checksum mismatch: file says {checksum:#018x}, data gives {computed:#018x}",
                                 offset + 1, hint="the file is corrupt")
        return End(checksum, ok, computed, offset)

    # -- writer -----------------------------------------------------------------------------------------------

    @property
    def writer(self) -> tuple[str, str | None]:
        """(product, version) of the server that wrote the file, from the aux fields read so far."""
        if "valkey-ver" in self.aux:
            return "valkey", self.aux["valkey-ver"].decode("ascii", "replace")
        if "redis-ver" in self.aux:
            product = "valkey" if self.magic == "VALKEY" else "redis"
            return product, self.aux["redis-ver"].decode("ascii", "replace")
        return self.product, None


def read_records(source: Source, **options: Any) -> Iterator[Record]:
    """Every record of an RDB file or stream (see RdbReader for the options); closes a file it opened."""
    with RdbReader(source, **options) as reader:
        yield from reader.records()
