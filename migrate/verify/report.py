"""The verification report: human text, JSON (a stable, documented schema) and markdown.

JSON schema `migrate.verify/1` (documented in docs/verify.md; fields are only ever added, never renamed):

    {
      "schema": "migrate.verify/1",
      "ok": bool,                         # parity: no divergent key, no count mismatch, no non-key divergence
      "level": "count" | "keys" | "full",
      "source": {"endpoint": str, "server": str}, "target": {...},   # endpoints are redacted
      "sample": {"mode": "all" | "count" | "percent", "requested": number | null, "seed": int,
                 "keys_in_scope": int, "keys_sampled": int, "fraction": number},
      "ttl_tolerance_ms": int,
      "rounds": {"requested": int, "run": int, "interval_s": number},
      "totals": {"source_keys", "target_keys", "compared", "target_scanned", "divergent",
                 "changed_during_verification", "not_compared", "unrechecked": int},
      "by_reason": {reason: int},         # divergent and not-compared keys per reason
      "databases": [{"source_db", "target_db", "source_keys", "target_keys", "keys_in_scope", "keys_sampled",
                     "compared", "target_scanned", "divergent", "changed_during_verification", "not_compared": int,
                     "count_match": bool, "extra_keys_check": "scan" | "count"}],
      "divergent_keys": [KEY], "divergent_keys_omitted": int,
      "changed_keys": [KEY], "changed_keys_omitted": int,
      "not_compared_keys": [KEY], "not_compared_keys_omitted": int,
      "nonkey": [{"kind": "function" | "acl_user" | "config", "name", "reason", "detail",
                  "severity": "divergence" | "warning"}],
      "notes": [str],
      "duration_s": number
    }
    KEY = {"source_db": int, "target_db": int, "key": str (printable, escaped), "key_base64": str,
           "reason": str, "detail": str}
"""

from __future__ import annotations

import base64
import json
from typing import Any

from migrate.render import display_key, markdown_table, table_text
from migrate.verify.model import DbSummary, KeyDiff, Listing, VerifyResult
from migrate.verify.options import Level

SCHEMA = "migrate.verify/1"
KEY_COLUMNS = ("db", "target db", "key", "reason", "detail")


def render(result: VerifyResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(result), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return render_markdown(result)
    return render_human(result)


# ---- JSON --------------------------------------------------------------------------------------------------------


def as_json(result: VerifyResult) -> dict[str, Any]:
    opts = result.options
    return {
        "schema": SCHEMA,
        "ok": result.ok,
        "level": result.level.value,
        "source": {"endpoint": result.source, "server": result.source_server},
        "target": {"endpoint": result.target, "server": result.target_server},
        "sample": {"mode": result.sample.mode, "requested": result.sample.requested, "seed": result.sample.seed,
                   "keys_in_scope": result.sample.in_scope, "keys_sampled": result.sample.sampled,
                   "fraction": round(result.sample.fraction, 6)},
        "ttl_tolerance_ms": opts.ttl_tolerance_ms,
        "rounds": {"requested": opts.rounds, "run": result.rounds_run, "interval_s": opts.interval},
        "totals": totals(result),
        "by_reason": dict(result.by_reason),
        "databases": [_db_json(db) for db in result.databases],
        **_listing_json("divergent_keys", result.divergent),
        **_listing_json("changed_keys", result.changed),
        **_listing_json("not_compared_keys", result.not_compared),
        "nonkey": [{"kind": d.kind, "name": d.name, "reason": d.reason, "detail": d.detail, "severity": d.severity}
                   for d in result.nonkey],
        "notes": list(notes(result)),
        "duration_s": result.duration_s,
    }


def totals(result: VerifyResult) -> dict[str, int]:
    dbs = result.databases
    return {"source_keys": sum(d.source_keys for d in dbs), "target_keys": sum(d.target_keys for d in dbs),
            "compared": sum(d.compared for d in dbs), "target_scanned": sum(d.target_scanned for d in dbs),
            "divergent": result.divergent.total, "changed_during_verification": result.changed.total,
            "not_compared": result.not_compared.total, "unrechecked": result.unrechecked}


def _db_json(db: DbSummary) -> dict[str, Any]:
    return {"source_db": db.source_db, "target_db": db.target_db, "source_keys": db.source_keys,
            "target_keys": db.target_keys, "keys_in_scope": db.in_scope, "keys_sampled": db.sampled,
            "compared": db.compared, "target_scanned": db.target_scanned, "divergent": db.divergent,
            "changed_during_verification": db.changed, "not_compared": db.not_compared,
            "count_match": db.count_match, "extra_keys_check": db.extra_check}


def _listing_json(name: str, listing: Listing) -> dict[str, Any]:
    return {name: [_key_json(k) for k in listing.keys], f"{name}_omitted": listing.omitted}


def _key_json(diff: KeyDiff) -> dict[str, Any]:
    return {"source_db": diff.source_db, "target_db": diff.target_db, "key": display_key(diff.key, limit=10_000),
            "key_base64": base64.b64encode(diff.key).decode("ascii"), "reason": diff.reason.value,
            "detail": diff.detail}


# ---- shared text pieces ------------------------------------------------------------------------------------------


def verdict_line(result: VerifyResult) -> str:
    if result.ok:
        extra = f"; {result.changed.total} keys changed during verification" if result.changed.total else ""
        return f"PARITY: the target matches the source at level {result.level.value}{extra}"
    parts = []
    if result.divergent.total:
        parts.append(f"{result.divergent.total} divergent keys")
    if result.count_mismatches:
        parts.append(f"{len(result.count_mismatches)} databases with different key counts")
    if result.nonkey_divergent:
        parts.append(f"{len(result.nonkey_divergent)} non-key differences")
    return "DIVERGENT: " + ", ".join(parts)


def sample_line(result: VerifyResult) -> str:
    s = result.sample
    if result.level is Level.COUNT:
        return "scope: whole databases (key counts only)"
    if s.mode == "all":
        return f"scope: all {s.in_scope:,} keys in scope (no sampling)"
    asked = f"--sample {int(s.requested or 0):,}" if s.mode == "count" else f"--sample-percent {s.requested}"
    return (f"scope: sampled {s.sampled:,} of {s.in_scope:,} keys in scope ({s.fraction:.2%}; {asked}, "
            f"seed {s.seed})")


def notes(result: VerifyResult) -> tuple[str, ...]:
    out = list(result.nonkey_notes)
    if result.unrechecked:
        out.append(f"{result.unrechecked} mismatching keys beyond the recheck limit "
                   f"({result.options.recheck_limit}) were counted as divergent without a recheck")
    counted = [d for d in result.databases if d.extra_check == "count"]
    if counted:
        dbs = ", ".join(f"db {d.target_db}" for d in counted)
        out.append(f"extra keys on the target ({dbs}): ruled out by counting, not scanned: neither server changed "
                   "during the pass, the source SCAN returned as many keys as the source holds, all were found on "
                   "the target and the target holds no more (--reverse-scan always scans anyway)")
    if result.level is not Level.FULL and result.level is not Level.COUNT:
        out.append("values were not compared (--level keys): existence, type and TTL only")
    return tuple(out)


def _db_rows(result: VerifyResult) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    if result.level is Level.COUNT:
        return (("db", "target db", "source keys", "target keys", "counts"),
                [(d.source_db, d.target_db, f"{d.source_keys:,}", f"{d.target_keys:,}",
                  "equal" if d.count_match else "DIFFER") for d in result.databases])
    return (("db", "target db", "source keys", "target keys", "compared", "target scanned", "divergent", "changed",
             "not compared"),
            [(d.source_db, d.target_db, f"{d.source_keys:,}", f"{d.target_keys:,}", f"{d.compared:,}",
              f"{d.target_scanned:,}" if d.extra_check == "scan" else "counted", d.divergent, d.changed,
              d.not_compared) for d in result.databases])


def _key_rows(listing: Listing) -> list[tuple[Any, ...]]:
    return [(k.source_db, k.target_db, display_key(k.key), k.reason.value, k.detail) for k in listing.keys]


def _nonkey_rows(result: VerifyResult) -> list[tuple[str, ...]]:
    return [(d.kind, d.name, d.reason, d.severity, d.detail) for d in result.nonkey]


SECTIONS = (("divergent", "Divergent keys"), ("changed", "Changed during verification (converged in a recheck)"),
            ("not_compared", "Not compared (counted, not divergent)"))


def _header(result: VerifyResult) -> list[str]:
    opts = result.options
    return [f"source: {result.source} ({result.source_server})",
            f"target: {result.target} ({result.target_server})",
            sample_line(result),
            f"TTL tolerance: {opts.ttl_tolerance_ms} ms; recheck rounds run: {result.rounds_run} of {opts.rounds} "
            f"(interval {opts.interval:g} s); took {result.duration_s:.2f} s"]


# ---- human -------------------------------------------------------------------------------------------------------


def render_human(result: VerifyResult) -> str:
    blocks = [f"migrate verify --level {result.level.value}", *_header(result), ""]
    columns, rows = _db_rows(result)
    blocks.append(table_text("Databases", columns, rows))
    for attr, title in SECTIONS:
        listing: Listing = getattr(result, attr)
        if listing.total:
            blocks += ["", table_text(f"{title}: {listing.total}", KEY_COLUMNS, _key_rows(listing))]
            if listing.omitted:
                blocks.append(f"... and {listing.omitted} more (raise --max-report-keys or use --format json)")
    if result.by_reason:
        blocks += ["", "by reason: " + ", ".join(f"{k}={v}" for k, v in result.by_reason.items())]
    if result.nonkey:
        blocks += ["", table_text("Non-key state", ("kind", "name", "reason", "severity", "detail"),
                                  _nonkey_rows(result))]
    blocks += [f"note: {n}" for n in notes(result)]
    blocks += ["", verdict_line(result)]
    return "\n".join(blocks)


# ---- markdown ----------------------------------------------------------------------------------------------------


def render_markdown(result: VerifyResult) -> str:
    lines = [f"## migrate verify --level {result.level.value}: {verdict_line(result)}", ""]
    lines += [f"- {line}" for line in _header(result)] + [""]
    columns, rows = _db_rows(result)
    lines += ["### Databases", "", markdown_table(columns, rows)]
    for attr, title in SECTIONS:
        listing: Listing = getattr(result, attr)
        if listing.total:
            lines += ["", f"### {title}: {listing.total}", "", markdown_table(KEY_COLUMNS, _key_rows(listing))]
            if listing.omitted:
                lines.append(f"\n... and {listing.omitted} more")
    if result.nonkey:
        lines += ["", "### Non-key state", "",
                  markdown_table(("kind", "name", "reason", "severity", "detail"), _nonkey_rows(result))]
    if notes(result):
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes(result)]
    return "\n".join(lines)
