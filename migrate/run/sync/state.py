"""The figures of a running sync, kept by the sync's thread and read by the reporter's (status file, metrics, logs).

One writer (the sync loop), readers on other threads: each field is a plain value replaced whole, so a reader sees
every field either before or after an update; the document is rebuilt from them at each read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrate.stream.model import StreamTally

PHASES = ("snapshot", "streaming", "cutover", "grace", "done")


@dataclass
class SyncState:
    source: str  # the servers as described to users (redacted endpoints, never a password)
    target: str
    mode: str = "replication"  # or keyspace-notifications, or relay
    phase: str = "snapshot"  # snapshot | streaming | cutover | grace | done
    state: str = "running"  # running | stopped (SIGINT/SIGTERM, resumable) | failed | done
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    replid: str | None = None
    resync: str | None = None  # full | partial: how the current stream started
    resync_reason: str = ""
    source_offset: int = 0  # the source's master_repl_offset, read once a second
    source_offset_read: bool = False  # it was read at least once (an idle new source is at offset 0)
    received_offset: int = 0
    applied_offset: int = 0  # what the target acknowledged (its marker)
    waiting_since: float | None = None  # unix time the oldest unapplied byte arrived
    snapshot_bytes: int = 0
    snapshot_keys_loaded: int = 0
    snapshot_keys_total: int | None = None
    snapshot_loads: int = 0
    full_resyncs: int = 0
    partial_resyncs: int = 0
    source_reconnects: int = 0
    target_reconnects: int = 0
    cutover_requested: bool = False
    cutover_attempts: int = 0
    after_cutover_writes: int = 0
    cutover: dict[str, Any] | None = None
    cut_offset: int | None = None  # the cutover point from the moment the pause ends (phase grace); None: notified
    pause_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    tally: StreamTally = field(default_factory=StreamTally)
    relay: dict[str, Any] | None = None  # --strategy relay: its address and the target's replication (docs/relay.md)
    published: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # the status file's writer
    # A cluster source: the figures above are sums over its shards' followers, gathered by `gather` before each
    # document, and `shards` has each one's.
    shards: list[dict[str, Any]] | None = None
    gather: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def lag_bytes(self) -> int:
        return max(0, max(self.source_offset, self.received_offset) - self.applied_offset)

    @property
    def lag_seconds(self) -> float:
        since = self.waiting_since
        return round(max(0.0, time.time() - since), 3) if since is not None and self.lag_bytes else 0.0

    def counters(self) -> dict[str, int]:
        tally = self.tally
        return {
            "snapshot_bytes": self.snapshot_bytes, "snapshot_keys_loaded": self.snapshot_keys_loaded,
            "snapshot_loads": self.snapshot_loads, "commands": tally.commands,
            "applied_commands": tally.applied_commands, "units": tally.units,
            "dropped": sum(tally.dropped.values()), "filtered": sum(tally.filtered.values()),
            "skipped": tally.skipped.count, "changed": tally.changed.count, "failed": tally.failed.count,
            "full_resyncs": self.full_resyncs, "partial_resyncs": self.partial_resyncs,
            "source_reconnects": self.source_reconnects, "target_reconnects": self.target_reconnects,
            "cutover_attempts": self.cutover_attempts, "after_cutover_writes": self.after_cutover_writes,
        }

    def reach_cut(self, cut: int | None, pause_ms: float | None) -> None:
        """The cutover point is reached and the source's writes flow again: clients are to be repointed now, so the
        status file says so at once (not at the next tick)."""
        self.phase, self.cut_offset, self.pause_ms = "grace", cut, pause_ms
        if self.published is not None:
            self.published()

    def document(self) -> dict[str, Any]:
        """The status file's content (docs/sync.md describes every field, docs/relay.md the relay's)."""
        if self.gather is not None:
            self.gather()
        document = {
            "phase": self.phase, "state": self.state, "mode": self.mode, "pid": self.pid,
            "source": self.source, "target": self.target, "started_at": round(self.started_at, 3),
            "updated_at": round(time.time(), 3), "replid": self.replid, "resync": self.resync,
            "resync_reason": self.resync_reason, "source_offset": max(self.source_offset, self.received_offset),
            "received_offset": self.received_offset, "applied_offset": self.applied_offset,
            "lag_bytes": self.lag_bytes, "lag_seconds": self.lag_seconds,
            "snapshot_keys_total": self.snapshot_keys_total, "cutover_requested": self.cutover_requested,
            "counters": self.counters(), "cut_offset": self.cut_offset, "pause_ms": self.pause_ms,
            "cutover": self.cutover, "notes": list(self.notes), "error": self.error,
        }
        if self.relay is not None:
            document["relay"] = dict(self.relay)
        if self.shards is not None:
            document["shards"] = list(self.shards)
        return document
