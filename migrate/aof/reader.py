"""One streaming iterator over everything an AOF input holds, in the order the server loads it.

    for event in AofReader("/var/lib/redis/appendonlydir"):
        ...   # FileStart, RDB records (KeyRecord, SelectDb, AuxField, ...), RdbPartEnd, AofCommand, FileEnd, Truncation

Load semantics, from loadAppendOnlyFiles / loadSingleAppendOnlyFile in src/aof.c (redis 7.0.15 and unstable,
valkey unstable) and loadAppendOnlyFile (redis 6.0.16):
- the base file, then each incremental file; empty files load nothing; a file starting with an RDB magic is an RDB
  part followed by commands (an RDB base holds none in practice, an old-style AOF with a preamble does);
- each file is replayed by a new client: database 0 and no open transaction at the start of every file;
- commands between MULTI and EXEC are queued and run at EXEC; only EXEC ends a block (a queued MULTI or DISCARD does
  not); a file that ends inside a block has the whole block reverted;
- a file that ends inside a command, or inside a block, is loaded up to the last applied command when it is the last
  file of the load order (aof-load-truncated yes, the default: the server logs a warning, truncates the file there
  and starts); in any other file it is fatal ("the truncated file is not the last file");
- a format error anywhere, or a corrupt RDB part, is fatal.
Memory: one read chunk plus the command being parsed; a transaction's commands are held until its EXEC is seen, up
to `max_transaction_bytes`, beyond which the reader looks ahead in the file for the EXEC instead of holding more.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Final, cast

from migrate.aof.commands import DEFAULT_CHUNK, CommandRun, CommandStream, RawCommand, Runs
from migrate.aof.discover import AofFileInfo, AofInput, open_aof_input
from migrate.aof.errors import AofFormatError
from migrate.aof.events import AofCommand, AofEvent, FileEnd, FileStart, RdbPartEnd, Truncation
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader

DEFAULT_MAX_TRANSACTION: Final = 64 << 20


class AofReader:
    """Iterate the events of an AOF input (a directory, a manifest or a single file; see migrate.aof.discover).

    After iteration, `truncation` says what the server would not load (None when the input is complete), and
    `commands` counts the commands yielded.
    """

    def __init__(self, source: str | os.PathLike[str] | AofInput, *, capture_payload: bool = True,
                 chunk_size: int = DEFAULT_CHUNK, max_transaction_bytes: int = DEFAULT_MAX_TRANSACTION) -> None:
        self.input = source if isinstance(source, AofInput) else open_aof_input(source)
        self.capture_payload = capture_payload
        self.chunk_size = chunk_size
        self.max_transaction_bytes = max_transaction_bytes
        self.truncation: Truncation | None = None
        self.commands = 0
        self.canonical: dict[str, bool] = {}  # per file read: canonical RESP (see CommandStream.canonical)

    def __iter__(self) -> Iterator[AofEvent]:
        return self.events()

    def events(self) -> Iterator[AofEvent]:
        files = self.input.files
        for index, info in enumerate(files):
            yield FileStart(info)
            start = 0
            if info.format == "rdb":
                start = yield from self.rdb_part(info)
            if info.format == "empty":
                yield FileEnd(info.name, 0, 0)
                continue
            yield from cast(Iterator[AofEvent], self.command_part(info, start, last=index == len(files) - 1))

    def commands_only(self) -> Iterator[AofCommand]:
        """Just the commands (the RDB parts are read and skipped)."""
        for event in self.events():
            if isinstance(event, AofCommand):
                yield event

    # -- the RDB part -------------------------------------------------------------------------------------------

    def rdb_part(self, info: AofFileInfo) -> Generator[AofEvent, None, int]:
        """Yield the RDB records of a file that starts with an RDB magic; return the offset where it ends."""
        try:
            with open(info.path, "rb", buffering=0) as fh, RdbReader(
                    fh, capture_payload=self.capture_payload, chunk_size=self.chunk_size) as rdb:
                yield from rdb.records()
                end = rdb.bytes_read
                product, version = rdb.writer
                yield RdbPartEnd(info.name, end, rdb.magic, rdb.rdb_version, product, version)
                return end
        except RdbFormatError as exc:
            raise AofFormatError(f"corrupt RDB part: {exc.message}", info.name,
                                 hint="a server refuses to load it: restore the file from a backup") from None
        except OSError as exc:
            raise AofFormatError(f"cannot read: {exc.strerror}", info.name) from None

    # -- the command part ---------------------------------------------------------------------------------------

    def command_part(self, info: AofFileInfo, start: int, last: bool, *, raw: bool = False,
                     runs: Runs | None = None) -> Iterator[AofEvent | RawCommand | CommandRun]:
        """The events of a file's command part; `raw`: commands as the (offset, end, argv) tuples the file parser
        gives (same order and semantics, no AofCommand built: for passes that only look at argv); `runs`: also
        CommandRuns of commands that pass (outside a transaction only: see CommandStream.gathered)."""
        state = _FileState(info, start)
        state.raw = raw
        stream = CommandStream(info.path, info.name, start, self.chunk_size)
        alone = True  # outside any transaction (the common case, handled inline)
        if runs is None:
            items: Iterator[RawCommand | CommandRun] = iter(stream)
        else:
            plan_of, hot = runs
            items = stream.gathered((plan_of, lambda: alone and hot()))
        for command in items:
            if isinstance(command, CommandRun):  # runs hold no MULTI, EXEC nor SELECT (state commands never pass)
                n = len(command.commands)
                self.commands += n
                state.yielded += n
                state.loaded_up_to = command.end
                yield command
                continue
            argv = command[2]
            name = argv[0]
            if alone and not (len(name) == 5 and name.lower() == b"multi"):
                self.commands += 1
                state.yielded += 1
                yield command if raw else AofCommand(argv, info.name, command[0], self.commands, state.db, False)
                if len(name) == 6 and len(argv) > 1 and name.lower() == b"select":
                    state.db = _select_target(argv[1], state.db)
                state.loaded_up_to = command[1]
                continue
            yield from self._step(state, command)
            alone = state.pending is None and not state.streaming and not state.reverting
        self.canonical[info.name] = stream.canonical
        if state.pending is not None or state.reverting:
            self._end_truncated(state, "open-transaction", last)
        elif stream.truncated_at is not None:
            self._end_truncated(state, "incomplete-command", last)
        if self.truncation is not None and self.truncation.file == info.name:
            yield self.truncation
        yield FileEnd(info.name, state.yielded, state.loaded_up_to)

    def _step(self, state: _FileState, raw: RawCommand) -> Iterator[AofCommand | RawCommand]:
        offset, end, argv = raw
        is_exec = argv[0].lower() == b"exec"
        if state.reverting:  # inside a block proven never to end: counted, never yielded
            state.dropped += 1
        elif state.streaming:  # inside a big block proven to end with EXEC
            yield self._event(state, raw, True)
            if is_exec:
                state.streaming, state.loaded_up_to = False, end
        elif state.pending is not None:
            state.pending.append(raw)
            state.pending_bytes += end - offset
            if is_exec:
                yield from self._flush(state)
                state.loaded_up_to = end
            elif state.pending_bytes > self.max_transaction_bytes:
                yield from self._big_transaction(state, end)
        elif argv[0].lower() == b"multi":
            state.pending, state.pending_bytes = [raw], end - offset
        else:
            yield self._event(state, raw, False)
            state.loaded_up_to = end

    def _big_transaction(self, state: _FileState, resume: int) -> Iterator[AofCommand | RawCommand]:
        if _exec_follows(state.info, resume, self.chunk_size):
            yield from self._flush(state)
            state.streaming = True
        else:
            state.dropped = len(state.pending or ())
            state.pending, state.reverting = None, True

    def _flush(self, state: _FileState) -> Iterator[AofCommand | RawCommand]:
        for raw in state.pending or ():
            yield self._event(state, raw, True)
        state.pending = None

    def _event(self, state: _FileState, raw: RawCommand, in_transaction: bool) -> AofCommand | RawCommand:
        offset, _, argv = raw
        self.commands += 1
        state.yielded += 1
        event = raw if state.raw else AofCommand(argv, state.info.name, offset, self.commands, state.db,
                                                 in_transaction)
        if len(argv) > 1 and len(argv[0]) == 6 and argv[0].lower() == b"select":
            state.db = _select_target(argv[1], state.db)
        return event

    def _end_truncated(self, state: _FileState, reason: str, last: bool) -> None:
        info = state.info
        if state.pending is not None:
            state.dropped = len(state.pending)
        loaded = state.loaded_up_to  # the end of the last applied command: the server's valid_up_to
        if not last:
            what = "ends inside a MULTI/EXEC block" if reason == "open-transaction" else "ends inside a command"
            raise AofFormatError(f"the AOF file {what}, and it is not the last file of the load order "
                                 "(a server refuses to load it)", info.name, loaded,
                                 hint="restore the file from a backup; only the last file may have a torn tail")
        self.truncation = Truncation(info.name, loaded, info.size, reason, state.dropped)


class _FileState:
    """Per-file replay state: a new client per file (database 0, no transaction)."""

    def __init__(self, info: AofFileInfo, start: int) -> None:
        self.info = info
        self.db = 0
        self.loaded_up_to = start
        self.yielded = 0
        self.pending: list[RawCommand] | None = None  # the commands of a MULTI block whose EXEC is not seen yet
        self.pending_bytes = 0
        self.streaming = False
        self.reverting = False
        self.dropped = 0
        self.raw = False  # yield the parser's tuples, not AofCommand events


def _exec_follows(info: AofFileInfo, offset: int, chunk_size: int) -> bool:
    """Whether an EXEC comes before the end of the file (a look-ahead that holds nothing)."""
    return any(argv[0].lower() == b"exec" for _, _, argv in CommandStream(info.path, info.name, offset, chunk_size))


def _select_target(arg: bytes, current: int) -> int:
    """The database a SELECT switches to; an invalid one fails on the server and leaves the client where it was."""
    text = arg.decode("latin-1")
    if text.isdigit() and (text == "0" or not text.startswith("0")):
        return int(text)
    return current


def read_aof(source: str | os.PathLike[str] | AofInput, **options: object) -> Iterator[AofEvent]:
    """Every event of an AOF input (see AofReader for the options)."""
    return AofReader(source, **options).events()  # type: ignore[arg-type]
