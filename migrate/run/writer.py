"""Write one batch of keys into one target database: the per-key conversion, the pipelined RESTOREs, the policy.

Shared by replay (payloads DUMPed from the live source) and reload (payloads built from RDB records). An item is a
plain tuple for speed: (key, DUMP payload or None, absolute expiry in unix ms or None, probed size). A None payload is
a key that vanished between SCAN and DUMP (expired or deleted: counted, never resurrected) or, with a size, a big key
left to the chunked copier.

A payload the target refuses for its bytes (`Bad data format`: e.g. Valkey 9.1 checks a stream's length against its
entries, which Redis 5.0 files may not satisfy) is decoded and rebuilt with commands, counted on the route
"rewrite-refused" and named; an empty collection is counted as empty (a server loading a file skips it); only a value
that cannot be decoded or represented on the target goes to --on-incompatible.

Target protection: RESTORE without REPLACE unless --replace, so an existing key answers BUSYKEY and is reported, not
overwritten. A batch resent after a lost connection (or resumed after a kill) may find its own keys already written:
it is resent with REPLACE when that is safe, i.e. the target database was empty when the run began.
"""

from __future__ import annotations

import operator
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from migrate.cluster.errors import UncertainWriteError
from migrate.config import ConnectionSettings
from migrate.connection import translate, with_retries
from migrate.errors import MigrationError, ValueTooBigError
from migrate.rdb.empty import payload_kind
from migrate.rdb.empty import reason as empty_reason
from migrate.rdb.rewrite import TEMP_KEY_MARK, Command
from migrate.render import display_key
from migrate.run.bigkeys import BigKeyCopier
from migrate.run.convert import CachedPlan, Converter, Rewrite, Route, logical_of
from migrate.run.options import OnIncompatible
from migrate.run.policy import Incompatibility, Verdict, judge
from migrate.run.tally import DbTally, KeyIssue
from migrate.run.targets import TargetLink, as_target
from migrate.run.transactions import apply_commands
from migrate.wire import Channel, ReplyError, is_error, pack

Item = tuple[bytes, bytes | None, int | None, int]
_DECISION: Final = operator.itemgetter(3)

_ABSTTL: Final = b"$6\r\nABSTTL\r\n"
_REPLACE: Final = b"$7\r\nREPLACE\r\n"
_NO_TTL: Final = b"$1\r\n0\r\n"
REFUSED_PAYLOAD: Final = ("Bad data format", "payload version or checksum are wrong", "Unsupported foreign data")
BUSY_REASON: Final = "exists on the target: not overwritten (use --replace)"


def restore_command(key: bytes, payload: bytes, expire_at: int | None, replace: bool) -> bytes:
    """RESTORE key ttl payload [ABSTTL] [REPLACE], hand-encoded (the hot path: ~1 µs per key)."""
    if expire_at is None:
        head = b"*5\r\n$7\r\nRESTORE\r\n" if replace else b"*4\r\n$7\r\nRESTORE\r\n"
        return b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n%b" % (head, len(key), key, _NO_TTL, len(payload), payload,
                                                       _REPLACE if replace else b"")
    ttl = b"%d" % expire_at
    head = b"*6\r\n$7\r\nRESTORE\r\n" if replace else b"*5\r\n$7\r\nRESTORE\r\n"
    return b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b%b" % (head, len(key), key, len(ttl), ttl, len(payload),
                                                              payload, _ABSTTL, _REPLACE if replace else b"")


def now_ms() -> int:
    return int(time.time() * 1000)


class _Restores:
    """The RESTOREs of one batch: encoded once in the planning pass, re-encoded only for a resend with REPLACE."""

    def __init__(self, replace: bool) -> None:
        self.replace = replace
        self.rows: list[tuple[bytes, bytes, int | None, CachedPlan]] = []  # key, payload as sent, expiry, decision
        self.parts: list[bytes] = []  # the RESTORE commands, encoded
        self.nbytes = 0
        self.nvolatile = 0  # rows with an expiry

    @property
    def keys(self) -> list[bytes]:
        return [row[0] for row in self.rows]

    def commands(self, force_replace: bool) -> list[bytes]:
        if force_replace and not self.replace:
            return [restore_command(k, p, e, True) for k, p, e, _ in self.rows]
        return self.parts

    def with_replace(self, index: int) -> bytes:
        key, payload, expire_at, _ = self.rows[index]
        return restore_command(key, payload, expire_at, True)

    def count_ok(self, tally: DbTally, indexes: Sequence[int]) -> None:
        """Count restored keys per type and path (decisions are shared objects: counted by identity, then named)."""
        if len(indexes) == len(self.rows):
            per_decision = Counter(map(_DECISION, self.rows))
            tally.bytes += self.nbytes
            tally.volatile += self.nvolatile
        else:
            per_decision = Counter(self.rows[i][3] for i in indexes)
            tally.bytes += sum(len(self.rows[i][1]) for i in indexes)
            tally.volatile += sum(1 for i in indexes if self.rows[i][2] is not None)
        tally.copied += len(indexes)
        for decided, n in per_decision.items():
            tally.by_type[decided.logical] += n
            tally.by_route[decided.route.value] += n


class TargetWriter:
    def __init__(self, link: Channel | TargetLink, converter: Converter, policy: OnIncompatible,
                 settings: ConnectionSettings, *, source_db: int, restore_limit: int, copier: BigKeyCopier | None,
                 types: frozenset[str],
                 dry_run: bool) -> None:
        self.target = as_target(link)
        self.converter = converter
        self.policy = policy
        self.settings = settings
        self.db = source_db
        self.restore_limit = restore_limit
        self.copier = copier
        self.types = types
        self.dry_run = dry_run

    def write(self, items: Sequence[Item], tally: DbTally, *, replace: bool, retry_replace: bool) -> None:
        """Write a batch; the tally records every key's outcome. Raises our errors (OOM, READONLY, policy fail)."""
        batch = _Restores(replace)
        others: list[tuple[Item, Rewrite | None]] = []
        self._plan(items, tally, batch, others)
        if batch.rows:
            self._restore(batch, tally, retry_replace)
        for item, rewrite in others:
            if rewrite is None:
                self._big(item, tally, replace)
            else:
                self._rewrite(item[0], item[2], rewrite, tally, replace)

    # -- planning: conversion and policy, before anything of the batch is written -----------------------------------

    def _plan(self, items: Sequence[Item], tally: DbTally, batch: _Restores,
              others: list[tuple[Item, Rewrite | None]]) -> None:
        """One pass per key: expiry check, cached conversion, RESTORE encoded (the hot loop of the whole tool)."""
        now = now_ms()
        cached = self.converter.cached
        types = self.types
        limit = self.restore_limit
        replace = batch.replace
        rows, parts = batch.rows, batch.parts
        nbytes = volatile = 0
        for item in items:
            key, payload, expire_at, size = item
            if payload is None:
                if size > 0:
                    others.append((item, None))
                else:
                    tally.expired += 1
                continue
            if expire_at is not None and expire_at <= now:
                tally.expired += 1  # expired since it was read: not resurrected
                continue
            decided = cached.get((payload[0], payload[-10] | (payload[-9] << 8)))
            if decided is None or len(payload) > limit:
                if types and logical_of(payload) not in types:
                    continue  # not selected: no conversion, no policy
                outcome = self._slow(key, payload, expire_at, limit)
                if outcome is None:
                    others.append(((key, None, expire_at, len(payload)), None))  # chunked from the source
                    continue
                if isinstance(outcome, Incompatibility):
                    judge(self.policy, self.db, outcome, tally)
                    continue
                if isinstance(outcome, Rewrite):
                    self._plan_rewrite(item, outcome, tally, others)
                    continue
                decided = outcome
            if types and decided.logical not in types:
                continue
            if decided.restamp_to is not None:
                payload = decided.restamp(payload)
            rows.append((key, payload, expire_at, decided))
            parts.append(restore_command(key, payload, expire_at, replace))
            nbytes += len(payload)
            if expire_at is not None:
                volatile += 1
        batch.nbytes, batch.nvolatile = nbytes, volatile

    def _slow(self, key: bytes, payload: bytes, expire_at: int | None,
              limit: int) -> CachedPlan | Rewrite | Incompatibility | None:
        """A payload the cache has no decision for, or one too big for one RESTORE (None: copy it in chunks)."""
        if len(payload) <= limit:
            return self.converter.decide(key, payload, expire_at)
        if self.copier is not None:
            return None
        return self.converter.rewrite(key, payload, expire_at, chunked=True)

    def _plan_rewrite(self, item: Item, rewrite: Rewrite, tally: DbTally,
                      others: list[tuple[Item, Rewrite | None]]) -> None:
        if self.types and rewrite.logical not in self.types:
            return
        if rewrite.losses:
            issue = Incompatibility(item[0], f"the target cannot hold {', '.join(rewrite.losses)}", rewrite.losses,
                                    writable=True)
            if judge(self.policy, self.db, issue, tally) is Verdict.SKIP:
                return
        others.append((item, rewrite))

    # -- RESTORE, pipelined -------------------------------------------------------------------------------------------

    def _restore(self, batch: _Restores, tally: DbTally, retry_replace: bool) -> None:
        count = len(batch.rows)
        if self.dry_run:
            batch.count_ok(tally, range(count))
            return
        attempts = 0

        def send() -> list[Any] | None:
            nonlocal attempts
            attempts += 1
            # A batch resent after a lost connection may be half applied: REPLACE when the target db is ours.
            # (A LOADING reply raises inside the channel: the target restarted, the batch is resent.) A cluster
            # target resends only the commands whose outcome is unknown, with REPLACE on the same condition.
            return self.target.restore(batch.keys, batch.commands(attempts > 1 and retry_replace),
                                       batch.with_replace if retry_replace else None)

        replies = with_retries(send, self.settings, f"RESTORE a batch into db {self.target.db}",
                               self.target.endpoint, "target")
        if replies is None:
            batch.count_ok(tally, range(count))
            return
        done = [i for i, reply in enumerate(replies) if not is_error(reply)]
        batch.count_ok(tally, done)
        for (key, payload, expire_at, _), reply in zip(batch.rows, replies, strict=True):
            if is_error(reply):
                self._refused(key, payload, expire_at, reply, tally, batch.replace or (attempts > 1 and retry_replace))

    def _refused(self, key: bytes, payload: bytes, expire_at: int | None, reply: ReplyError, tally: DbTally,
                 replace: bool) -> None:
        text = str(reply)
        if text.startswith("BUSYKEY"):
            tally.busy.append(KeyIssue(self.db, display_key(key), BUSY_REASON))
            return
        if any(marker in text for marker in REFUSED_PAYLOAD):
            self._rebuild(key, payload, expire_at, text, tally, replace)
            return
        error = translate(reply, self.target.endpoint, "target")
        if type(error) is MigrationError:  # not OOM / READONLY / NOPERM: name the key
            error = MigrationError(f"target refused RESTORE of key {display_key(key)} (db {self.db}): {text}")
        raise error

    def _rebuild(self, key: bytes, payload: bytes, expire_at: int | None, refusal: str, tally: DbTally,
                 replace: bool) -> None:
        """The target refused the payload's bytes: rebuild the value with commands when we can read it."""
        empty = payload_kind(payload)
        if empty is not None:  # servers refuse an empty collection's payload, and skip it in a file
            tally.empty.append(KeyIssue(self.db, display_key(key), empty_reason(*empty)))
            return
        outcome = self.converter.rewrite(key, payload, expire_at)
        if isinstance(outcome, Incompatibility):
            judge(self.policy, self.db, Incompatibility(key, f"the target refused the payload ({refusal}) and "
                                                             f"{outcome.reason}"), tally)
            return
        if outcome.losses:
            issue = Incompatibility(key, f"the target refused the payload ({refusal}); rewritten, it would lose "
                                         f"{', '.join(outcome.losses)}", outcome.losses, writable=True)
            if judge(self.policy, self.db, issue, tally) is Verdict.SKIP:
                return
        if self._rewrite(key, expire_at, outcome, tally, replace, Route.REBUILT):
            tally.name_rebuilt(KeyIssue(self.db, display_key(key),
                                        f"rewritten: the target refused the payload ({refusal})"))

    # -- rewritten and big keys ---------------------------------------------------------------------------------------

    def _rewrite(self, key: bytes, expire_at: int | None, rewrite: Rewrite, tally: DbTally, replace: bool,
                 route: Route | None = None) -> bool:
        """Apply a rewrite; whether the key was copied."""
        if not self.dry_run:
            if not replace and self.target.keyed(key, [pack(("EXISTS", key))])[0]:
                tally.busy.append(KeyIssue(self.db, display_key(key), BUSY_REASON))
                return False
            try:
                self._apply(rewrite.commands)
            except ValueTooBigError as exc:  # the value cannot exist on the target
                self._discard_temp(rewrite.commands)
                judge(self.policy, self.db, Incompatibility(key, exc.message), tally)
                return False
        tally.copied += 1
        tally.volatile += expire_at is not None
        tally.bytes += sum(len(pack(c)) for c in rewrite.commands)
        tally.by_type[rewrite.logical] += 1
        route = route or (Route.CHUNKED if rewrite.chunked else Route.REWRITE)
        tally.by_route[route.value] += 1
        return True

    def _apply(self, commands: Sequence[Command]) -> None:
        """The rewrite's transactions; one whose outcome is unknown (a cluster node lost mid-EXEC) is redone from the
        start: the temporary key is dropped first, and every other command rewrites the key as a whole."""
        try:
            apply_commands(self.target, commands)
        except UncertainWriteError:
            self._discard_temp(commands)
            apply_commands(self.target, commands)

    def _discard_temp(self, commands: Sequence[Command]) -> None:
        """Delete the temporary key a failed rewrite was building (it would expire by itself within the hour)."""
        key = commands[0][1] if commands and len(commands[0]) > 1 else b""
        if isinstance(key, bytes) and TEMP_KEY_MARK in key:
            self.target.keyed(key, [pack(("DEL", key))])

    def _big(self, item: Item, tally: DbTally, replace: bool) -> None:
        key, _, expire_at, size = item
        if self.copier is None:
            raise MigrationError(f"key {display_key(key)} is too big to RESTORE and no chunked copier is available")
        if self.dry_run:
            tally.copied += 1
            tally.by_route[Route.CHUNKED.value] += 1
            return
        outcome = self.copier.copy(key, expire_at, size, replace=replace, types=self.types,
                                   judge=lambda issue: judge(self.policy, self.db, issue, tally))
        if outcome.status == "copied":
            tally.copied += 1
            tally.volatile += expire_at is not None
            tally.bytes += outcome.nbytes
            tally.by_type[outcome.logical] += 1
            tally.by_route[Route.CHUNKED.value] += 1
            if outcome.changed:
                tally.changed.append(KeyIssue(self.db, display_key(key), "lost: " + ", ".join(outcome.changed)))
        elif outcome.status == "busy":
            tally.busy.append(KeyIssue(self.db, display_key(key), BUSY_REASON))
        elif outcome.status == "vanished":
            tally.expired += 1
