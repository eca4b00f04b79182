"""What an AOF input holds, in one streaming pass (for preflight): files, commands by name, databases, transactions,
a torn tail, and the key census of each RDB part (migrate.rdb.summary)."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

from migrate.aof.discover import AofFileInfo, AofInput, open_aof_input
from migrate.aof.errors import AofFormatError
from migrate.aof.events import AofCommand, Truncation
from migrate.aof.reader import AofReader
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.summary import RdbSummary, summarize


@dataclass(frozen=True)
class AofFileSummary:
    name: str
    kind: str  # "base", "incr", "single"
    format: str  # "rdb", "aof", "empty"
    size: int
    seq: int | None
    commands: int
    rdb: RdbSummary | None  # the census of the file's RDB part (RDB base or preamble)
    rdb_end_offset: int | None  # where its commands start


@dataclass(frozen=True)
class AofSummary:
    source: str
    layout: str  # "multi-part" or "single-file"
    manifest: str | None
    files: tuple[AofFileSummary, ...]  # load order
    history: tuple[str, ...]  # files the manifest lists as history: never loaded
    commands: int  # commands the server replays (a reverted transaction's are not counted)
    by_command: dict[str, int]  # lower-case command name -> count, most frequent first
    databases: tuple[int, ...]  # databases the commands run in
    transactions: int  # MULTI ... EXEC blocks replayed
    truncation: Truncation | None  # the torn tail a server drops, if any

    @property
    def rdb_parts(self) -> tuple[RdbSummary, ...]:
        return tuple(f.rdb for f in self.files if f.rdb is not None)

    @property
    def keys_in_rdb(self) -> int:
        return sum(r.keys for r in self.rdb_parts)


def summarize_aof(source: str | os.PathLike[str] | AofInput, *, now_ms: int | None = None, top: int = 10,
                  ) -> AofSummary:
    """Summarise an AOF input; AofFormatError (exit code 6) when a server would refuse to load it."""
    aof = source if isinstance(source, AofInput) else open_aof_input(source)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    reader = AofReader(aof, capture_payload=False)
    names: Counter[str] = Counter()
    databases: set[int] = set()
    transactions = 0
    files = []
    for index, info in enumerate(aof.files):
        rdb, start = _rdb_census(info, now, top) if info.format == "rdb" else (None, 0)
        commands = 0
        if info.format != "empty":
            for event in reader.command_part(info, start, last=index == len(aof.files) - 1):
                if isinstance(event, AofCommand):
                    commands += 1
                    names[event.name] += 1
                    databases.add(event.db)
                    transactions += event.in_transaction and event.name == "multi"
        files.append(AofFileSummary(info.name, info.kind, info.format, info.size, info.seq, commands, rdb,
                                    start if rdb else None))
    return AofSummary(str(aof.path), aof.layout, str(aof.manifest) if aof.manifest else None, tuple(files),
                      tuple(h.name for h in aof.history), sum(names.values()), dict(names.most_common()),
                      tuple(sorted(databases)), transactions, reader.truncation)


def _rdb_census(info: AofFileInfo, now_ms: int, top: int) -> tuple[RdbSummary, int]:
    try:
        with open(info.path, "rb", buffering=0) as fh:
            census = summarize(fh, now_ms=now_ms, top=top)
    except RdbFormatError as exc:
        raise AofFormatError(f"corrupt RDB part: {exc.message}", info.name,
                             hint="a server refuses to load it: restore the file from a backup") from None
    return census, census.bytes_read
