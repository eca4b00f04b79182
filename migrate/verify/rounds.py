"""Mismatches found by the first pass are read again after `--interval`, up to `--rounds` times.

Writes in flight (live traffic, replication lag, a migration still catching up) make keys differ for a moment; a key
that matches in a later round is reported as "changed during verification", only keys still differing after the last
round are divergent. Mismatches are remembered up to `recheck_limit` keys (memory bound); beyond it they are counted
as divergent without a recheck, and the report says how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from migrate.config import ConnectionSettings
from migrate.logs import get_logger
from migrate.selection import KeySelection
from migrate.server import Channels
from migrate.verify.compare import PairPlan, compare_keys, count_existing, exists_each
from migrate.verify.result import NOT_COMPARED, KeyDiff, Listing, Reason

log = get_logger(__name__)
PairKey = tuple[int, int]


class ListingBuilder:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.keys: list[KeyDiff] = []
        self.total = 0

    def add(self, diff: KeyDiff) -> None:
        self.total += 1
        if len(self.keys) < self.cap:
            self.keys.append(diff)

    def listing(self) -> Listing:
        return Listing(tuple(sorted(self.keys, key=_order)), self.total)


def _order(diff: KeyDiff) -> tuple[int, int, str, bytes]:
    return diff.source_db, diff.target_db, diff.reason.value, diff.key


@dataclass
class Counters:
    methods: dict[str, int] = field(default_factory=dict)  # keys compared per method (routes.Method), both passes
    in_scope: int = 0
    sampled: int = 0
    compared: int = 0
    target_scanned: int = 0
    unseen: int = 0  # forward-pass keys the target did not show (stillness.py)
    divergent: int = 0
    changed: int = 0
    not_compared: int = 0


class Tracker:
    """Mismatches waiting for a recheck, the capped listings and the per-database counters of one run."""

    def __init__(self, cap: int, limit: int) -> None:
        self.cap = cap  # --max-report-keys
        self.limit = limit  # recheck_limit
        self.pending: dict[tuple[int, int, bytes], KeyDiff] = {}
        self.counters: dict[PairKey, Counters] = {}
        self.unrechecked = ListingBuilder(cap)
        self.notes = ListingBuilder(cap)
        self.changed = ListingBuilder(cap)
        self.by_reason: dict[str, int] = {}

    def counter(self, source_db: int, target_db: int) -> Counters:
        return self.counters.setdefault((source_db, target_db), Counters())

    def record(self, source_db: int, target_db: int, key: bytes, reason: Reason, detail: str) -> None:
        diff = KeyDiff(source_db, target_db, key, reason, detail)
        if reason in NOT_COMPARED:
            self.notes.add(diff)
            self.counter(source_db, target_db).not_compared += 1
            self._count(reason)
            return
        slot = (source_db, target_db, key)
        if slot in self.pending or len(self.pending) < self.limit:
            self.pending[slot] = diff
            return
        self.unrechecked.add(diff)
        self.counter(source_db, target_db).divergent += 1
        self._count(reason)

    def converged(self, slot: tuple[int, int, bytes], round_no: int) -> None:
        diff = self.pending.pop(slot)
        self.changed.add(replace(diff, detail=f"first seen: {diff.detail}; equal in recheck round {round_no}"))
        self.counter(slot[0], slot[1]).changed += 1

    def _count(self, reason: Reason) -> None:
        self.by_reason[reason.value] = self.by_reason.get(reason.value, 0) + 1

    def finish(self) -> Listing:
        """Whatever still differs is divergent: the remaining mismatches plus those never rechecked."""
        final = ListingBuilder(self.cap)
        for diff in sorted(self.pending.values(), key=_order):
            final.add(diff)
            self.counter(diff.source_db, diff.target_db).divergent += 1
            self._count(diff.reason)
        keys = sorted((*final.keys, *self.unrechecked.keys), key=_order)[: self.cap]
        return Listing(tuple(keys), final.total + self.unrechecked.total)


Split = Callable[[list[bytes]], list[tuple[Channels, Channels, list[bytes]]]]


@dataclass(frozen=True)
class RecheckContext:
    source: Channels
    target: Channels
    pairs: dict[PairKey, PairPlan]
    full: bool
    tolerance_ms: int
    selection: KeySelection
    settings: ConnectionSettings
    batch_size: int
    split: Split | None = None  # clusters: the keys of a batch grouped by the (source node, target node) holding them

    def groups(self, keys: list[bytes]) -> list[tuple[Channels, Channels, list[bytes]]]:
        return self.split(keys) if self.split is not None else [(self.source, self.target, keys)]


def recheck(tracker: Tracker, ctx: RecheckContext, rounds: int, interval: float,
            sleep: Callable[[float], None] = time.sleep) -> int:
    """Re-read every pending mismatch up to `rounds` times; return how many rounds ran."""
    for round_no in range(1, rounds + 1):
        if not tracker.pending:
            return round_no - 1
        log.info("recheck", round=round_no, keys=len(tracker.pending), wait_s=interval)
        sleep(interval)
        for pair_key, keys in _pending_by_pair(tracker).items():
            for start in range(0, len(keys), ctx.batch_size):
                _recheck_batch(tracker, ctx, pair_key, keys[start:start + ctx.batch_size], round_no)
    return rounds


def _pending_by_pair(tracker: Tracker) -> dict[PairKey, list[bytes]]:
    out: dict[PairKey, list[bytes]] = {}
    for source_db, target_db, key in tracker.pending:
        out.setdefault((source_db, target_db), []).append(key)
    return out


def _recheck_batch(tracker: Tracker, ctx: RecheckContext, pair_key: PairKey, keys: list[bytes], round_no: int) -> None:
    source_db, target_db = pair_key
    still = {}
    for source, target, group in ctx.groups(keys):
        result = compare_keys(source, target, ctx.pairs[pair_key], group, ctx.full, ctx.tolerance_ms,
                              ctx.selection, ctx.settings)
        still.update({key: (reason, detail) for key, reason, detail in result.mismatches})
    for key in keys:
        slot = (source_db, target_db, key)
        verdict = still.get(key)
        if verdict is None or verdict[0] in NOT_COMPARED:
            tracker.converged(slot, round_no)
            if verdict is not None:
                tracker.record(source_db, target_db, key, *verdict)
        else:
            tracker.pending[slot] = KeyDiff(source_db, target_db, key, *verdict)


def locate_missing(tracker: Tracker, target: Channels, target_dbs: list[int], settings: ConnectionSettings,
                   batch_size: int, split: Callable[[list[bytes]], list[tuple[Channels, list[bytes]]]] | None = None
                   ) -> None:
    """A key missing from its target db but present in another target db is reported as such (once, not twice)."""
    by_db: dict[int, list[tuple[int, int, bytes]]] = {}
    extras: dict[tuple[int, bytes], tuple[int, int, bytes]] = {}
    for slot, diff in tracker.pending.items():
        if diff.reason is Reason.MISSING:
            by_db.setdefault(slot[1], []).append(slot)
        elif diff.reason is Reason.EXTRA:
            extras[(slot[1], slot[2])] = slot
    for target_db, slots in by_db.items():
        for other in (db for db in target_dbs if db != target_db):
            for start in range(0, len(slots), batch_size):
                batch = slots[start:start + batch_size]
                for slot, found in zip(batch, _found(target, other, [s[2] for s in batch], settings, split),
                                       strict=True):
                    if found and tracker.pending[slot].reason is Reason.MISSING:
                        source_db, _, key = slot
                        tracker.pending[slot] = KeyDiff(source_db, target_db, key, Reason.IN_OTHER_DB,
                                                        f"expected in target db {target_db}, found in db {other}")
                        extra = extras.pop((other, key), None)
                        if extra is not None:
                            del tracker.pending[extra]


def _found(target: Channels, db: int, keys: list[bytes], settings: ConnectionSettings,
           split: Callable[[list[bytes]], list[tuple[Channels, list[bytes]]]] | None) -> list[bool]:
    """Whether each key exists in `db`: one multi-key EXISTS first on a standalone target, per node on a cluster."""
    if split is None:
        if count_existing(target, db, keys, settings) == 0:
            return [False] * len(keys)
        return exists_each(target, db, keys, settings)
    found: dict[bytes, bool] = {}
    for node, group in split(keys):
        found.update(zip(group, exists_each(node, db, group, settings), strict=True))
    return [found[k] for k in keys]
