"""The three renderings of a run's result (migrate.run.result): human text, JSON and markdown."""

from __future__ import annotations

from typing import Any

from migrate.render import dump_json, markdown_table, table_text
from migrate.run.result import CommandsReport, RunResult
from migrate.run.tally import KeyIssue
from migrate.verify.report import render as render_verify


def render(result: RunResult, fmt: str) -> str:
    if fmt == "json":
        return dump_json(result.to_json())
    text = _markdown(result) if fmt == "markdown" else _human(result)
    if result.verify is not None:
        text += "\n\n" + render_verify(result.verify, fmt)
    return text


def _title(result: RunResult) -> str:
    what = "dry run" if result.dry_run else ("plan" if not result.executed else "run")
    resumed = ", resumed" if result.resumed else ""
    return f"migrate {what} ({result.strategy}{resumed}): {result.source} -> {result.target}"


def _summary(result: RunResult) -> str:
    verb = "would copy" if result.dry_run else "copied"
    extra = "".join(f", {name} {n}" for name, n in (("empty", len(result.empty)), ("rebuilt", result.rebuilt)) if n)
    return (f"{verb} {result.copied} keys in {result.seconds:.2f} s ({result.keys_per_second:,.0f} keys/s); "
            f"expired mid-run {result.expired}, skipped {len(result.skipped)}, changed {len(result.changed)}, "
            f"busy {len(result.busy)}{extra}")


DB_COLUMNS = ("source db", "target db", "copied", "bytes", "expired", "skipped", "changed", "busy", "by type",
              "by path")
ISSUE_COLUMNS = ("db", "key", "reason")


def _db_rows(result: RunResult) -> list[list[Any]]:
    return [[d.source_db, d.target_db, d.copied, d.bytes, d.expired, len(d.skipped), len(d.changed), len(d.busy),
             _counts(d.by_type), _counts(d.by_route)] for d in result.dbs]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def _issue_sections(result: RunResult) -> list[tuple[str, tuple[KeyIssue, ...]]]:
    rebuilt = tuple(i for d in result.dbs for i in d.rebuilt)
    sections = (("Skipped keys", result.skipped), ("Changed keys", result.changed),
                ("Busy keys (exist on the target)", result.busy),
                ("Empty keys (skipped, as a server loading a file does)", result.empty),
                (f"Rewritten keys: the target refused the payload ({result.rebuilt}, first {len(rebuilt)} named)"
                 if result.rebuilt > len(rebuilt) else "Rewritten keys: the target refused the payload", rebuilt))
    return [(title, issues) for title, issues in sections if issues]


def _human(result: RunResult) -> str:
    parts = [_title(result)]
    parts += [f"  {line}" for line in result.plan]
    if result.executed or result.dry_run:
        parts.append(_summary(result))
    if result.dbs:
        parts.append(table_text("Databases", DB_COLUMNS, _db_rows(result)))
    for title, issues in _issue_sections(result):
        parts.append(table_text(title, ISSUE_COLUMNS, [[i.db, i.key, i.reason] for i in issues]))
    parts += _extras(result)
    return "\n".join(parts)


def _markdown(result: RunResult) -> str:
    parts = [f"# {_title(result)}", ""]
    if result.plan:
        parts += [f"- {line}" for line in result.plan] + [""]
    if result.executed or result.dry_run:
        parts += [_summary(result), ""]
    if result.dbs:
        parts += ["## Databases", "", markdown_table(DB_COLUMNS, _db_rows(result)), ""]
    for title, issues in _issue_sections(result):
        parts += [f"## {title}", "", markdown_table(ISSUE_COLUMNS, [[i.db, i.key, i.reason] for i in issues]), ""]
    extras = _extras(result)
    if extras:
        parts += ["## Notes", ""] + [f"- {line}" for line in extras]
    return "\n".join(parts).rstrip()


def _extras(result: RunResult) -> list[str]:
    lines = []
    if result.functions is not None:
        note = f" ({result.functions.note})" if result.functions.note else ""
        lines.append(f"function libraries: {result.functions.libraries}{note}")
    rep = result.replication
    if rep is not None:
        lines.append(f"replication: full sync {rep.sync_seconds:.2f} s, catch-up {rep.catch_up_seconds:.2f} s, "
                     f"lag {rep.lag_bytes} bytes (source offset {rep.source_offset}, target {rep.target_offset}), "
                     f"{rep.keys} keys on the target, {'promoted' if rep.promoted else 'still a replica'}")
    if result.commands is not None:
        lines += _commands_lines(result.commands)
    lines += list(result.notes)
    if result.verify is not None:
        lines.append(f"verify: {result.verify.verdict()}")
    return lines


def _commands_lines(c: CommandsReport) -> list[str]:
    def top(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]) or "none"

    lines = [f"AOF commands: {c.read:,} read from {len(c.files)} file(s), {c.applied:,} applied to the target, "
             f"{c.restored:,} RESTOREs loaded as keys; skipped {c.skipped:,}, changed {c.changed:,} (keys named "
             "above)", f"AOF commands rewritten as their effect: {top(c.rewritten)}; dropped (no data effect): "
             f"{top(c.dropped)}" + (f"; in databases not selected: {top(c.filtered)}" if c.filtered else "")]
    if c.truncation:
        lines.append(c.truncation)
    return lines
