"""Render a PreflightResult: a human report (rich tables), JSON (stable schema, docs/preflight.md) or markdown."""

from __future__ import annotations

import json
from typing import Any

from migrate.preflight.findings import Finding, Severity
from migrate.preflight.profile import Census, ServerProfile
from migrate.preflight.result import PreflightResult
from migrate.preflight.strategy import TITLES
from migrate.render import markdown_table, table_text

Table = tuple[str, list[str], list[list[Any]]]


def render(result: PreflightResult, fmt: str = "human") -> str:
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return _markdown(result)
    return _human(result)


# ---- human ---------------------------------------------------------------------------------------------------------

def _human(result: PreflightResult) -> str:
    parts = [_headline(result)]
    parts += [table_text(title, cols, rows) for title, cols, rows in _tables(result)]
    details = [_detail(f) for f in result.findings if f.evidence or f.remediation]
    if details:
        parts.append("Details\n" + "\n".join(details))
    parts.append(_strategy_text(result))
    return "\n\n".join(parts)


def _detail(finding: Finding) -> str:
    lines = [f"  [{finding.severity.value}] {finding.code}"]
    if finding.evidence:
        lines.append(f"    evidence: {_short_evidence(finding, 400)}")
    if finding.remediation:
        lines.append(f"    fix: {finding.remediation}")
    return "\n".join(lines)


def _headline(result: PreflightResult) -> str:
    p = result.profile
    lines = [f"migrate preflight {result.tool_version} — {result.started_at} ({result.duration_s:.1f} s)",
             f"source: {_describe(p.source) if p.source else 'none (files only)'}",
             f"target: {_describe(p.target) if p.target else 'none'}"]
    if p.rdb_file is not None:
        lines.append(f"rdb file: {p.rdb_file.path} ({p.rdb_file.size} bytes"
                     + (f", RDB {p.rdb_file.rdb_version}" if p.rdb_file.rdb_version else "") + ")")
    if p.aof is not None:
        size = sum(f.size or 0 for f in p.aof.files)
        lines.append(f"aof: {p.aof.directory} ({p.aof.layout or 'unreadable'}, {len(p.aof.files)} files, {size} bytes, "
                     f"{sum(p.aof.commands.values())} commands)")
    if result.partial:
        lines += [f"PARTIAL REPORT: {reason}" for reason in p.partial]
    verdict = "NO BLOCKERS" if result.ok else f"{len(result.blockers)} BLOCKER(S)"
    counts = ", ".join(f"{result.count(s)} {s.value}" for s in Severity)
    lines.append(f"result: {verdict} ({counts}); exit code {0 if result.ok else 5}")
    return "\n".join(lines)


def _describe(server: ServerProfile) -> str:
    if server.identity is None:
        return f"{server.endpoint} (unreachable: {server.unreachable})"
    text = f"{server.endpoint} — {server.identity.describe()}"
    if server.identity.rdb_version_check:
        text += f", rdb-version-check {server.identity.rdb_version_check}"
    if server.assumed:
        text += " [assumed" + (f"; unreachable: {server.unreachable}]" if server.unreachable else "]")
    elif server.unreachable:
        text += f" [unreachable: {server.unreachable}]"
    return text + f", {server.total_keys} keys" if not server.assumed else text


def _tables(result: PreflightResult) -> list[Table]:
    tables: list[Table] = [("Findings", ["Severity", "Code", "Message"],
                            [[f.severity.value, f.code, f.message] for f in result.findings])]
    census = result.profile.key_census
    if census is not None:
        tables += [_census_table(census), _conversion_table(census, result)]
        if census.biggest:
            tables.append((f"Biggest keys (top {len(census.biggest)})", ["DB", "Key", "Type", "Bytes"],
                           [[k.db, k.key, k.type, k.payload or k.memory] for k in census.biggest]))
    tables.append(("Strategies", ["Option", "Possible", "Why not"],
                   [[TITLES[o.name] + (f": {o.mode}" if o.mode else ""), "yes" if o.possible else "no",
                     "; ".join(o.why_not)] for o in result.strategy.options]))
    return tables


def _census_table(census: Census) -> Table:
    scope = (f"full, {census.examined} keys" if census.complete else
             f"{census.mode}: {census.examined} of {census.total} keys, counts scaled")
    rows = []
    for db, dbc in sorted(census.dbs.items()):
        for name, stats in sorted(dbc.types.items()):
            encodings = ", ".join(f"{e} {n}" for e, n in sorted(stats.encodings.items()))
            rows.append([db, name, stats.estimated, stats.keys, stats.with_ttl, encodings, stats.memory])
    title = f"Key census ({scope}, {census.duration_s:.2f} s)"
    return title, ["DB", "Type", "Keys", "Examined", "With TTL", "Encodings", "Memory (examined)"], rows


def _conversion_table(census: Census, result: PreflightResult) -> Table:
    actions = ["as-is", "restamp", "rewrite", "unsupported", "unclassified"]
    rows = [[t, *(per.get(a, 0) for a in actions)] for t, per in sorted(census.conversion.by_type.items())]
    target = result.profile.target_identity
    title = f"Conversion to {target.label if target else 'the target'} (keys, estimated)"
    return title, ["Type", *actions], rows


def _strategy_text(result: PreflightResult) -> str:
    s = result.strategy
    volume = f"{s.keys} keys" + (f", ~{s.bytes / 1048576:.1f} MiB of data" if s.bytes else "")
    if s.used_memory:
        volume += f" (source used_memory {s.used_memory / 1048576:.1f} MiB)"
    return f"Recommended strategy: {s.title}\n  why: {s.reason}\n  volume: {volume}"


def _short_evidence(finding: Finding, limit: int = 240) -> str:
    text = "; ".join(f"{k}={_value(v)}" for k, v in finding.evidence.items() if v not in (None, (), {}, ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


# ---- markdown ------------------------------------------------------------------------------------------------------

def _markdown(result: PreflightResult) -> str:
    head = _headline(result).splitlines()
    parts = [f"# Preflight: {head[-1].removeprefix('result: ')}", "\n".join(f"- {line}" for line in head[:-1])]
    for title, cols, rows in _tables(result):
        parts.append(f"## {title}\n\n{markdown_table(cols, rows) if rows else '_none_'}")
    details = [f"- **{f.code}** ({f.severity.value}): " + "; ".join(
        x for x in (f"evidence: {_short_evidence(f, 400)}" if f.evidence else "",
                    f"fix: {f.remediation}" if f.remediation else "") if x) for f in result.findings
        if f.evidence or f.remediation]
    if details:
        parts.append("## Details\n\n" + "\n".join(details))
    parts.append("## Strategy\n\n" + "\n".join(f"- {line.strip()}" for line in _strategy_text(result).splitlines()))
    return "\n\n".join(parts)


