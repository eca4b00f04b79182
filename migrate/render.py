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
    """A key as a printable string, never raw bytes, and two keys never print alike: printable UTF-8 text as it is;
    anything else escaped (\\x00, \\n, \\u00e9...) with its backslashes doubled, so the key `\\x00` (four
    characters) prints as `\\\\x00` and a NUL byte as `\\x00`."""
    if isinstance(key, str):
        text = key
    else:
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            text = key.decode("latin-1")
            return _clip(text.encode("unicode_escape").decode("ascii"), limit)
    if not text.isprintable() or "\\" in text:
        text = text.encode("unicode_escape").decode("ascii")
    return _clip(text, limit)


def _clip(text: str, limit: int) -> str:
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
