"""What a server's counters say about changes to its data: every write, expiry, eviction and save moves one of them.

Read before and after a pass, they tell `verify` whether nothing changed (the counting proof of
migrate.verify.stillness) and `run` whether the source took writes during the copy (a point-in-time copy then
misses them: the report says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import redis

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import with_retries
from migrate.identity import keyspace_of

# INFO fields that every change to the dataset moves. rdb_changes_since_last_save counts writes but drops when a
# save completes: rdb_saves (7.0+) and rdb_last_save_time catch that. Expiries and evictions delete keys without a
# command; expired_subkeys (Redis 7.4+) and expired_fields (Valkey 9) are hash fields that expired.
WRITE_MARKS: tuple[tuple[str, str], ...] = (
    ("persistence", "rdb_changes_since_last_save"),
    ("persistence", "rdb_saves"),
    ("persistence", "rdb_last_save_time"),
    ("persistence", "rdb_bgsave_in_progress"),
    ("stats", "expired_keys"),
    ("stats", "evicted_keys"),
    ("stats", "expired_subkeys"),
    ("stats", "expired_fields"),
)


@dataclass(frozen=True)
class Marks:
    """One server's write counters and key counts per database at one moment."""

    counters: tuple[tuple[str, str], ...]
    keyspace: tuple[tuple[int, int], ...]  # (db, keys)

    def keys(self, db: int) -> int:
        return dict(self.keyspace).get(db, 0)

    def count(self, name: str) -> int | None:
        value = dict(self.counters).get(name)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    def changes_since(self, before: Marks) -> Activity:
        """What happened between two readings: writes (when no save reset the dirty counter), expiries, evictions."""
        return Activity(
            writes=_delta(before, self, "rdb_changes_since_last_save") if self.count("rdb_saves") == before.count(
                "rdb_saves") and self.count("rdb_last_save_time") == before.count("rdb_last_save_time") else None,
            expired=_delta(before, self, "expired_keys") or 0,
            evicted=_delta(before, self, "evicted_keys") or 0,
            unchanged=self == before)


@dataclass(frozen=True)
class Activity:
    """Changes a server went through between two readings of its counters."""

    writes: int | None  # commands that changed the dataset; None: a save reset the counter in between (unknown)
    expired: int
    evicted: int
    unchanged: bool

    def describe(self) -> str:
        writes = "an unknown number of writes (a save reset the counter)" if self.writes is None else \
            f"{self.writes:,} writes"
        return f"{writes}, {self.expired:,} keys expired, {self.evicted:,} evicted"


def _delta(before: Marks, after: Marks, name: str) -> int | None:
    a, b = before.count(name), after.count(name)
    return None if a is None or b is None else max(0, b - a)


def read_marks(client: redis.Redis, settings: ConnectionSettings, endpoint: Endpoint, role: str) -> Marks:
    sections: dict[str, dict[str, Any]] = {}
    for section in sorted({s for s, _ in WRITE_MARKS} | {"keyspace"}):
        sections[section] = with_retries(partial(client.info, section), settings, f"INFO {section}", endpoint, role)
    counters = tuple((name, str(sections[s][name])) for s, name in WRITE_MARKS if name in sections[s])
    return Marks(counters, tuple(sorted(keyspace_of(sections["keyspace"]).items())))


