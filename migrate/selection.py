"""Which keys a verb works on: databases (and their mapping), SCAN patterns, type filters, exclusions.

`run` and `verify` take the same options, so they are defined and parsed once here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from migrate.errors import ConfigError


@dataclass(frozen=True)
class KeySelection:
    match: str | None = None  # SCAN MATCH pattern
    types: tuple[str, ...] = ()  # logical types to include (empty: all)
    exclude: tuple[str, ...] = ()  # glob patterns of keys to leave out
    db_map: tuple[tuple[int, int], ...] = ()  # (source db, target db); empty: every used db to itself
    dbs: tuple[int, ...] = ()  # restrict to these source dbs (empty: every db that has keys)

    def target_db(self, source_db: int) -> int:
        return dict(self.db_map).get(source_db, source_db)

    def source_dbs(self, used: dict[int, int]) -> list[int]:
        """Source databases to work on, given INFO keyspace (db -> keys)."""
        chosen = set(self.dbs) | {s for s, _ in self.db_map} if (self.dbs or self.db_map) else set(used)
        return sorted(chosen)

    def wants_key(self, key: bytes) -> bool:
        if not self.exclude:
            return True
        text = key.decode("latin-1")
        return not any(fnmatch.fnmatchcase(text, pattern) for pattern in self.exclude)

    def wants_type(self, logical_type: str) -> bool:
        return not self.types or logical_type in self.types


def parse_db_map(spec: str | tuple[str, ...] | None) -> tuple[tuple[int, int], ...]:
    """'0:3,1:1' -> ((0, 3), (1, 1)); a source db may appear once."""
    if not spec:
        return ()
    items = spec if isinstance(spec, tuple) else tuple(p for p in spec.split(",") if p.strip())
    pairs: list[tuple[int, int]] = []
    for item in items:
        try:
            src, dst = (int(part) for part in item.split(":"))
        except ValueError:
            raise ConfigError(f"bad --db-map entry {item!r}", "use SRC:DST pairs, e.g. --db-map 0:3,1:1") from None
        if src < 0 or dst < 0:
            raise ConfigError(f"bad --db-map entry {item!r}: databases are >= 0")
        pairs.append((src, dst))
    if len({s for s, _ in pairs}) != len(pairs):
        raise ConfigError("--db-map names a source database twice")
    return tuple(pairs)


def scan_batches(client: redis.Redis, match: str | None = None, count: int = 1000,
                 cursor: int = 0) -> Iterator[tuple[int, list[bytes]]]:
    """SCAN from `cursor`, yielding (next cursor, keys). The cursor lets a caller checkpoint and resume."""
    while True:
        cursor, keys = client.scan(cursor=cursor, match=match, count=count)
        yield int(cursor), [k if isinstance(k, bytes) else k.encode() for k in keys]
        if int(cursor) == 0:
            return
