"""An AOF input, inspected offline as a server loads it (migrate.aof.summarize_aof): the files in load order, the
commands replayed per name, transactions, databases, a torn tail, and the census of its RDB part (base file or
preamble) classified for the target like an RDB file's."""

from __future__ import annotations

import time

from migrate.aof import AofFileSummary, AofFormatError, AofSummary, summarize_aof
from migrate.identity import ServerIdentity
from migrate.preflight.options import PreflightOptions
from migrate.preflight.profile import AofFacts, AofFile, AofTruncation
from migrate.preflight.rdbfile import empty_keys, file_census, writer_identity


def read_aof_dir(path: str, target: ServerIdentity | None = None,
                 options: PreflightOptions | None = None) -> AofFacts:
    """The input's facts; a missing, malformed or corrupt input gives facts with `error` set (one line)."""
    started = time.monotonic()
    try:
        summary = summarize_aof(path, top=options.biggest if options else 10)
    except AofFormatError as exc:
        return AofFacts(path, None, error=exc.message, hint=exc.hint)
    except OSError as exc:
        return AofFacts(path, None, error=f"cannot read: {exc.strerror or exc}")
    return _facts(path, summary, target, time.monotonic() - started)


def _facts(path: str, summary: AofSummary, target: ServerIdentity | None, duration: float) -> AofFacts:
    rdb = next((f.rdb for f in summary.files if f.rdb is not None), None)
    truncation = summary.truncation
    return AofFacts(
        directory=path, manifest=_name(summary.manifest), files=tuple(_file(f) for f in summary.files),
        commands=dict(summary.by_command), layout=summary.layout, history=summary.history,
        transactions=summary.transactions, databases=summary.databases,
        truncation=AofTruncation(truncation.file, truncation.loaded_up_to, truncation.size, truncation.reason,
                                 truncation.dropped_commands) if truncation else None,
        rdb_keys=summary.keys_in_rdb, census=file_census(rdb, target, duration) if rdb else None,
        writer=writer_identity(rdb) if rdb else None, empty=empty_keys(rdb) if rdb else None)


def _file(f: AofFileSummary) -> AofFile:
    return AofFile(f.name, f.kind, f.size, f.format, f.rdb.rdb_version if f.rdb else None, f.commands)


def _name(manifest: str | None) -> str | None:
    return manifest.rsplit("/", 1)[-1] if manifest else None
