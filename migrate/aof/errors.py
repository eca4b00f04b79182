"""Errors of the AOF reader: every one names the file and, where known, the byte offset where reading failed."""

from __future__ import annotations

from migrate.errors import BadInputError

CHECK_HINT = "make a backup, then inspect it with redis-check-aof / valkey-check-aof (--fix truncates a damaged tail)"


class AofFormatError(BadInputError):
    """A missing, malformed or corrupt AOF input: a manifest, a file it names, or a command in a file."""

    def __init__(self, message: str, file: str | None = None, offset: int | None = None,
                 hint: str | None = None) -> None:
        where = ""
        if file is not None:
            where = f" in {file}" + (f" at offset {offset}" if offset is not None else "")
        super().__init__(f"{message}{where}", hint if hint is not None else CHECK_HINT)
        self.file = file
        self.offset = offset
