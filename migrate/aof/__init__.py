"""AOF input: discover what a path holds, stream it in load order as the server replays it, summarise it.

    from migrate.aof import AofReader, summarize_aof
    for event in AofReader(path): ...        # FileStart, RDB records, RdbPartEnd, AofCommand, FileEnd, Truncation
    summary = summarize_aof(path)             # for preflight

Modules: discover (inputs and file formats), manifest (the multi-part manifest), commands (the command parser),
reader (load order, transactions, torn tails), events, summary, errors.
"""

from __future__ import annotations

from migrate.aof.discover import AofFileInfo, AofInput, open_aof_input
from migrate.aof.errors import AofFormatError
from migrate.aof.events import AofCommand, AofEvent, FileEnd, FileStart, RdbPartEnd, Truncation
from migrate.aof.manifest import Manifest, ManifestEntry, ManifestError, read_manifest
from migrate.aof.reader import AofReader, read_aof
from migrate.aof.summary import AofFileSummary, AofSummary, summarize_aof

__all__ = [
    "AofCommand", "AofEvent", "AofFileInfo", "AofFileSummary", "AofFormatError", "AofInput", "AofReader",
    "AofSummary", "FileEnd", "FileStart", "Manifest", "ManifestEntry", "ManifestError", "RdbPartEnd",
    "Truncation", "open_aof_input", "read_aof", "read_manifest", "summarize_aof",
]
