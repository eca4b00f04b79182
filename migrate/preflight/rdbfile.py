"""An RDB file, inspected offline with the RDB engine (migrate.rdb.summary): format version, writer, and the same
census as the live scan, its keys classified for the target by type byte."""

from __future__ import annotations

import os
import time
from collections import Counter

from migrate.errors import BadInputError
from migrate.facts.releases import parse_version
from migrate.identity import ServerIdentity
from migrate.preflight.classify import classify_type_byte
from migrate.preflight.options import PreflightOptions
from migrate.preflight.profile import (
    BigKey,
    Census,
    Conversion,
    DbCensus,
    EmptyKeys,
    KeyGroup,
    RdbFileFacts,
    TypeStats,
)
from migrate.rdb.summary import RdbSummary, summarize
from migrate.render import display_key


def read_rdb_file(path: str, target: ServerIdentity | None, options: PreflightOptions) -> RdbFileFacts:
    """The file's facts; an unreadable file gives facts with `error` set (the caller decides if that is fatal)."""
    if not os.path.isfile(path):
        raise BadInputError(f"RDB file not found: {path}", "give the path of an existing .rdb file")
    size = os.path.getsize(path)
    started = time.monotonic()
    try:
        summary = summarize(path, top=options.biggest, example_keys=options.examples)
    except BadInputError as exc:  # RdbFormatError: names the offset
        return RdbFileFacts(path, size, error=exc.message)
    except OSError as exc:
        return RdbFileFacts(path, size, error=f"cannot read: {exc.strerror or exc}")
    census = file_census(summary, target, time.monotonic() - started)
    return RdbFileFacts(path, size, summary.rdb_version, writer_identity(summary), census, summary.functions,
                        empty=empty_keys(summary))


def empty_keys(summary: RdbSummary) -> EmptyKeys | None:
    empty = summary.empty
    if empty is None or not empty.keys:
        return None
    return EmptyKeys(empty.skipped, empty.refused,
                     tuple(f"db {db} {display_key(key)} ({name})" for db, key, name in empty.examples))


def writer_identity(summary: RdbSummary) -> ServerIdentity | None:
    if not summary.writer_version:
        return None
    version = parse_version(summary.writer_version)
    # The file's own version, not the table's: what matters is what this file needs from a reader.
    return ServerIdentity(summary.writer_product, version, summary.writer_version, summary.rdb_version,
                          "standalone", "master", None)


def file_census(summary: RdbSummary, target: ServerIdentity | None, duration: float) -> Census:
    dbs = {db.db: DbCensus(db.keys, db.keys, {t: TypeStats(n, n) for t, n in sorted(db.by_type.items())})
           for db in summary.dbs}
    modules = {m.name: KeyGroup(m.keys, m.keys, tuple(display_key(k) for k in m.example_keys))
               for m in summary.modules if m.keys}
    return Census(
        mode="rdb-file",
        dbs=dbs,
        biggest=tuple(BigKey(k.db, display_key(k.key), k.logical, k.size, k.size) for k in summary.biggest),
        field_ttl=KeyGroup(summary.expiry.field_ttl_hashes, summary.expiry.field_ttl_hashes),
        module_keys=modules,
        with_ttl=summary.expiry.keys_with_expiry,
        conversion=_conversion(summary, target),
        duration_s=round(duration, 3),
    )


def _conversion(summary: RdbSummary, target: ServerIdentity | None) -> Conversion:
    if target is None:
        return Conversion(by_type={e.logical: {"unclassified": e.keys} for e in summary.encodings})
    by_type: dict[str, Counter[str]] = {}
    reasons: dict[str, list[str]] = {}
    losses: dict[str, int] = {}
    type_bytes: dict[str, dict[int, int]] = {}
    for enc in summary.encodings:
        verdict = classify_type_byte(enc.type_byte, summary.rdb_version, target)
        by_type.setdefault(enc.logical, Counter())[verdict.action] += enc.keys
        type_bytes.setdefault(enc.logical, {})[enc.type_byte] = enc.keys
        if verdict.reason not in reasons.setdefault(verdict.action, []):
            reasons[verdict.action].append(verdict.reason)
        for loss in verdict.losses:
            losses[loss] = losses.get(loss, 0) + enc.keys
    return Conversion(by_type={t: dict(c) for t, c in by_type.items()},
                      reasons={a: tuple(r) for a, r in reasons.items()},
                      losses={name: KeyGroup(n, n) for name, n in losses.items()},
                      type_bytes=type_bytes, dumped=0, not_dumped=0)
