"""The sync of a source that refuses replication (PSYNC/REPLCONF renamed, or not granted): live replay, then
keyspace-notification catch-up until the cutover.

    subscribe to keyspace events      (first: a write during the replay is heard, not lost)
    live replay (SCAN/DUMP/RESTORE)   (run.replay, unchanged)
    for each notified key: DUMP + expiry on the source -> RESTORE ... REPLACE on the target, or DEL when it is gone
    cutover: pause writes, PING the subscription (every event before the pause has then arrived), drain, compare
             key counts, unpause, grace period

What this mode cannot see is in MISSES and in every report of such a sync. It never writes the source's
configuration: notifications must be on (notify-keyspace-events) or the sync is refused with the command to run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Final

import redis

from migrate.config import ConnectionSettings
from migrate.connection import open_client
from migrate.errors import MigrationError
from migrate.facts.notifications import notifications_missing
from migrate.identity import config_value
from migrate.logs import get_logger
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import jsonable
from migrate.rights import Context, check_rights
from migrate.run.convert import Converter
from migrate.run.options import CutoverMode, RunConfig, Strategy
from migrate.run.result import CutoverReport, RunResult, SyncReport
from migrate.run.session import proto_max_bulk_len
from migrate.run.sync import cutover as cut
from migrate.run.sync.control import SyncControl
from migrate.run.sync.report import Reporter
from migrate.run.sync.state import SyncState
from migrate.run.tally import DbTally
from migrate.run.writer import Item, TargetWriter
from migrate.server import Server
from migrate.wire import Channel, is_error, pack

log = get_logger("migrate.sync")

BATCH: Final = 500
MISSES: Final = (
    "keyspace notifications are fire-and-forget: events sent while the subscription is down are lost, so a dropped "
    "subscription stops the sync with an error (rerun it) instead of going on blind",
    "FLUSHALL, FLUSHDB and SWAPDB emit no key events: their effect is not copied (the cutover's key counts show it)",
    "a subscriber that falls behind is dropped by the source (client-output-buffer-limit pubsub): reported as above",
    "each notified key is copied whole (DUMP/RESTORE) in its state when read: never older than the source, but a big "
    "key written often is copied often",
    "function libraries and ACL users changed after the replay are not followed",
    "no resume: a stopped fallback sync starts over (events missed while it was stopped cannot be recovered)",
)


def follow_notifications(config: RunConfig, source: Server, target: Server, control: SyncControl, refusal: str,
                         started: float) -> RunResult:
    options = config.options
    log.warning("the source refuses replication: falling back to live replay plus keyspace-notification catch-up "
                "(what this mode can miss is in the report)", reason=refusal)
    if options.resume:
        raise MigrationError(f"the source refuses replication ({refusal}), and a sync that falls back to keyspace "
                             "notifications cannot resume: events are lost while it is stopped",
                             "rerun without --resume (with --replace, or --flush-target --yes)")
    flags = config_value(source.client, "notify-keyspace-events")
    missing = notifications_missing(flags)
    if missing is not None:
        raise MigrationError(f"the source refuses replication ({refusal}) and {missing}: --strategy sync cannot "
                             "follow its writes", "run CONFIG SET notify-keyspace-events KEA on the source (migrate "
                             "never changes the source's configuration), or grant the user +psync +replconf")
    selected = bool(options.selection.dbs or options.selection.db_map)
    check_rights("sync", {"source": (source, 0), "target": (target, 0)},
                 Context(source.identity.capabilities, target.identity.capabilities, options.flush_target,
                         selected_dbs=selected, sync_fallback=True))
    state = SyncState(source.identity.describe(), target.identity.describe(), mode="keyspace-notifications")
    state.notes.append(f"fallback: the source refuses replication ({refusal}); live replay plus keyspace-notification "
                       "catch-up, which can miss: " + "; ".join(MISSES))
    reporter = Reporter(state, options.status_file, options.metrics_address).start()
    follower = NotifyFollower(config, source, target, state, control, str(flags))
    try:
        replayed, report = follower.run()
    except (KeyboardInterrupt, MigrationError) as exc:
        state.state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        raise
    finally:
        follower.close()
        reporter.stop()
    return RunResult("sync", source.identity.describe(), target.identity.describe(), executed=True, dry_run=False,
                     resumed=False, seconds=time.monotonic() - started, dbs=replayed.dbs,
                     functions=replayed.functions, notes=tuple(state.notes) + replayed.notes,
                     sync=SyncReport("keyspace-notifications", None, 0, (), {"keys_copied": follower.copied,
                                                                             "keys_deleted": follower.deleted},
                                     1, report, MISSES))


class Subscription:
    """Keyspace events of every database, on a thread: the set of (db, key) notified since the last take()."""

    def __init__(self, source: Server, flags: str) -> None:
        self.client: redis.Redis = open_client(source.endpoint, source.settings, "source", db=0)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
        self.keyevent = "E" in flags
        self.pubsub.psubscribe("__keyevent@*__:*" if self.keyevent else "__keyspace@*__:*")
        self.dirty: dict[tuple[int, bytes], None] = {}
        self.lock = threading.Lock()
        self.events = 0
        self.error: str | None = None
        self._pongs: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migrate-sync-notifications", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                message = self.pubsub.get_message(timeout=0.2)
                if message is not None:
                    self._on(message)
        except Exception as exc:  # the connection is gone: events are lost from here on
            if not self._stop.is_set():
                self.error = " ".join(str(exc).split())[:200] or type(exc).__name__

    def _on(self, message: dict[str, Any]) -> None:
        if message["type"] == "pong":
            with self.lock:
                self._pongs.add(bytes(message["data"] or b""))
            return
        if message["type"] != "pmessage":
            return
        channel: bytes = message["channel"]
        head, _, rest = channel.partition(b"__:")
        db = int(head[head.index(b"@") + 1:])
        key = message["data"] if self.keyevent else rest
        with self.lock:
            self.dirty[(db, bytes(key))] = None
            self.events += 1

    def take(self, limit: int) -> list[tuple[int, bytes]]:
        with self.lock:
            taken = list(self.dirty)[:limit]
            for ident in taken:
                del self.dirty[ident]
        return taken

    def barrier(self, timeout: float = 10.0) -> None:
        """Return once every event published before this call has been received (a PING on the subscription is
        answered after them)."""
        text = f"migrate-{time.monotonic_ns()}"
        token = text.encode()  # the PONG comes back as bytes: the client does not decode replies
        self.pubsub.ping(text)
        deadline = time.monotonic() + timeout
        while token not in self._pongs:
            self.check()
            if time.monotonic() > deadline:
                raise MigrationError("the keyspace-notification subscription did not answer a PING within "
                                     f"{timeout:g} s")
            time.sleep(0.005)

    def check(self) -> None:
        if self.error is not None:
            raise MigrationError(f"the keyspace-notification subscription was lost ({self.error}): writes made "
                                 "meanwhile are unknown", "rerun the sync (with --replace, or --flush-target --yes)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.pubsub.close()
        self.client.close()


class NotifyFollower:
    def __init__(self, config: RunConfig, source: Server, target: Server, state: SyncState, control: SyncControl,
                 flags: str) -> None:
        self.config = config
        self.options = config.options
        self.settings: ConnectionSettings = config.common.connection
        self.source, self.target, self.state, self.control, self.flags = source, target, state, control, flags
        self.subscription: Subscription | None = None
        self.restore_limit = proto_max_bulk_len(target)
        limit = min(DEFAULT_MAX_COMMAND_BYTES, self.restore_limit // 2)
        self.converter = Converter(target.identity.capabilities, limit)
        self.links: dict[int, tuple[Channel, TargetWriter]] = {}
        self.copied = self.deleted = 0
        self.tally = DbTally(0, 0)
        from migrate.run.sync.follow import Scope

        self.scope = Scope.of(self.options.selection)
        self.followed = self.scope.db_map.table()

    def run(self) -> tuple[RunResult, CutoverReport]:
        from migrate.run.replay import replay

        self.subscription = Subscription(self.source, self.flags)
        self.subscription.barrier()
        replay_config = dataclasses.replace(self.config, options=dataclasses.replace(
            self.options, strategy=Strategy.REPLAY, resume=False))
        replayed = replay(replay_config)
        self.state.phase = "streaming"
        attempts = 0
        while True:
            self.catch_up()
            self.state.cutover_requested = self.control.cutover_requested
            if self.control.cutover_requested or (self.options.cutover is CutoverMode.AUTO and self._caught_up()):
                attempts += 1
                report = self._cut_over(attempts)
                if report is not None:
                    return replayed, report
                self.control.clear()

    def _caught_up(self) -> bool:
        return self.subscription is not None and not self.subscription.dirty

    def catch_up(self, wait: float = 0.1) -> int:
        """Copy the keys notified so far (a batch per database); the number copied or deleted."""
        assert self.subscription is not None
        self.subscription.check()
        taken = self.subscription.take(BATCH)
        if not taken:
            time.sleep(wait)
            return 0
        by_db: dict[int, list[bytes]] = {}
        for db, key in taken:
            if self.scope.db_map.identity or db in self.followed:
                by_db.setdefault(db, []).append(key)
        for db, keys in by_db.items():
            self._copy(db, keys)
        self.state.applied_offset = self.copied + self.deleted  # keys handled, for the status file
        return len(taken)

    def _copy(self, db: int, keys: list[bytes]) -> None:
        source = Channel(self.source.endpoint, self.settings, "source", db)
        try:
            absolute = self.source.identity.capabilities.has("pexpiretime")
            ttl = "PEXPIRETIME" if absolute else "PTTL"
            replies = source.call(b"".join(pack(("DUMP", k)) + pack((ttl, k)) for k in keys), 2 * len(keys))
        finally:
            source.close()
        now = int(time.time() * 1000)
        items: list[Item] = []
        gone: list[bytes] = []
        for i, key in enumerate(keys):
            payload, expiry = replies[2 * i], replies[2 * i + 1]
            if is_error(payload) or is_error(expiry):
                failure = payload if is_error(payload) else expiry
                raise MigrationError(f"reading key {key!r} from the source failed: {failure}")
            if payload is None or expiry == -2:
                gone.append(key)
            else:
                at = None if expiry == -1 else (expiry if absolute else now + expiry)
                items.append((key, payload, at, len(payload)))
        link, writer = self._writer(db)
        if gone:
            link.command("DEL", *gone)
            self.deleted += len(gone)
        if items:
            writer.write(items, self.tally, replace=True, retry_replace=True)
            self.copied += len(items)

    def _writer(self, db: int) -> tuple[Channel, TargetWriter]:
        if db not in self.links:
            target_db = self.options.selection.target_db(db)
            link = Channel(self.target.endpoint, self.settings, "target", target_db)
            writer = TargetWriter(link, self.converter, self.options.on_incompatible, self.settings, source_db=db,
                                  restore_limit=self.restore_limit, copier=None, types=frozenset(), dry_run=False)
            self.links[db] = (link, writer)
        return self.links[db]

    def _cut_over(self, number: int) -> CutoverReport | None:
        assert self.subscription is not None
        state = self.state
        state.phase, state.cutover_attempts = "cutover", number
        pausing = self.source.identity.capabilities.has("client pause write")
        channel = Channel(self.source.endpoint, self.settings, "source", 0)
        pause_ms = None
        try:
            asked = time.monotonic()
            if pausing:
                cut.pause_writes(channel, self.options.max_pause)
            budget = self.options.max_pause - min(0.25, self.options.max_pause / 4) if pausing else 30.0
            try:
                self.subscription.barrier()
                while self.subscription.dirty and time.monotonic() < asked + budget:
                    self.catch_up(0)
                drained = not self.subscription.dirty
                counts = (cut.count_keys(self.scope, [channel], cut.target_keyspace([self.target.endpoint],
                                                                                    self.settings))
                          if drained else ())
            finally:
                if pausing:
                    cut.unpause_writes(channel)
                    pause_ms = round((time.monotonic() - asked) * 1000, 1)
        finally:
            channel.close()
        if not drained:
            state.notes.append(f"cutover attempt {number} called off: notified keys were still being copied after "
                               f"--max-pause {self.options.max_pause:g} s")
            state.phase = "streaming"
            return None
        state.reach_cut(None, pause_ms)  # notifications carry no offset
        after = self._grace(self.options.cutover_grace)
        report = CutoverReport(str(self.options.cutover), pausing, pause_ms, 0, counts, after, (),
                               self.options.cutover_grace, number,
                               cut.instructions(pausing, pause_ms, 0, after, self.options.cutover_grace)
                               .replace("up to source offset 0", "notified before the pause"))
        state.cutover = jsonable(report)
        state.phase, state.state = "done", "done"
        return report

    def _grace(self, seconds: float) -> int:
        end, handled = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            handled += self.catch_up(0.05)
        self.state.after_cutover_writes = handled
        return handled

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        for link, _ in self.links.values():
            link.close()
