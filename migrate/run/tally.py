"""Running counters of one database's copy: mutable while the run goes, saved in the checkpoint, frozen in the report.

Every key read is accounted for exactly once: copied (by type and conversion path), expired (gone between the read and
the write, never resurrected), busy (already on the target, not overwritten), skipped (policy), empty (a collection
holding nothing: skipped as servers skip them when they load a file) or failed. Changed keys (copied with something
lost) and rebuilt keys (the target refused the payload, the value was rewritten with commands) are also copied keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

NAMED_REBUILT: Final = 1000  # rebuilt keys named per database (all of them are counted in by_route)


@dataclass(frozen=True)
class KeyIssue:
    """A key the report names: skipped, changed, busy or vanished, with why."""

    db: int
    key: str  # display form (render.display_key): printable, never raw bytes
    reason: str


@dataclass
class DbTally:
    source_db: int
    target_db: int
    copied: int = 0
    bytes: int = 0  # payload bytes read from the source (DUMP sizes; chunked keys: bytes sent)
    expired: int = 0  # vanished between SCAN and write (expired or deleted on the source)
    volatile: int = 0  # copied keys that carry an expiry (they may be gone from the target later, legitimately)
    by_type: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    skipped: list[KeyIssue] = field(default_factory=list)
    changed: list[KeyIssue] = field(default_factory=list)
    busy: list[KeyIssue] = field(default_factory=list)
    empty: list[KeyIssue] = field(default_factory=list)  # empty collections: skipped, as a server loading a file does
    rebuilt: list[KeyIssue] = field(default_factory=list)  # payload refused by the target, rewritten (first ones)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_db": self.source_db, "target_db": self.target_db, "copied": self.copied, "bytes": self.bytes,
            "expired": self.expired, "volatile": self.volatile, "by_type": dict(self.by_type),
            "by_route": dict(self.by_route),
            "skipped": [_issue(i) for i in self.skipped], "changed": [_issue(i) for i in self.changed],
            "busy": [_issue(i) for i in self.busy], "empty": [_issue(i) for i in self.empty],
            "rebuilt": [_issue(i) for i in self.rebuilt],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DbTally:
        return cls(
            source_db=int(data["source_db"]), target_db=int(data["target_db"]), copied=int(data["copied"]),
            bytes=int(data["bytes"]), expired=int(data["expired"]), volatile=int(data["volatile"]),
            by_type=Counter(data["by_type"]),
            by_route=Counter(data["by_route"]), skipped=[KeyIssue(**i) for i in data["skipped"]],
            changed=[KeyIssue(**i) for i in data["changed"]], busy=[KeyIssue(**i) for i in data["busy"]],
            empty=[KeyIssue(**i) for i in data.get("empty", ())],
            rebuilt=[KeyIssue(**i) for i in data.get("rebuilt", ())],
        )

    def add(self, other: DbTally) -> None:
        """Merge a batch's counters into the running ones."""
        self.copied += other.copied
        self.bytes += other.bytes
        self.expired += other.expired
        self.volatile += other.volatile
        self.by_type.update(other.by_type)
        self.by_route.update(other.by_route)
        self.skipped += other.skipped
        self.changed += other.changed
        self.busy += other.busy
        self.empty += other.empty
        self.rebuilt += other.rebuilt[:max(0, NAMED_REBUILT - len(self.rebuilt))]

    def fresh(self) -> DbTally:
        """An empty tally for the same databases (one per batch, merged once the batch is written)."""
        return DbTally(self.source_db, self.target_db)


    def name_rebuilt(self, issue: KeyIssue) -> None:
        if len(self.rebuilt) < NAMED_REBUILT:
            self.rebuilt.append(issue)


def _issue(issue: KeyIssue) -> dict[str, Any]:
    return {"db": issue.db, "key": issue.key, "reason": issue.reason}
