"""The verification report as text: human and markdown (the JSON form is VerifyResult.to_json)."""

from __future__ import annotations

import json
from typing import Any

from migrate.render import display_key, markdown_table, table_text
from migrate.verify.options import Level
from migrate.verify.result import Listing, VerifyResult

KEY_COLUMNS = ("db", "target db", "key", "reason", "detail")


def render(result: VerifyResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return render_markdown(result)
    return render_human(result)


# ---- shared text pieces ------------------------------------------------------------------------------------------


def sample_line(result: VerifyResult) -> str:
    s = result.sample
    if result.level is Level.COUNT:
        return "scope: whole databases (key counts only)"
    if s.mode == "all":
        return f"scope: all {s.in_scope:,} keys in scope (no sampling)"
    asked = f"--sample {int(s.requested or 0):,}" if s.mode == "count" else f"--sample-percent {s.requested}"
    return (f"scope: sampled {s.sampled:,} of {s.in_scope:,} keys in scope ({s.fraction:.2%}; {asked}, "
            f"seed {s.seed})")


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


def methods_line(result: VerifyResult) -> list[str]:
    """--level full: how many values each method compared (verify/routes.py)."""
    if not result.methods:
        return []
    return ["values compared by: " + ", ".join(f"{name} {count:,}" for name, count in result.methods.items())]


def _header(result: VerifyResult) -> list[str]:
    opts = result.options
    return [f"source: {result.source} ({result.source_server})",
            f"target: {result.target} ({result.target_server})",
            sample_line(result),
            *methods_line(result),
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
    blocks += [f"note: {n}" for n in result.notes()]
    blocks += ["", result.verdict()]
    return "\n".join(blocks)


# ---- markdown ----------------------------------------------------------------------------------------------------


def render_markdown(result: VerifyResult) -> str:
    lines = [f"## migrate verify --level {result.level.value}: {result.verdict()}", ""]
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
    if result.notes():
        lines += ["", "### Notes", ""] + [f"- {n}" for n in result.notes()]
    return "\n".join(lines)
