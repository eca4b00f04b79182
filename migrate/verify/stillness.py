"""When the reverse pass can be skipped: a counting proof that the target holds no key the source lacks.

The reverse pass SCANs every target key and asks the source about it, to find keys that exist only on the target.
It costs a full SCAN of the target plus an EXISTS of every key on the source. When neither server changed while
the forward pass ran, counting proves the same thing:
- the source did not change, so its SCAN returned each of its keys at least once (SCAN's guarantee); returning
  exactly as many keys as the source holds means each key exactly once;
- every one of those keys was seen on the target (none missing, none gone from both sides);
- the target did not change either and holds exactly that many keys: the keys seen are all it holds.
"Did not change" is read from counters that every write, expiry, eviction and save moves (data below, read before
the first SCAN and after the last comparison). Anything else runs the reverse pass: live traffic, a save that
completed, a key that expired, filters or sampling (the scan did not enumerate everything), several source databases
merged into one target database (their keys may overlap), `--reverse-scan always`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import redis

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import with_retries
from migrate.verify.plan import Keyspace, key_count, keyspace_of

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


def read_marks(client: redis.Redis, settings: ConnectionSettings, endpoint: Endpoint, role: str) -> Marks:
    sections: dict[str, dict[str, Any]] = {}
    for section in sorted({s for s, _ in WRITE_MARKS} | {"keyspace"}):
        sections[section] = with_retries(partial(client.info, section), settings, f"INFO {section}", endpoint, role)
    counters = tuple((name, str(sections[s][name])) for s, name in WRITE_MARKS if name in sections[s])
    keyspace: Keyspace = keyspace_of(sections["keyspace"])
    return Marks(counters, tuple(sorted((db, key_count(keyspace, db)) for db in keyspace)))


@dataclass(frozen=True)
class Stillness:
    """Both servers' marks before the forward pass and after it."""

    source_before: Marks
    target_before: Marks
    source_after: Marks
    target_after: Marks

    @property
    def unchanged(self) -> bool:
        return self.source_before == self.source_after and self.target_before == self.target_after

    def proves_no_extra(self, source_db: int, target_db: int, scanned: int, seen_on_target: int) -> bool:
        """Whether the counts prove that target_db holds no key that source_db lacks (see the module docstring).
        `scanned`: keys the forward SCAN returned (no filter, no sampling); `seen_on_target`: how many of them the
        comparison found on the target."""
        held = self.source_after.keys(source_db)
        return (self.unchanged and scanned == held and seen_on_target == scanned
                and self.target_after.keys(target_db) == held)
