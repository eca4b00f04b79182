"""Strategy 3, native replication: the target becomes a replica of the source, syncs, catches up, and is promoted.

Only when it can work: a replica flushes its own data before it loads the primary's RDB, so a target that cannot read
the source's RDB version (Valkey 8.x and a Redis 7.4+ source), or that lacks a module whose data is in it, would end
empty. Those cases are refused up front with the reason, before anything is sent to the target.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import ConfigError, IncompatibleDataError, MigrateError, MigrationError
from migrate.facts.releases import VALKEY_FOREIGN_RANGE, accepts_rdb_version
from migrate.identity import config_value
from migrate.logs import get_logger
from migrate.rights import Context, check_rights
from migrate.run.options import RunConfig
from migrate.run.result import ReplicationReport, RunResult
from migrate.run.session import has_field_ttls, has_module_data, modules_of, open_servers
from migrate.server import Server
from migrate.wire import is_error

log = get_logger(__name__)

POLL_SECONDS: Final = 0.1
STUCK_GRACE_SECONDS: Final = 30  # beyond the source's diskless delay, a replica that has not begun the transfer
PlanSink = Callable[[tuple[str, ...]], None]
REPLAY_HINT: Final = "use --strategy replay, which converts every key for the target"


def replicaof(config: RunConfig, on_plan: PlanSink | None = None) -> RunResult:
    started = time.monotonic()
    common, options = config.common, config.options
    settings = common.connection
    source, target = open_servers(config)
    try:
        refuse_if_doomed(replication_refused(source))  # first: PSYNC renamed away is no right to grant
        check_rights("replicaof", {"source": (source, 0), "target": (target, 0)},
                     Context(source.identity.capabilities, target.identity.capabilities))
        refuse_if_doomed(doomed_reason(source, target))
        plan = _plan(config, source, target)
        if on_plan is not None:
            on_plan(plan)
        if not options.yes or options.dry_run:
            note = "nothing done: dry run" if options.dry_run else "nothing done: rerun with --yes to execute"
            return RunResult("replicaof", source.identity.describe(), target.identity.describe(), executed=False,
                             dry_run=options.dry_run, resumed=False, seconds=time.monotonic() - started, plan=plan,
                             notes=(note,))
        report = _Sync(source, target, settings, options.sync_timeout).run(promote=options.promote)
        return RunResult("replicaof", source.identity.describe(), target.identity.describe(), executed=True,
                         dry_run=False, resumed=False, seconds=time.monotonic() - started, plan=plan,
                         replication=report)
    finally:
        source.close()
        target.close()


# -- refusing a doomed sync -------------------------------------------------------------------------------------------


def refuse_if_doomed(reason: str | None) -> None:
    if reason:
        raise IncompatibleDataError(f"--strategy replicaof refused: {reason}", REPLAY_HINT)


def doomed_reason(source: Server, target: Server) -> str | None:
    """Why a full sync from this source would fail on this target (after flushing it), or None."""
    if source.endpoint.path:
        raise ConfigError("--strategy replicaof needs a TCP source (host:port the target can reach), not a unix "
                          "socket")
    src, dst = source.identity, target.identity
    if dst.role != "master":
        return f"the target {dst.describe()} is already a replica: run REPLICAOF NO ONE on it first"
    if src.rdb_version is None:
        return f"the RDB version {src.label} writes is not known"
    if not accepts_rdb_version(dst.product, dst.version, src.rdb_version, dst.relaxed):
        return (f"{dst.label} cannot load RDB {src.rdb_version} written by {src.label}: a full sync would flush the "
                f"target and then fail to load")
    if src.rdb_version in VALKEY_FOREIGN_RANGE and dst.product == "valkey" and has_field_ttls(source):
        return (f"{src.label} holds hashes with field TTLs (RDB types 24/25), which {dst.label} refuses even in "
                f"relaxed mode: the sync would flush the target and then fail")
    missing = sorted(m for m in modules_of(source) - modules_of(target) if has_module_data(source, m))
    if missing:
        return (f"the source loads module(s) {', '.join(missing)} that the target lacks: their data in the RDB would "
                f"make the load fail after the flush")
    used = max(src.keyspace, default=0)
    if dst.databases is not None and used >= dst.databases:
        return f"the source uses db {used} but the target has {dst.databases} databases"
    return None


def replication_refused(source: Server) -> str | None:
    """Why the source would refuse a replica (PSYNC and SYNC renamed or disabled, as managed services do), or None.
    Read from COMMAND INFO: a renamed command is unknown under its name. Not readable (COMMAND denied): None."""
    reply = source.channels.channel(0).command("COMMAND", "INFO", "PSYNC", "SYNC")
    if is_error(reply) or not isinstance(reply, list):
        return None
    if all(entry is None for entry in reply):
        return (f"the source {source.identity.describe()} does not accept replicas: PSYNC and SYNC are renamed or "
                "disabled (as on managed services), so the target could never sync")
    return None


def _plan(config: RunConfig, source: Server, target: Server) -> tuple[str, ...]:
    options = config.options
    src, dst = source.identity, target.identity
    keys, held = sum(src.keyspace.values()), sum(dst.keyspace.values())
    host = source.endpoint.host
    return (
        f"replicate: REPLICAOF {host} {source.endpoint.port} on {dst.describe()} at {target.endpoint}: it drops its "
        f"{held:,} keys and loads a full sync of {keys:,} keys from {src.describe()}",
        f"compatibility: {dst.label} reads RDB {src.rdb_version}; no missing modules",
        f"wait: for the full sync and for the replication offset to catch up (at most {options.sync_timeout:.0f} s)",
        "promote: REPLICAOF NO ONE once caught up" if options.promote else
        "promote: no (the target stays a read-only replica; rerun with --promote or run REPLICAOF NO ONE)",
        "rollback: the target's current data is replaced by the sync: back it up first; the source is only read",
    )


# -- the sync ---------------------------------------------------------------------------------------------------------


@dataclass
class _Sync:
    source: Server
    target: Server
    settings: ConnectionSettings
    timeout: float

    def run(self, promote: bool) -> ReplicationReport:
        auth_set = self._auth()
        began = time.monotonic()
        endpoint = self.source.endpoint
        self._target("REPLICAOF", endpoint.host, endpoint.port)
        log.info("replicaof started", target=str(self.target.endpoint), source=str(endpoint))
        try:
            self._wait(self._synced, "the full sync", began, stuck=self._stuck)
            synced = time.monotonic()
            wanted = int(self._info(self.source)["master_repl_offset"])
            self._wait(lambda: self._offset() >= wanted, "the replication offset to catch up", began)
        except MigrationError as exc:
            self._back_to_primary(auth_set)
            exc.message += ("; the target was made a primary again (REPLICAOF NO ONE): it holds what it had loaded, "
                            "if the sync had started it flushed its data first")
            exc.hint = "check both servers' logs (the replication user's rights, the network, the source's load)"
            raise
        caught_up = time.monotonic()
        source_offset, target_offset = int(self._info(self.source)["master_repl_offset"]), self._offset()
        keys = sum(int(v.get("keys", 0)) for k, v in self._info(self.target, "keyspace").items()
                   if k.startswith("db") and isinstance(v, dict))
        if promote:
            self._target("REPLICAOF", "NO", "ONE")
            if auth_set:  # the source's password is not left in the promoted server's configuration
                self._target("CONFIG", "SET", "masterauth", "")
        return ReplicationReport(synced - began, caught_up - synced, source_offset, target_offset,
                                 max(0, source_offset - target_offset), keys, promote)

    def _back_to_primary(self, auth_set: bool) -> None:
        with contextlib.suppress(MigrateError):  # best effort: the error that brought us here is the one to report
            self._target("REPLICAOF", "NO", "ONE")
            if auth_set:
                self._target("CONFIG", "SET", "masterauth", "")

    def _stuck(self, since: float) -> bool:
        """The replica has not reached the transfer in time: the source refused it (rights, renamed commands) or
        cannot be reached from the target. Allowed: the source's diskless sync delay, and a grace period."""
        info = self._info(self.target)
        if info.get("master_link_status") == "up" or int(info.get("master_sync_in_progress", 0)):
            return False
        delay = config_value(self.source.client, "repl-diskless-sync-delay")
        grace = (int(delay) if delay and delay.isdigit() else 5) + STUCK_GRACE_SECONDS
        return time.monotonic() - since > grace

    def _auth(self) -> bool:
        endpoint = self.source.endpoint
        if not endpoint.password:
            return False
        if endpoint.username:
            self._target("CONFIG", "SET", "masteruser", endpoint.username)
        self._target("CONFIG", "SET", "masterauth", endpoint.password)
        return True

    def _synced(self) -> bool:
        info = self._info(self.target)
        return info.get("master_link_status") == "up" and int(info.get("master_sync_in_progress", 1)) == 0

    def _offset(self) -> int:
        return int(self._info(self.target).get("slave_repl_offset", -1))

    def _wait(self, done: Callable[[], bool], what: str, began: float,
              stuck: Callable[[float], bool] | None = None) -> None:
        while not done():
            if stuck is not None and stuck(began):
                info = self._info(self.target)
                raise MigrationError(f"the target did not start {what}: its link to the source stays "
                                     f"{info.get('master_link_status')} and no transfer began")
            if time.monotonic() - began > self.timeout:
                info = self._info(self.target)
                raise MigrationError(
                    f"the target did not finish {what} in {self.timeout:.0f} s (link "
                    f"{info.get('master_link_status')}, sync in progress {info.get('master_sync_in_progress')})",
                    "check the target's log")
            time.sleep(POLL_SECONDS)

    def _info(self, side: Server, section: str = "replication") -> dict[str, Any]:
        return dict(with_retries(lambda: side.client.info(section), self.settings, f"INFO {section}", side.endpoint,
                                 side.role))

    def _target(self, *args: Any) -> Any:
        return with_retries(lambda: self.target.client.execute_command(*args),  # type: ignore[no-untyped-call]
                            self.settings, str(args[0]), self.target.endpoint, "target")
