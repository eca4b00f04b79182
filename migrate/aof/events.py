"""What the AOF reader yields, in load order (the RDB part's records come from migrate.rdb.records)."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.aof.discover import AofFileInfo
from migrate.rdb.records import Record


@dataclass(frozen=True, slots=True)
class FileStart:
    """A file of the load order begins (an empty file is followed directly by its FileEnd)."""

    file: AofFileInfo


@dataclass(frozen=True, slots=True)
class RdbPartEnd:
    """The RDB part of a file (an RDB-format base, or an RDB preamble) ended; commands follow from `end_offset`."""

    file: str
    end_offset: int  # the first byte after the RDB's EOF opcode and checksum
    magic: str  # "REDIS" / "VALKEY"
    rdb_version: int
    writer_product: str
    writer_version: str | None


@dataclass(frozen=True, slots=True)
class AofCommand:
    """One command the server replays. `db` is the database it runs in (SELECT itself: the one before it)."""

    argv: tuple[bytes, ...]
    file: str
    offset: int  # byte offset of its '*' in the file
    seq: int  # 1-based, running over every command of the input
    db: int
    in_transaction: bool  # part of a MULTI ... EXEC block (MULTI and EXEC included)

    @property
    def name(self) -> str:
        """The command name in lower case (argv[0]); sub-commands are argv[1]."""
        return self.argv[0].decode("latin-1").lower()


@dataclass(frozen=True, slots=True)
class FileEnd:
    file: str
    commands: int  # commands yielded from this file
    loaded_up_to: int  # the byte after the last thing loaded from this file (its size unless truncated)


@dataclass(frozen=True, slots=True)
class Truncation:
    """The end of the last file that the server does not load (aof-load-truncated yes, the default).

    reason "incomplete-command": the file ends inside a command (a crash or a full disk while writing);
    reason "open-transaction": the file ends inside MULTI ... without EXEC: the server reverts the whole block
    ("Revert incomplete MULTI/EXEC transaction"), so its `dropped_commands` complete commands (MULTI included) are
    never applied.
    When no command after a file's RDB part was applied, `loaded_up_to` is the end of the RDB part; the server
    itself then logs offset 0 and cuts the whole file, preamble included, after loading it (valid_up_to starts at 0
    in loadSingleAppendOnlyFile): a second start would find the data gone.
    """

    file: str
    loaded_up_to: int  # the byte after the last command the server applies (where the server cuts the file)
    size: int
    reason: str
    dropped_commands: int = 0

    @property
    def dropped_bytes(self) -> int:
        return self.size - self.loaded_up_to


AofEvent = FileStart | RdbPartEnd | AofCommand | FileEnd | Truncation | Record
