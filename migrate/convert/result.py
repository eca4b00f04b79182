"""The result of `convert`: the transcoder's report (every converted, changed, skipped, empty and expired key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrate.rdb.transcode import TranscodeReport
from migrate.render import jsonable

SCHEMA = "migrate.convert/1"


@dataclass(frozen=True)
class ConvertResult:
    input: str
    output: str
    report: TranscodeReport

    @property
    def ok(self) -> bool:
        """Every key written as it was: nothing skipped or changed (empty and expired keys are dropped as a server
        loading the file would drop them)."""
        return not self.report.skipped.total and not self.report.changed.total

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"schema": SCHEMA, "ok": self.ok, "input": self.input, "output": self.output,
                                    **jsonable(self.report)}
        return document
