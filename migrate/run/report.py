"""The three renderings of a run's result (migrate.run.result): human text, JSON and markdown."""

from __future__ import annotations

from typing import Any

from migrate.render import dump_json, markdown_table, table_text
from migrate.run.result import CommandsReport, RelayReport, RunResult, SyncReport
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


SHARD_COLUMNS = ("source db", "slots", "read from", "copied", "seconds", "keys/s", "resumed at", "peak MiB")


def _shard_rows(result: RunResult) -> list[list[Any]]:
    return [[s.source_db, s.slots, s.node or "-", s.copied, f"{s.seconds:.2f}", f"{s.keys_per_second:,.0f}",
             s.resumed_at or "-", f"{s.peak_rss_kib / 1024:.0f}"] for s in result.shards]


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
    if result.shards:
        parts.append(table_text("Shards", SHARD_COLUMNS, _shard_rows(result)))
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
    if result.shards:
        parts += ["## Shards", "", markdown_table(SHARD_COLUMNS, _shard_rows(result)), ""]
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
    if result.sync is not None:
        lines += _sync_lines(result.sync)
    if result.commands is not None:
        lines += _commands_lines(result.commands)
    lines += list(result.notes)
    if result.verify is not None:
        lines.append(f"verify: {result.verify.verdict()}")
    return lines


def _sync_lines(sync: SyncReport) -> list[str]:
    stream = sync.stream
    lines = [f"sync ({sync.mode}): applied up to source offset {sync.applied_offset} (replication id {sync.replid}); "
             f"{stream.get('commands', 0)} source commands read, {stream.get('applied_commands', 0)} applied"]
    lines += [f"{e.kind} resync at offset {e.offset}: {e.reason}" for e in sync.resyncs]
    lines += [f"shard {s.slots} (primary {s.node}): applied up to offset {s.applied_offset}"
              + (f", cut at {s.cut_offset}" if s.cut_offset is not None else "")
              + f"; {s.full_resyncs} full, {s.partial_resyncs} partial resync(s)" for s in sync.shards]
    for what in ("skipped", "changed", "failed"):
        issues = stream.get(what) or {}
        if issues.get("count"):
            named = "; ".join(f"db {i['db']} {i['key']}: {i['reason']}" for i in issues["named"][:20])
            lines.append(f"stream commands {what}: {issues['count']} ({named})")
    lines += [f"this mode can miss: {miss}" for miss in sync.misses]
    if sync.relay is not None:
        lines += _relay_lines(sync.relay)
    cut = sync.cutover
    if cut is not None:
        pause = f"write pause {cut.pause_ms:.0f} ms" if cut.pause_ms is not None else "no write pause"
        at = (f"{len(cut.shard_cuts)} primaries paused at once, cut at their offsets" if cut.shard_cuts else
              f"cut at source offset {cut.cut_offset}")
        lines.append(f"cutover ({cut.mode}, attempt {cut.attempts}): {pause}, {at}, "
                     f"{cut.after_cutover_writes} write(s) after the cut point applied in the {cut.grace_seconds:g} s "
                     "grace period")
        lines += [f"key count target db {c.target_db}: source {c.source_keys}, target {c.target_keys} ({c.verdict})"
                  for c in cut.counts]
        lines.append(cut.instructions)
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


def _relay_lines(relay: RelayReport) -> list[str]:
    snap = relay.snapshot
    converted = ", ".join(f"{k}: {v}" for k, v in (snap.get("converted") or {}).items()) or "none"
    return [f"relay at {relay.address}: {relay.target_full_syncs} full sync(s) of the target, "
            f"{relay.target_partial_syncs} continued from the backlog; {relay.forwarded_bytes} stream bytes forwarded "
            "since the last full sync",
            f"last snapshot: {snap.get('keys_read', 0)} keys read, {snap.get('keys_written', 0)} written "
            f"({snap.get('passed_through', 0)} byte for byte; converted: {converted}), "
            f"{snap.get('input_bytes', 0)} -> {snap.get('output_bytes', 0)} RDB bytes",
            f"target {'made a primary (REPLICAOF NO ONE)' if relay.promoted else 'not promoted'}; masterauth "
            f"{relay.masterauth}"]
