"""Errors of the RDB / DUMP engine: every one names the byte offset where reading failed."""

from __future__ import annotations

from migrate.errors import BadInputError


class RdbFormatError(BadInputError):
    """Malformed, truncated or unsupported RDB data or DUMP payload."""

    def __init__(self, message: str, offset: int | None = None, hint: str | None = None) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}", hint)
        self.offset = offset
