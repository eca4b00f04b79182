"""The command part of an AOF file, parsed exactly as the server's loader reads it, in bounded memory.

Facts from loadSingleAppendOnlyFile in src/aof.c (redis 7.0.15 and unstable, valkey unstable; the same loop):
- the file is read with fgets into a 1024-byte buffer: a "line" ends after its newline or after 1023 bytes;
- a line starting with `#` is an annotation (e.g. `#TS:<unix time>` of aof-timestamp-enabled) and is skipped
  (Redis 7.0+; Redis 6.0 has no such rule and calls it a format error, but it never writes one);
- a command is `*<argc>` (atoi; below 1 is a format error) then, per argument, a `$<len>` line (strtol), `len` bytes
  and two more bytes that are discarded without being checked;
- any other byte where a `*` or `$` line should start is a format error: the server refuses to load;
- reaching the end of the file inside a command is a short read ("truncated"): what the server does with it is
  decided by the caller (migrate.aof.reader), since it depends on the file's place in the load order.
A line of just `*` at the end of the file is a short read too; a NUL byte right after `*` is an unreadable file.

Speed: files written by a server are canonical RESP (`*<argc>` and `$<len>` in their shortest form, bulk strings
only), which hiredis parses about four times faster than the rules above. The fast path feeds the file to hiredis and
accounts each command's canonical length to know its offsets; each command is yielded only once the next one's
canonical header (`*<argc>\r\n$<len>\r\n`) is found where its length says it starts, so an input hiredis reads
differently from the server (a non-canonical length, an annotation line, an element that is not a bulk string, an
empty command) is never yielded from the fast path: the exact parser takes over from the last command whose end is
proven, and the file's last command (whose end nothing follows) is always parsed by the exact rules.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Final

import hiredis

from migrate.aof.errors import AofFormatError
from migrate.wire import ARG_BYTES as _ARG_COST
from migrate.wire import HEAD_BYTES as _HEAD_BYTES
from migrate.wire import resp_size

LINE_MAX: Final = 1023  # fgets(buf, AOF_ANNOTATION_LINE_MAX_LEN = 1024, fp) reads at most 1023 bytes
DEFAULT_CHUNK: Final = 1 << 20
FAST_CHUNK: Final = 64 << 10  # hiredis parses several times faster fed 64 KiB at a time than 1 MiB (measured)
_INT_MAX: Final = (1 << 31) - 1
BLANKS: Final = b" \t\n\r\v\f"  # isspace() in the C locale

RawCommand = tuple[int, int, tuple[bytes, ...]]  # (offset of '*', offset after the command, argv)


class _More(Exception):
    """The command continues past the buffer; `need` is the buffer length required, when known."""

    def __init__(self, need: int | None = None) -> None:
        super().__init__(need)
        self.need = need


class CommandStream:
    """Iterate the commands of one file from `start` (after an RDB part, or 0): `for offset, end, argv in ...`.

    Stops quietly at the end of the file; when the file ends inside a command, `truncated_at` is the offset of that
    command's first byte (or of the annotation line it was in) and iteration stops there.
    """

    def __init__(self, path: os.PathLike[str] | str, name: str, start: int = 0, chunk_size: int = DEFAULT_CHUNK,
                 stop: int | None = None, fast: bool = True) -> None:
        """`stop`: read the file only up to this offset (as if it ended there); `fast`: use the hiredis fast path."""
        self.name = name
        self.chunk_size = chunk_size
        self.truncated_at: int | None = None
        self.fast = fast
        self.exact_from: int | None = None  # where the exact parser took over
        self.canonical = False  # the fast path read up to the end: only the last command needed the exact rules
        self._start = start
        self._stop = stop
        self._path = path

    def __iter__(self) -> Iterator[RawCommand]:
        try:
            fh = open(self._path, "rb", buffering=0)  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise AofFormatError(f"cannot open AOF file: {exc.strerror}", self.name) from None
        try:
            size = os.fstat(fh.fileno()).st_size
            if self._stop is not None:
                size = min(size, self._stop)
            start = self._start
            if self.fast:
                start = yield from self._fast(fh, size, start)
            self.exact_from = start
            fh.seek(start)
            yield from self._commands(fh, size, start)
        finally:
            fh.close()

    def _fast(self, fh: object, size: int, start: int) -> Generator[RawCommand, None, int]:
        """Canonical commands through hiredis; returns the offset where the exact parser must go on."""
        read = fh.read  # type: ignore[attr-defined]
        reader = hiredis.Reader()
        gets = reader.gets
        fh.seek(start)  # type: ignore[attr-defined]
        cur, cur_base, fed = b"", start, start  # the chunk fed last, its file offset, the end of what was fed
        prev, prev_base = b"", start
        pos = start  # where the next command starts, by the canonical lengths so far
        held: RawCommand | None = None  # parsed, waiting for the next command's header to prove its end
        heads = _HEADS
        nheads = len(heads)
        head_bytes = _HEAD_BYTES
        cost = _ARG_COST
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError:
                break
            if reply is False:
                data = read(min(FAST_CHUNK, size - fed)) if fed < size else b""
                if not data:
                    self.canonical = True
                    break
                prev, prev_base, cur, cur_base = cur, cur_base, data, fed
                fed += len(data)
                reader.feed(data)
                continue
            if type(reply) is not list:  # a bulk string, an error, a number...: the exact rules decide
                break
            argv = tuple(reply)
            argc = len(argv)
            try:  # the canonical length: `*<argc>\r\n`, then `$<len>\r\n<bytes>\r\n` per argument
                length = sum(map(cost.__getitem__, map(len, argv))) + head_bytes[argc]
            except IndexError:  # an argument of 100,000 bytes or more, or 10,000 arguments or more
                length = resp_size(argv)
            except TypeError:  # a nil, an integer, a nested array: the exact rules decide
                break
            head = heads[argc] if argc < nheads else b"*%d\r\n$" % argc
            at = pos - cur_base
            if not (at >= 0 and cur.startswith(head, at)) and (
                    not argc or _at(fh, pos, len(head), cur, cur_base, prev, prev_base) != head):
                break  # the held command was not what its canonical length says (or an empty command)
            if held is not None:
                yield held
            held = (pos, pos + length, argv)
            pos += length
        return held[0] if held is not None else pos

    def _commands(self, fh: object, size: int, start: int) -> Iterator[RawCommand]:
        raw_read = fh.read  # type: ignore[attr-defined]
        tell = fh.tell  # type: ignore[attr-defined]

        def read(n: int) -> bytes:
            return bytes(raw_read(max(0, min(n, size - tell()))))

        buf, base, p = b"", start, 0  # base: file offset of buf[0]
        eof = base >= size
        while True:
            start = p
            try:
                if p >= len(buf):
                    raise _More(p + 1)
                if buf[p] == 35:  # '#': an annotation line
                    p = _line_end(buf, p, eof)
                    continue
                end, argv = self._command(buf, p, eof, base)
            except _More as more:
                need = more.need if more.need is not None else len(buf) + 1
                if eof or base + need > size:
                    if start < len(buf) or not eof:  # bytes of an incomplete command (or a length past the end)
                        self.truncated_at = base + start
                    return
                buf, base = buf[start:], base + start
                data = read(max(self.chunk_size, len(buf), need - start - len(buf)))  # doubles for big commands
                buf += data
                eof = not data or base + len(buf) >= size
                p = 0
                continue
            p = end
            yield base + start, base + end, argv

    def _command(self, buf: bytes, p: int, eof: bool, base: int) -> tuple[int, tuple[bytes, ...]]:
        find = buf.find
        newline = find(b"\n", p, p + LINE_MAX)
        digits = buf[p + 1:newline - 1]
        if newline > p and buf[p] == 42 and buf[newline - 1] == 13 and digits.isdigit() and digits[0] != 48 \
                and len(digits) < 10:
            q, argc = newline + 1, int(digits)  # the common line, "*<digits>\r\n"
        else:
            q, argc = self._count_line(buf, p, eof, base)
        argv = []
        for _ in range(argc):
            # the common line, "$<digits>\r\n", inline; anything else through the fgets/strtol rules
            newline = find(b"\n", q, q + LINE_MAX)
            digits = buf[q + 1:newline - 1]
            if newline > q and buf[q] == 36 and buf[newline - 1] == 13 and digits.isdigit():
                line_end = newline + 1
                length = int(digits)
            else:
                line_end, length = self._length_line(buf, q, eof, base)
            value_end = line_end + length
            if value_end + 2 > len(buf):
                raise _More(value_end + 2)
            argv.append(buf[line_end:value_end])
            q = value_end + 2  # the CRLF after the value: skipped unchecked, as the server does
        return q, tuple(argv)

    def _count_line(self, buf: bytes, p: int, eof: bool, base: int) -> tuple[int, int]:
        """(end of the `*<argc>` line, argc) by the server's rules: fgets, then atoi of what follows the '*'."""
        if buf[p] != 42:  # '*'
            raise self._format_error(buf, p, base, "expected '*' at the start of a command")
        q = _line_end(buf, p, eof)
        if q - p == 1:  # fgets returned just "*": the file ends there
            raise _More()
        if buf[p + 1] == 0:
            raise self._format_error(buf, p, base, "a NUL byte after '*'")
        argc = c_integer(buf[p + 1:q])
        if not 1 <= argc <= _INT_MAX:
            raise self._format_error(buf, p, base, f"invalid argument count {buf[p:q].strip()!r}")
        return q, argc

    def _length_line(self, buf: bytes, q: int, eof: bool, base: int) -> tuple[int, int]:
        """(end of the `$<len>` line, len) by the server's rules: fgets, then strtol of what follows the '$'."""
        if q >= len(buf):
            raise _More(q + 1)
        line_end = _line_end(buf, q, eof)
        if buf[q] != 36:  # '$'
            raise self._format_error(buf, q, base, "expected '$' before an argument")
        length = c_integer(buf[q + 1:line_end])
        if length < 0:
            raise self._format_error(buf, q, base, f"invalid argument length {buf[q:line_end].strip()!r}")
        return line_end, length

    def _format_error(self, buf: bytes, p: int, base: int, what: str) -> AofFormatError:
        offset = base + p
        if offset == 0:
            head = buf[:16]
            return AofFormatError(f"not an AOF file (it starts with {head!r}): {what}", self.name, 0,
                                  hint="pass an AOF file, its directory or its manifest; an RDB snapshot goes "
                                  "to --from-rdb")
        return AofFormatError(f"corrupt AOF command: {what}", self.name, offset)


_HEADS: Final = tuple(b"*%d\r\n$" % n for n in range(64))


def _at(fh: object, offset: int, n: int, cur: bytes, cur_base: int, prev: bytes, prev_base: int) -> bytes:
    """The n bytes at a file offset, from the last two chunks read when they hold them (else read from the file)."""
    at = offset - cur_base
    if at >= 0 and at + n <= len(cur):
        return cur[at:at + n]
    at = offset - prev_base
    if at >= 0 and at + n <= len(prev) and offset + n <= cur_base:
        return prev[at:at + n]
    if at >= 0 and at < len(prev) and offset + n <= cur_base + len(cur):
        return (prev + cur[:n])[at:at + n]
    return os.pread(fh.fileno(), n, offset)  # type: ignore[attr-defined]


def _line_end(buf: bytes, p: int, eof: bool) -> int:
    """Index after the fgets line starting at p (newline included, at most LINE_MAX bytes); _More if unknown yet."""
    newline = buf.find(b"\n", p, p + LINE_MAX)
    if newline >= 0:
        return newline + 1
    if len(buf) - p >= LINE_MAX:
        return p + LINE_MAX
    if not eof:
        raise _More()
    return len(buf)


def c_integer(text: bytes) -> int:
    """C atoi, strtol, atoll as the server uses them: leading blanks, an optional sign, the digits that follow (0 when
    none)."""
    text = text.lstrip(BLANKS)
    sign = -1 if text[:1] == b"-" else 1
    if text[:1] in (b"-", b"+"):
        text = text[1:]
    digits = len(text) - len(text.lstrip(b"0123456789"))
    return sign * int(text[:digits]) if digits else 0
