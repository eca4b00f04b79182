"""Progress on stderr: a rich bar with keys, bytes, keys/s and the ETA from the source's DBSIZE."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class KeysPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} keys/s" if speed else "- keys/s")


class BytesCopied(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(_size(float(task.fields.get("bytes", 0))))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


class RunProgress:
    """One bar for the whole run. Disabled: every method is a no-op (no terminal, --no-progress, tests)."""

    def __init__(self, enabled: bool, total: int | None, description: str = "copying") -> None:
        self.enabled = enabled
        self.bytes = 0
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
                TextColumn("keys"), BytesCopied(), KeysPerSecond(), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False, refresh_per_second=4)
            self._task = self._progress.add_task(description, total=total, bytes=0)
            self._progress.start()

    def advance(self, keys: int, nbytes: int) -> None:
        self.bytes += nbytes
        if self._progress is not None:
            self._progress.update(self._task, advance=keys, bytes=self.bytes)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
