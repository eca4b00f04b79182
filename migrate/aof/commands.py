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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import hiredis

from migrate.aof.errors import AofFormatError
from migrate.wire import ARG_BYTES as _ARG_COST
from migrate.wire import HEAD_BYTES as _HEAD_BYTES
from migrate.wire import PassPlan, resp_size, resp_total

LINE_MAX: Final = 1023  # fgets(buf, AOF_ANNOTATION_LINE_MAX_LEN = 1024, fp) reads at most 1023 bytes
DEFAULT_CHUNK: Final = 1 << 20
FAST_CHUNK: Final = 64 << 10  # hiredis parses several times faster fed 64 KiB at a time than 1 MiB (measured)
_INT_MAX: Final = (1 << 31) - 1
BLANKS: Final = b" \t\n\r\v\f"  # isspace() in the C locale

RUN_COMMANDS: Final = 1000  # commands per CommandRun at most (about one applier batch)
RUN_BYTES: Final = 1 << 20  # and bytes (a run is held in memory, parsed)

RawCommand = tuple[int, int, tuple[bytes, ...]]  # (offset of '*', offset after the command, argv)
Runs = tuple[Callable[[bytes], PassPlan], Callable[[], bool]]
"""How to gather runs: the pass plan of a command name, and whether a run may start now (the consumer's state)."""


@dataclass(frozen=True, slots=True)
class CommandRun:
    """Consecutive commands that pass, [start, end) of the file, as hiredis parsed them (proven canonical as a
    whole: their canonical sizes add up to where the next command's header is)."""

    start: int
    end: int
    commands: list[list[bytes]]


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
        return cast(Iterator[RawCommand], self._items(None))

    def gathered(self, runs: Runs) -> Iterator[RawCommand | CommandRun]:
        """The commands, those that pass gathered into CommandRuns on the fast path (see `_fast`)."""
        return self._items(runs)

    def _items(self, runs: Runs | None) -> Iterator[RawCommand | CommandRun]:
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
                start = yield from self._fast(fh, size, start, runs)
            self.exact_from = start
            fh.seek(start)
            yield from self._commands(fh, size, start)
        finally:
            fh.close()

    def _fast(self, fh: object, size: int, start: int,
              runs: Runs | None) -> Generator[RawCommand | CommandRun, None, int]:
        """Canonical commands through hiredis; returns the offset where the exact parser must go on. With `runs`,
        consecutive commands that pass come out as one CommandRun, measured at once (`resp_total`) when the command
        after them proves where they end."""
        read = fh.read  # type: ignore[attr-defined]
        reader = hiredis.Reader()
        gets = reader.gets
        fh.seek(start)  # type: ignore[attr-defined]
        window = _Window(fh, start)  # the chunks fed last (where the next command's header is looked for)
        fed = start  # the end of what was fed
        pos = start  # where the next command (or the run being gathered) starts, by the canonical lengths so far
        held: RawCommand | None = None  # parsed, waiting for the next command's header to prove its end
        run: list[list[bytes]] = []  # commands gathered from pos on, all passing
        full = False  # the run holds RUN_BYTES: the next command ends it
        plan_of, hot = runs if runs is not None else (_no_plan, None)  # plan_of is only asked once hot() said yes
        plans: dict[bytes, PassPlan] = {}
        get = plans.get
        cost, head_bytes = _ARG_COST, _HEAD_BYTES
        cur, cur_base, heads, nheads = b"", start, _HEADS, len(_HEADS)
        while True:
            try:
                reply = gets()
                if reply is False:
                    data = read(min(FAST_CHUNK, size - fed)) if fed < size else b""
                    if not data:
                        self.canonical = True
                        break
                    window.push(data, fed)
                    cur, cur_base = data, fed
                    fed += len(data)
                    reader.feed(data)
                    full = bool(run) and fed - pos > RUN_BYTES
                    continue
                if type(reply) is not list or not reply:  # a bulk string, an error, an empty command...
                    break
                if run:
                    q = get(reply[0]) or _plan(plans, plan_of, reply[0])
                    if (not full and len(run) < RUN_COMMANDS
                            and (q[0] or len(reply) == q[1] or (q[2] is not None and q[2](reply)))):
                        run.append(reply)
                        continue
                    length = resp_total(run)
                    if not window.has_head(reply, pos + length):
                        break  # the run was not what its canonical lengths say
                    yield CommandRun(pos, pos + length, run)
                    pos, run, full = pos + length, [], False
                elif not ((pos >= cur_base and len(reply) < nheads
                           and cur.startswith(heads[len(reply)], pos - cur_base)) or window.has_head(reply, pos)):
                    break  # the held command was not what its canonical length says (the common case inline: hot)
                elif held is not None:
                    yield held
                    held = None
                if hot is not None and hot():  # asked here: what the consumer did with the command before may change it
                    q = get(reply[0]) or _plan(plans, plan_of, reply[0])
                    if q[0] or len(reply) == q[1] or (q[2] is not None and q[2](reply)):
                        run = [reply]
                        continue
                argv = tuple(reply)
                try:  # the canonical length: `*<argc>\r\n`, then `$<len>\r\n<bytes>\r\n` per argument
                    length = sum(map(cost.__getitem__, map(len, argv))) + head_bytes[len(argv)]
                except IndexError:  # an argument of 100,000 bytes or more, or 10,000 arguments or more
                    length = resp_size(argv)
                held = (pos, pos + length, argv)
                pos += length
            except hiredis.ProtocolError:
                break
            except (TypeError, AttributeError, ValueError):  # a nil, an integer, a nested array: the exact rules
                break
        if len(run) > 1 and self.canonical:  # the file's last command is never proven: all before it may be
            pos = yield from _run_before_last(run, pos, window)
        elif held is not None:
            return held[0]
        return pos

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


class _Window:
    """The last two chunks fed to hiredis, to look for a command's header at a file offset without reading again."""

    def __init__(self, fh: object, start: int) -> None:
        self.fh = fh
        self.cur, self.cur_base = b"", start
        self.prev, self.prev_base = b"", start

    def push(self, data: bytes, base: int) -> None:
        self.prev, self.prev_base, self.cur, self.cur_base = self.cur, self.cur_base, data, base

    def has_head(self, reply: list[Any], offset: int) -> bool:
        """Whether the command `reply` starts at `offset` with its canonical header (`*<argc>\\r\\n$`)."""
        argc = len(reply)
        head = _HEADS[argc] if argc < len(_HEADS) else b"*%d\r\n$" % argc
        at = offset - self.cur_base
        return (at >= 0 and self.cur.startswith(head, at)) or self.bytes_at(offset, len(head)) == head

    def bytes_at(self, offset: int, n: int) -> bytes:
        """The n bytes at a file offset, from the last two chunks when they hold them (else read from the file)."""
        cur, prev = self.cur, self.prev
        at = offset - self.cur_base
        if at >= 0 and at + n <= len(cur):
            return cur[at:at + n]
        at = offset - self.prev_base
        if at >= 0 and at + n <= len(prev) and offset + n <= self.cur_base:
            return prev[at:at + n]
        if at >= 0 and at < len(prev) and offset + n <= self.cur_base + len(cur):
            return (prev + cur[:n])[at:at + n]
        return os.pread(self.fh.fileno(), n, offset)  # type: ignore[attr-defined]


def _run_before_last(run: list[list[bytes]], pos: int, window: _Window) -> Generator[CommandRun, None, int]:
    """The run that ends the file, but its last command (proven by that command's header); where the exact parser
    goes on."""
    try:
        length = resp_total(run[:-1])
    except TypeError:  # an element hiredis reads but the server does not: the exact rules decide
        return pos
    if not window.has_head(run[-1], pos + length):
        return pos
    yield CommandRun(pos, pos + length, run[:-1])
    return pos + length


def _plan(plans: dict[bytes, PassPlan], plan_of: Callable[[bytes], PassPlan], name: bytes) -> PassPlan:
    plan = plans[name] = plan_of(name) if type(name) is bytes else _NEVER
    return plan


_NEVER: Final[PassPlan] = (False, -2, None)


def _no_plan(name: bytes) -> PassPlan:
    return _NEVER


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
