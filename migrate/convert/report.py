"""The three renderings of a conversion's result: human text, JSON and markdown."""

from __future__ import annotations

from migrate.convert.result import ConvertResult
from migrate.rdb.transcode import NamedKeys
from migrate.render import dump_json, markdown_table, table_text

KEY_COLUMNS = ("db", "key", "type", "why")
SECTIONS = (("changed", "Changed keys (written with losses)"), ("skipped", "Skipped keys (not written)"),
            ("empty", "Empty keys (dropped, as a server loading the file drops them)"),
            ("expired", "Expired keys (dropped, as a primary loading the file drops them)"))


def render(result: ConvertResult, fmt: str) -> str:
    if fmt == "json":
        return dump_json(result.to_json())
    return _markdown(result) if fmt == "markdown" else _human(result)


def _summary(result: ConvertResult) -> list[str]:
    r = result.report
    converted = ", ".join(f"{k} {n}" for k, n in sorted(r.converted.items())) or "none"
    lines = [f"migrate convert: {result.input} ({r.input_magic} {r.input_version}) -> {result.output} "
             f"({r.target}, RDB {r.output_version}), --on-incompatible {r.policy}",
             f"{r.keys_written:,} of {r.keys_read:,} keys written in {r.seconds:.2f} s ({r.passed_through:,} copied "
             f"byte for byte; converted: {converted}); changed {r.changed.total}, skipped {r.skipped.total}, "
             f"empty {r.empty.total}, expired {r.expired.total}"]
    dropped = [f"{name} x{n}" for name, n in sorted(r.opcodes_dropped.items())] + list(r.aux_dropped)
    if dropped:
        lines.append("dropped (the target's loader would refuse them): " + ", ".join(dropped))
    if r.module_aux_dropped:
        lines.append("module data outside keys not written: " + ", ".join(r.module_aux_dropped))
    if r.functions_dropped:
        lines.append("function libraries not written: " + ", ".join(r.functions_dropped))
    return lines


def _rows(keys: NamedKeys) -> list[list[object]]:
    rows: list[list[object]] = [[k.db, k.key, k.type_name, k.detail] for k in keys.listed]
    if keys.unlisted:
        rows.append(["", f"... and {keys.unlisted:,} more", "", ""])
    return rows


def _human(result: ConvertResult) -> str:
    parts = _summary(result)
    for name, title in SECTIONS:
        keys: NamedKeys = getattr(result.report, name)
        if keys.total:
            parts.append(table_text(title, KEY_COLUMNS, _rows(keys)))
    return "\n".join(parts)


def _markdown(result: ConvertResult) -> str:
    head, *rest = _summary(result)
    parts = [f"# {head}", "", *rest, ""]
    for name, title in SECTIONS:
        keys: NamedKeys = getattr(result.report, name)
        if keys.total:
            parts += [f"## {title}", "", markdown_table(KEY_COLUMNS, _rows(keys)), ""]
    return "\n".join(parts).rstrip()
