"""What flows through the stream layer: source commands in, units of target commands out, and the tally that names
every key a translation skipped, changed or a target refused.

Offsets are opaque to this package: the caller gives each source command the offset at which it ENDS in its stream
(replication offset, or byte position in an AOF), and a resumed stream restarts right after the offset a unit ends at.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from migrate.errors import ConfigError
from migrate.run.tally import KeyIssue
from migrate.selection import KeySelection

Argv = tuple[bytes, ...]
"""One command as the server receives it: the name first, every argument as bytes."""

TargetCommand = tuple[int, Argv]
"""(target database, argv): the database the command must run in. Database-independent commands (FLUSHALL, SWAPDB,
FUNCTION LOAD, ...) carry the database that was current, so no SELECT is spent on them."""

DEFAULT_ISSUE_LIMIT: Final = 1000


class Unit(NamedTuple):
    """Target commands that must reach the target together and in order: one source command, or one source
    MULTI/EXEC group (never split). `commands` may be empty: the source command(s) had no data effect, but the
    offset still advances. `source_db` is the source database selected after the unit: what a resume restores.
    (A named tuple: one is made per source command, and a tuple is several times cheaper to build than a frozen
    dataclass.)"""

    commands: tuple[TargetCommand, ...]
    end_offset: int
    source_db: int
    group: bool = False  # from a source MULTI/EXEC: applied atomically even without the marker transaction


@dataclass(frozen=True)
class DbMap:
    """Which source databases are followed and where each one goes (run's --db / --db-map semantics).

    Empty pairs and dbs: every database to itself. With pairs or dbs, only those source databases are followed
    (the pairs' sources, and the listed dbs each to itself); commands in other databases are filtered out.
    """

    pairs: tuple[tuple[int, int], ...] = ()
    dbs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len({s for s, _ in self.pairs}) != len(self.pairs):
            raise ConfigError("a db map names a source database twice")
        if any(d < 0 for pair in self.pairs for d in pair) or any(d < 0 for d in self.dbs):
            raise ConfigError("databases are >= 0")

    @classmethod
    def from_selection(cls, selection: KeySelection) -> DbMap:
        return cls(selection.db_map, selection.dbs)

    @property
    def identity(self) -> bool:
        """Every source database goes to the same number, and none is filtered out."""
        return not self.pairs and not self.dbs

    def table(self) -> dict[int, int]:
        """source db -> target db for the followed databases (the identity map is implicit)."""
        out = {d: d for d in self.dbs}
        out.update(self.pairs)
        return out

    def merged(self) -> frozenset[int]:
        """Target databases that receive more than one followed source database."""
        counts = Counter(self.table().values())
        return frozenset(t for t, n in counts.items() if n > 1)


@dataclass
class IssueLog:
    """Keys named by the translation or the target: every occurrence counted, the first `limit` distinct keys kept
    (memory stays bounded over a stream followed for days)."""

    limit: int = DEFAULT_ISSUE_LIMIT
    issues: list[KeyIssue] = field(default_factory=list)
    count: int = 0  # commands affected, all of them
    _seen: set[tuple[int, str]] = field(default_factory=set, repr=False)

    def add(self, issue: KeyIssue) -> None:
        self.count += 1
        ident = (issue.db, issue.key)
        if len(self.issues) < self.limit and ident not in self._seen:
            self._seen.add(ident)
            self.issues.append(issue)

    def keys(self) -> set[tuple[int, str]]:
        return {(i.db, i.key) for i in self.issues}

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "named": [{"db": i.db, "key": i.key, "reason": i.reason} for i in self.issues],
                "truncated": self.count > len(self.issues) and len(self.issues) >= self.limit}


@dataclass
class StreamTally:
    """Running counters of one stream: what came in, what went out and how, and every key named."""

    limit: int = DEFAULT_ISSUE_LIMIT
    commands: int = 0  # source commands read (MULTI/EXEC included)
    units: int = 0
    passed: Counter[str] = field(default_factory=Counter)  # source command name -> sent as it is
    rewritten: Counter[str] = field(default_factory=Counter)  # source command name -> sent as an exact equivalent
    dropped: Counter[str] = field(default_factory=Counter)  # no data effect (PING, REPLCONF, PUBLISH, reads)
    filtered: Counter[str] = field(default_factory=Counter)  # in a database that is not followed
    skipped: IssueLog = field(default_factory=IssueLog)  # incompatible, not applied (policy skip, or no lossy form)
    changed: IssueLog = field(default_factory=IssueLog)  # incompatible, applied in a lossy form (policy lossy)
    failed: IssueLog = field(default_factory=IssueLog)  # the target answered an error
    applied_commands: int = 0  # target commands acknowledged by the target (the marker's excluded)
    applied_offset: int | None = None

    def __post_init__(self) -> None:
        for log in (self.skipped, self.changed, self.failed):
            log.limit = self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "commands": self.commands, "units": self.units, "passed": dict(self.passed),
            "rewritten": dict(self.rewritten), "dropped": dict(self.dropped), "filtered": dict(self.filtered),
            "skipped": self.skipped.to_dict(), "changed": self.changed.to_dict(), "failed": self.failed.to_dict(),
            "applied_commands": self.applied_commands, "applied_offset": self.applied_offset,
        }


def argv_of(args: Iterable[bytes | str | int | float]) -> Argv:
    """A command given loosely (str, int, float) as the bytes tuple this package works on."""
    return tuple(a if isinstance(a, bytes) else (repr(a) if isinstance(a, float) else str(a)).encode() for a in args)


def name_of(argv: Sequence[bytes]) -> str:
    return argv[0].decode("latin-1").lower()
