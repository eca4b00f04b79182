"""Which keys a verb works on: databases (and their mapping), SCAN patterns, type filters, exclusions.

`run` and `verify` take the same options, so they are defined and parsed once here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from migrate.errors import ConfigError
from migrate.facts.types import LOGICAL_TYPES
from migrate.settings import option


def parse_db_map(spec: str | tuple[str, ...] | None) -> tuple[tuple[int, int], ...]:
    """'0:3,1:1' or ('0:3', '1:1') -> ((0, 3), (1, 1)); a source db may appear once. ValueError when malformed."""
    if not spec:
        return ()
    items = spec if isinstance(spec, tuple) else tuple(p for p in spec.split(",") if p.strip())
    pairs: list[tuple[int, int]] = []
    for item in items:
        try:
            src, dst = (int(part) for part in item.split(":"))
        except ValueError:
            raise ValueError(f"bad entry {item!r}: use SRC:DST pairs, e.g. --db-map 0:3,1:1") from None
        if src < 0 or dst < 0:
            raise ValueError(f"bad entry {item!r}: databases are numbered from 0")
        pairs.append((src, dst))
    if len({s for s, _ in pairs}) != len(pairs):
        raise ValueError("a source database is named twice")
    return tuple(pairs)


def parse_types(items: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [t for t in items if t not in LOGICAL_TYPES]
    if unknown:
        raise ValueError(f"unknown type {', '.join(unknown)} (use {', '.join(LOGICAL_TYPES)})")
    return items


def parse_dbs(items: tuple[str, ...]) -> tuple[int, ...]:
    dbs = tuple(int(item) for item in items)
    if any(db < 0 for db in dbs):
        raise ValueError("databases are numbered from 0")
    return dbs


@dataclass(frozen=True)
class KeySelection:
    match: str | None = option(None, "Only keys matching this SCAN pattern.", metavar="PATTERN")
    types: tuple[str, ...] = option((), f"Only keys of this type (repeatable): {', '.join(LOGICAL_TYPES)}.",
                                    flag="--type", metavar="TYPE", multiple=True, parse=parse_types)
    exclude: tuple[str, ...] = option((), "Leave out keys matching this glob (repeatable).", metavar="GLOB",
                                      multiple=True)
    # (source db, target db); empty: every used db to itself
    db_map: tuple[tuple[int, int], ...] = option((), "Map source db SRC to target db DST (repeatable, or SRC:DST,...).",
                                                 metavar="SRC:DST", multiple=True, parse=parse_db_map)
    dbs: tuple[int, ...] = option((), "Only this source database (repeatable).", flag="--db", metavar="DB",
                                  multiple=True, parse=parse_dbs, shown_default="every database that has keys")

    def target_db(self, source_db: int) -> int:
        return dict(self.db_map).get(source_db, source_db)

    def source_dbs(self, used: dict[int, int]) -> list[int]:
        """Source databases to work on, given INFO keyspace (db -> keys)."""
        chosen = set(self.dbs) | {s for s, _ in self.db_map} if (self.dbs or self.db_map) else set(used)
        return sorted(chosen)

    def database_pairs(self) -> list[tuple[int, int]] | None:
        """(source db, target db) when databases are selected; None: every database, each to itself."""
        if not (self.dbs or self.db_map):
            return None
        return [(db, self.target_db(db)) for db in self.source_dbs({})]

    def wants_key(self, key: bytes) -> bool:
        if not self.exclude:
            return True
        text = key.decode("latin-1")
        return not any(fnmatch.fnmatchcase(text, pattern) for pattern in self.exclude)

    def wants_type(self, logical_type: str) -> bool:
        return not self.types or logical_type in self.types


def with_url_databases(selection: KeySelection, source_db: int, target_db: int) -> KeySelection:
    """A database named in a URL (other than 0, the default) selects it: source /N copies db N only, target /M writes
    into db M (from source db N, or db 0 when the source URL names none). Combined with --db/--db-map it is refused:
    two selections of databases are one too many."""
    if not source_db and not target_db:
        return selection
    if selection.dbs or selection.db_map:
        raise ConfigError(f"the URLs name databases (source {source_db}, target {target_db}) and --db/--db-map "
                          "select databases too", "give the databases one way: in the URLs or with --db/--db-map")
    return dataclasses.replace(selection, dbs=(source_db,), db_map=((source_db, target_db or source_db),))


def scan_batches(client: redis.Redis, match: str | None = None, count: int = 1000,
                 cursor: int = 0) -> Iterator[tuple[int, list[bytes]]]:
    """SCAN from `cursor`, yielding (next cursor, keys). The cursor lets a caller checkpoint and resume."""
    while True:
        cursor, keys = client.scan(cursor=cursor, match=match, count=count)
        yield int(cursor), [k if isinstance(k, bytes) else k.encode() for k in keys]
        if int(cursor) == 0:
            return
