"""The result of `run`: counts per database, logical type and conversion route; every skipped, changed and busy key by
name; the keys that expired (or were deleted) between their read and their write. Nothing the run did not copy goes
unmentioned. Text renderings: migrate.run.report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrate.render import jsonable
from migrate.run.convert import Route
from migrate.run.tally import DbTally, KeyIssue
from migrate.verify.result import VerifyResult

REBUILT_ROUTE = Route.REBUILT.value


@dataclass(frozen=True)
class DbReport:
    source_db: int
    target_db: int
    copied: int
    bytes: int
    expired: int
    by_type: dict[str, int]
    by_route: dict[str, int]
    skipped: tuple[KeyIssue, ...]
    changed: tuple[KeyIssue, ...]
    busy: tuple[KeyIssue, ...]
    empty: tuple[KeyIssue, ...] = ()  # empty collections, skipped as a server loading a file skips them
    rebuilt: tuple[KeyIssue, ...] = ()  # the target refused the payload: rewritten with commands (the first ones)

    @classmethod
    def of(cls, tally: DbTally) -> DbReport:
        return cls(tally.source_db, tally.target_db, tally.copied, tally.bytes, tally.expired,
                   dict(sorted(tally.by_type.items())), dict(sorted(tally.by_route.items())), tuple(tally.skipped),
                   tuple(tally.changed), tuple(tally.busy), tuple(tally.empty), tuple(tally.rebuilt))


@dataclass(frozen=True)
class FunctionsReport:
    libraries: int  # libraries copied (or that would be)
    note: str = ""  # why none were copied, or what went wrong


@dataclass(frozen=True)
class ReplicationReport:
    """--strategy replicaof: how the native sync went."""

    sync_seconds: float
    catch_up_seconds: float
    source_offset: int
    target_offset: int
    lag_bytes: int
    keys: int
    promoted: bool


@dataclass(frozen=True)
class ResyncEvent:
    """--strategy sync: one (re)start of the replication stream."""

    kind: str  # full (a snapshot, then the stream) | partial (the stream continued from `offset`)
    reason: str
    offset: int  # full: the snapshot's offset; partial: the offset continued from
    at: float  # unix time


@dataclass(frozen=True)
class DbCount:
    """Key counts of one target database at the cutover, while the source's writes were paused."""

    target_db: int
    source_keys: int  # in the source databases mapped to it
    target_keys: int  # the marker key excluded
    source_volatile: int  # source keys with an expiry (the target expires them on its own clock)
    verdict: str  # equal | within expiries | differs


@dataclass(frozen=True)
class CutoverReport:
    mode: str  # auto | manual
    paused: bool  # False: the source could not pause writes (Redis 6.0), none was taken
    pause_ms: float | None  # from the pause's reply to the unpause's reply, measured here
    cut_offset: int  # the source's replication offset at the pause: the target holds everything up to it
    counts: tuple[DbCount, ...]
    after_cutover_writes: int  # source commands after the cut point, applied during the grace period
    after_cutover_keys: tuple[str, ...]  # the first keys they wrote
    grace_seconds: float
    attempts: int
    instructions: str
    shard_cuts: tuple[tuple[str, int], ...] = ()  # a cluster source: (slots, cut offset) per primary; cut_offset sums

    @property
    def counts_match(self) -> bool:
        return all(c.verdict != "differs" for c in self.counts)


@dataclass(frozen=True)
class RelayReport:
    """--strategy relay: migrate as the target's primary."""

    address: str  # HOST:PORT the target replicated from
    target_full_syncs: int  # transcoded snapshots sent to the target
    target_partial_syncs: int  # reconnections of the target continued from the relay's backlog (+CONTINUE)
    snapshot: dict[str, Any]  # the last transcoded snapshot: keys read, written, passed through, converted, bytes
    forwarded_bytes: int  # relay stream bytes sent after the last full sync (commands, SELECTs, PINGs, GETACKs)
    promoted: bool  # REPLICAOF NO ONE was run on the target
    masterauth: str  # what became of the target's masterauth (restored, or why not)


@dataclass(frozen=True)
class SyncReport:
    """--strategy sync: how the source's stream was followed and how the cutover went."""

    mode: str  # replication | keyspace-notifications
    replid: str | None
    applied_offset: int
    resyncs: tuple[ResyncEvent, ...]
    stream: dict[str, Any]  # migrate.stream.StreamTally.to_dict(): commands, skipped / changed / failed keys named
    snapshot_loads: int
    cutover: CutoverReport | None
    misses: tuple[str, ...] = ()  # what the mode cannot see (keyspace notifications), reported as such
    relay: RelayReport | None = None  # --strategy relay
    shards: tuple[ShardSyncReport, ...] = ()  # a cluster source: one follower per primary (offsets above: summed)


@dataclass(frozen=True)
class ShardSyncReport:
    """--strategy sync from a cluster source: how one shard's stream was followed."""

    slots: str  # the shard's slot ranges
    node: str  # the primary it replicated from last (a failover moves it)
    replid: str | None
    applied_offset: int
    full_resyncs: int
    partial_resyncs: int
    cut_offset: int | None  # the shard's offset at the cutover's pause


@dataclass(frozen=True)
class ShardReport:
    """One unit of a sharded replay: a source database of one shard (or of a standalone source)."""

    unit: str
    source_db: int
    slots: str  # the shard's slot ranges ("standalone": a standalone source)
    node: str  # the address read (the shard's primary, or a replica with --read-from replica)
    copied: int  # keys this shard copied, over every attempt (a resumed shard included)
    seconds: float  # the last attempt's time
    keys: int  # keys the last attempt processed
    resumed_at: int  # the SCAN cursor the last attempt started from (0: from the start)
    peak_rss_kib: int  # the peak resident memory of the worker process that ran it
    cpu_seconds: float = 0.0  # the last attempt's CPU time in its worker process

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class CommandsReport:
    """--from-aof: the commands replayed after (or without) the AOF's RDB part."""

    read: int  # commands read from the files (MULTI/EXEC included)
    applied: int  # target commands the target acknowledged
    restored: int  # RESTOREs of the AOF loaded through the per-key conversion (counted as keys)
    rewritten: dict[str, int]  # source command -> sent as an exact equivalent (e.g. EXPIRE -> PEXPIREAT)
    dropped: dict[str, int]  # no data effect (e.g. PUBLISH, reads)
    filtered: dict[str, int]  # in a database not selected (--db / --db-map)
    skipped: int  # commands not applied (--on-incompatible skip, or no lossy form): their keys are named
    changed: int  # commands applied in a lossy form: their keys are named
    files: tuple[str, ...] = ()  # the files loaded, in load order
    truncation: str = ""  # what the server would not load either (a torn tail), or ""


@dataclass(frozen=True)
class RunResult:
    strategy: str
    source: str  # a description of the source (server label, or the RDB file), never a password
    target: str
    executed: bool  # False: only the plan (dry run, or reload/replicaof without --yes)
    dry_run: bool
    resumed: bool
    seconds: float
    dbs: tuple[DbReport, ...] = ()
    functions: FunctionsReport | None = None
    plan: tuple[str, ...] = ()  # reload / replicaof: what was (or would be) done, line by line
    notes: tuple[str, ...] = ()
    replication: ReplicationReport | None = None
    sync: SyncReport | None = None
    commands: CommandsReport | None = None  # --from-aof: the command part
    verify: VerifyResult | None = field(default=None, compare=False)  # --verify: migrate.verify's result
    shards: tuple[ShardReport, ...] = ()  # a sharded replay (a cluster on either side): per unit

    @property
    def copied(self) -> int:
        return sum(d.copied for d in self.dbs)

    @property
    def expired(self) -> int:
        return sum(d.expired for d in self.dbs)

    @property
    def keys_per_second(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.skipped)

    @property
    def changed(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.changed)

    @property
    def busy(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.busy)

    @property
    def empty(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.empty)

    @property
    def rebuilt(self) -> int:
        """Keys whose payload the target refused and that were rewritten with commands (all, named or not)."""
        return sum(d.by_route.get(REBUILT_ROUTE, 0) for d in self.dbs)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        document: dict[str, Any] = jsonable({
            "strategy": self.strategy, "source": self.source, "target": self.target, "executed": self.executed,
            "dry_run": self.dry_run, "resumed": self.resumed, "seconds": round(self.seconds, 3),
            "keys_per_second": round(self.keys_per_second, 1),
            "totals": {"copied": self.copied, "expired": self.expired, "skipped": len(self.skipped),
                       "changed": len(self.changed), "busy": len(self.busy),
                       "empty": len(self.empty), "rebuilt": self.rebuilt},
            "dbs": self.dbs, "functions": self.functions, "plan": list(self.plan), "notes": list(self.notes),
            "replication": self.replication, "sync": self.sync, "commands": self.commands,
            "verify": self.verify.to_json() if self.verify else None,
            "shards": self.shards,
        })
        return document
