"""Shared report rendering: rich tables as text, markdown tables, JSON with bytes and dataclasses, safe key names."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def display_key(key: bytes | str, limit: int = 200) -> str:
    """A key as a printable string: UTF-8 when it is printable text, else with \\x escapes (never raw bytes)."""
    if isinstance(key, str):
        text = key
    else:
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            text = key.decode("latin-1").encode("unicode_escape").decode("ascii")
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table_text(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 120) -> str:
    """A rich table rendered to plain text (no colour codes), for stdout or files."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))  # cells are text, never rich markup
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, color_system=None, highlight=False).print(table)
    return buffer.getvalue().rstrip()


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, bytes, sets and tuples to JSON-ready structures (bytes as display_key text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return display_key(value, limit=10_000)
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def dump_json(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, sort_keys=False, ensure_ascii=False)
