"""The multi-part AOF manifest of Redis 7.0+ and Valkey (`<appendfilename>.manifest` in `appenddirname`).

Format facts, from aofLoadManifestFromFile and aofInfoFormat in src/aof.c (redis 7.0.15 and unstable, valkey
unstable; the same in all three) and sdssplitargs in src/sds.c:
- one file per line, `file <name> seq <n> type <b|h|i>`, written in that order by the server; keys are matched
  case-insensitively, unknown keys are ignored (Redis 8 adds `startoffset`/`endoffset`), so a line needs at least 6
  tokens and an even number of them;
- tokens are split like redis-cli arguments: blanks separate, "double quotes" take \\n \\r \\t \\b \\a \\xHH and \\<c>
  escapes, 'single quotes' take \\' only, a closing quote must be followed by a blank or the end of the line; the
  server quotes a file name this way when it holds unusual bytes;
- lines starting with `#` are comments; lines are at most 1024 bytes and must end with a newline (the server reads
  with fgets and calls a line without one "too long"); an empty line is an error; an empty file is an error;
- `file` must be a bare name (no `/` or `\\`), `seq` a non-zero integer (atoll), `type` its first character;
- at most one base (`b`); history files (`h`) are ignored when loading; incremental files (`i`) must have strictly
  increasing seq and are loaded in the order listed, after the base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from migrate.aof.commands import BLANKS, c_integer
from migrate.aof.errors import AofFormatError

MANIFEST_SUFFIX: Final = ".manifest"
MAX_LINE: Final = 1024  # MANIFEST_MAX_LINE in src/aof.c
KIND_OF_TYPE: Final = {"b": "base", "h": "history", "i": "incr"}
_HEX: Final = b"0123456789abcdefABCDEF"
_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    name: str  # the file name (decoded with surrogateescape, so any byte survives)
    seq: int
    kind: str  # "base", "incr" or "history"
    line: int  # 1-based line number in the manifest


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    base: ManifestEntry | None
    incrs: tuple[ManifestEntry, ...]  # load order
    history: tuple[ManifestEntry, ...]  # listed, never loaded

    @property
    def loaded(self) -> tuple[ManifestEntry, ...]:
        """The files the server loads, in order: the base (if any), then every incremental file."""
        return ((self.base,) if self.base else ()) + self.incrs


class ManifestError(AofFormatError):
    def __init__(self, message: str, path: Path, line: int | None = None) -> None:
        where = f"{path}" + (f" line {line}" if line is not None else "")
        super().__init__(f"invalid AOF manifest {where}: {message}",
                         hint="the manifest is hand-edited or corrupt; a server would refuse to start with it")


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest as the server does; ManifestError (exit code 6) on anything the server refuses."""
    try:
        data = path.read_bytes()  # bounded: a manifest lists a few files (the server keeps it all in memory too)
    except OSError as exc:
        raise ManifestError(f"cannot read it: {exc.strerror}", path) from None
    if not data:
        raise ManifestError("the file is empty", path)
    base: ManifestEntry | None = None
    incrs: list[ManifestEntry] = []
    history: list[ManifestEntry] = []
    for number, raw in enumerate(_lines(data), start=1):
        entry = _entry(raw, path, number)
        if entry is None:
            continue
        if entry.kind == "base":
            if base is not None:
                raise ManifestError("a second base file", path, number)
            base = entry
        elif entry.kind == "history":
            history.append(entry)
        else:
            if incrs and entry.seq <= incrs[-1].seq:
                raise ManifestError("incremental file sequence numbers do not increase", path, number)
            incrs.append(entry)
    return Manifest(path, base, tuple(incrs), tuple(history))


def _lines(data: bytes) -> list[bytes]:
    """The lines as fgets(buf, MAX_LINE + 1) returns them: each with its newline, or a piece without one."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + MAX_LINE)
        stop = end + 1 if end >= 0 else min(pos + MAX_LINE, len(data))
        out.append(data[pos:stop])
        pos = stop
    return out


def _entry(raw: bytes, path: Path, number: int) -> ManifestEntry | None:
    if raw.startswith(b"#"):
        return None
    if not raw.endswith(b"\n"):
        raise ManifestError("a line longer than 1024 bytes, or a last line without a newline", path, number)
    line = raw.split(b"\0", 1)[0].strip(b" \t\r\n")  # C strings end at a NUL byte
    tokens = split_args(line) if line else None
    if tokens is None or len(tokens) < 6 or len(tokens) % 2:
        raise ManifestError("expected `file <name> seq <n> type <b|h|i>`", path, number)
    fields: dict[str, bytes] = {}
    for key, value in zip(tokens[::2], tokens[1::2], strict=True):
        fields[key.decode("latin-1").lower()] = value.split(b"\0", 1)[0]
    name, seq, kind = fields.get("file"), c_integer(fields.get("seq", b"")), fields.get("type", b"")[:1]
    if name is not None and (b"/" in name or b"\\" in name):
        raise ManifestError("a file name must be a bare name, not a path", path, number)
    if not name or not seq or not kind:
        raise ManifestError("a line needs a file name, a non-zero seq and a type", path, number)
    if kind.decode("latin-1") not in KIND_OF_TYPE:
        raise ManifestError(f"unknown AOF file type {kind.decode('latin-1')!r}", path, number)
    return ManifestEntry(name.decode("utf-8", "surrogateescape"), seq, KIND_OF_TYPE[kind.decode()], number)


def split_args(line: bytes) -> list[bytes] | None:
    """sdssplitargs: tokens of a line with the server's quoting rules, None when the quoting is unbalanced."""
    out: list[bytes] = []
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in BLANKS:
            pos += 1
        if pos >= end:
            return out
        token, pos = _token(line, pos)
        if token is None:
            return None
        out.append(token)


def _token(line: bytes, pos: int) -> tuple[bytes | None, int]:
    current = bytearray()
    quote = 0  # 0, or the quote character we are inside
    end = len(line)
    while True:
        c = line[pos] if pos < end else 0
        if quote == 0:
            if c in (0, 32, 10, 13, 9):  # the unquoted token ends at ' ', \n, \r, \t or the end
                return bytes(current), pos + (1 if c else 0)
            if c in (34, 39):
                quote = c
            else:
                current.append(c)
            pos += 1
            continue
        if c == 0:
            return None, pos  # unterminated quotes
        nxt = line[pos + 1] if pos + 1 < end else 0
        if quote == 34 and c == 92 and nxt == ord("x") and _hex_pair(line, pos + 2):
            current.append(int(line[pos + 2:pos + 4], 16))
            pos += 4
        elif quote == 34 and c == 92 and nxt:
            current.append(_ESCAPES.get(nxt, nxt))
            pos += 2
        elif quote == 39 and c == 92 and nxt == 39:
            current.append(39)
            pos += 2
        elif c == quote:
            if nxt and nxt not in BLANKS:
                return None, pos  # a closing quote must be followed by a blank or the end
            return bytes(current), pos + 1
        else:
            current.append(c)
            pos += 1


def _hex_pair(line: bytes, pos: int) -> bool:
    return pos + 2 <= len(line) and line[pos] in _HEX and line[pos + 1] in _HEX
