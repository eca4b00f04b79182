"""Replay when either side is a cluster: one unit per source shard and database (migrate.run.shards), run in parallel
(local worker processes, or a Dask cluster), each with its own checkpoint; the target written through the owner of
each key's slot when it is a cluster.

The coordinator (this module) checks both sides before anything is written (healthy, no slot migrating, not the same
cluster, the databases exist, the rights, the target empty or --replace / --flush-target), copies the function
libraries, hands the units to an executor, follows their progress, and checks the target at the end:

- the target guard, per target database summed over its primaries: a target that holds fewer keys than the run wrote
  (keys with an expiry aside) lost some (a node restarted empty, a failover lost unreplicated writes): the units
  writing into that database are copied again, at most MAX_RECOVERIES times. Unlike the standalone replay, a target
  restart is not watched for during the copy (there is no one run_id to watch): it is found by this count, at the end
  and on --resume.
- the source: a cluster resharded while it was read (its shards' slot ranges changed) fails the run, naming the
  shards; --resume copies the shards whose slots changed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import exceptions as rex

from migrate.cluster.links import NodeLink
from migrate.cluster.sides import (
    Side,
    check_cluster_dbs,
    primary_keyspace,
    refuse_same_cluster,
    require_ready,
)
from migrate.cluster.topology import Topology, discover
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import translate
from migrate.errors import MigrateError, MigrationError
from migrate.logs import get_logger
from migrate.rdb.rewrite import TEMP_KEY_MARK
from migrate.rights import Context, check_rights
from migrate.run.checkpoint import Checkpoint, check_writable
from migrate.run.executors import Monitor, execute
from migrate.run.functions import copy_functions
from migrate.run.guard import MAX_RECOVERIES, _is_temp_key
from migrate.run.options import RunConfig
from migrate.run.progress import RunProgress
from migrate.run.result import DbReport, FunctionsReport, RunResult, ShardReport
from migrate.run.session import TargetDbs, check_writable_target, dbsize, judge_target_dbs
from migrate.run.shards import Unit, UnitOutcome, error_class
from migrate.run.tally import DbTally
from migrate.server import Server
from migrate.wire import is_error, pack

log = get_logger(__name__)


def replay_sharded(config: RunConfig, source: Side, target: Side) -> RunResult:
    started = time.monotonic()
    job = _Coordinator(config, source, target)
    try:
        return job.run(started)
    finally:
        job.close()


def describe(side: Side, server: Server) -> str:
    if isinstance(side, Topology):
        ident = server.identity
        return (f"{ident.label} cluster, {len(side.shards)} shards (RDB {ident.rdb_version or '?'}, "
                f"seed {side.seed.address})")
    return server.identity.describe()


@dataclass
class _Coordinator:
    config: RunConfig
    source: Side
    target: Side

    def __post_init__(self) -> None:
        self.options = self.config.options
        self.settings: ConnectionSettings = self.config.common.connection
        self.notes: list[str] = []
        self.servers: list[Server] = []
        for side, role in ((self.source, "source"), (self.target, "target")):
            if isinstance(side, Topology):
                require_ready(side, role, self.settings)
        refuse_same_cluster(self.source, self.target)
        try:
            self.source_server = self._server("source", self.source)
            self.target_server = self._server("target", self.target)
        except BaseException:
            self.close()
            raise

    def _server(self, role: str, side: Side) -> Server:
        endpoint = side.shards[0].primary.endpoint if isinstance(side, Topology) else side.endpoint
        server = Server(role, endpoint, self.settings)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.close()

    # -- the run --------------------------------------------------------------------------------------------------

    def run(self, started: float) -> RunResult:
        options = self.options
        keyspace = self._source_keyspace()
        dbs = options.selection.source_dbs(keyspace)
        target_dbs = [options.selection.target_db(db) for db in dbs]
        self._check_dbs(dbs, target_dbs)
        self._check_rights(dbs, target_dbs)
        if not options.dry_run:
            check_writable(options.checkpoint)
        manifest, state = self._manifest(target_dbs)
        units = self._units(dbs, state, manifest)
        if options.resume:
            self._reconcile(units)
        functions = self._functions(manifest)
        total = sum(keyspace.get(db, 0) for db in dbs)
        outcomes = self._execute(units, total)
        outcomes = self._guard(units, outcomes, total)
        self._check_source_unchanged(units)
        if not options.dry_run:
            manifest.remove()
            for unit in units:
                unit.checkpoint.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                options.shard_folder.rmdir()
        return RunResult(
            strategy="replay", source=describe(self.source, self.source_server),
            target=describe(self.target, self.target_server), executed=True, dry_run=options.dry_run,
            resumed=options.resume, seconds=time.monotonic() - started, dbs=_merged(dbs, target_dbs, outcomes),
            functions=functions, notes=tuple(dict.fromkeys(self.notes + [n for o in outcomes for n in o.notes])),
            shards=tuple(_report(u, o) for u, o in zip(units, outcomes, strict=True)))

    def _source_keyspace(self) -> dict[int, int]:
        if isinstance(self.source, Topology):
            return primary_keyspace(self.source, self.settings, "source")
        return dict(self.source_server.identity.keyspace)

    def _check_dbs(self, dbs: list[int], target_dbs: list[int]) -> None:
        if isinstance(self.source, Topology):
            check_cluster_dbs(self.source, dbs, "source", self.settings, "--db")
        else:
            self.source_server.check_databases(dbs, "--db / --db-map")
        if isinstance(self.target, Topology):
            check_cluster_dbs(self.target, target_dbs, "target", self.settings)
        else:
            check_writable_target(self.target_server)
            self.target_server.check_databases(target_dbs)

    def _check_rights(self, dbs: list[int], target_dbs: list[int]) -> None:
        first = (dbs[0], target_dbs[0]) if dbs else (0, 0)
        check_rights("replay", {"source": (self.source_server, first[0]), "target": (self.target_server, first[1])},
                     Context(self.source_server.identity.capabilities, self.target_server.identity.capabilities,
                             self.options.flush_target, source_cluster=isinstance(self.source, Topology),
                             target_cluster=isinstance(self.target, Topology),
                             read_from_replica=self.options.read_from == "replica"))

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        sel, common = self.options.selection, self.config.common
        return {"strategy": "replay", "sharded": True,
                "source": [str(e.with_db(0)) for e in common.seeds("source")],
                "target": [str(e.with_db(0)) for e in common.seeds("target")],
                "match": sel.match, "types": list(sel.types), "exclude": list(sel.exclude),
                "db_map": [list(p) for p in sel.db_map], "dbs": list(sel.dbs)}

    def _manifest(self, target_dbs: list[int]) -> tuple[Checkpoint, TargetDbs]:
        """The run's own checkpoint (--checkpoint): what the units share (the target's state at the start)."""
        options = self.options
        folder = options.shard_folder
        if options.resume:
            manifest = Checkpoint.load(options.checkpoint, self.fingerprint())
            return manifest, TargetDbs(frozenset(manifest.empty_dbs), ())
        state = judge_target_dbs({db: self._held(db) for db in sorted(set(target_dbs))}, self.config)
        for db in state.to_flush:
            if not options.dry_run:
                self._flush(db)
        # The target dbs empty at the start (flushed, or found empty): any key found there later is this run's.
        manifest = Checkpoint(options.checkpoint, self.fingerprint(), empty_dbs=sorted(state.empty))
        if not options.dry_run:
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.json"):
                stale.unlink()  # a fresh run: an earlier run's units are not resumed
            manifest.save()
        return manifest, state

    def _units(self, dbs: list[int], state: TargetDbs, manifest: Checkpoint) -> list[Unit]:
        options = self.options
        folder = options.shard_folder.resolve()  # workers elsewhere get an absolute path
        shards: Sequence[tuple[tuple[int, int], ...] | None]
        if isinstance(self.source, Topology):
            shards = [tuple((r.start, r.end) for r in s.ranges) for s in self.source.shards]
        else:
            shards = [None]
        count = len(dbs) * len(shards)
        workers = self.workers(count)
        rate = options.rate_limit / min(workers, count) if options.rate_limit and count else options.rate_limit
        units = []
        for db in dbs:
            target_db = options.selection.target_db(db)
            for ranges in shards:
                name = _unit_name(db, ranges)
                may_replace = target_db in state.empty or options.replace
                units.append(Unit(name, self.config, db, target_db, ranges, isinstance(self.target, Topology),
                                  folder / f"{name}.json", {**manifest.fingerprint, "unit": name}, may_replace,
                                  rate, recovering=options.resume))
        if options.resume:
            names = {u.name for u in units}
            for stale in folder.glob("*.json"):
                if stale.stem not in names:
                    stale.unlink()
                    self.notes.append(f"checkpoint {stale.name} is for slots no shard holds now (the source was "
                                      "resharded): those keys are copied with the shards that hold them now")
        return units

    def workers(self, units: int) -> int:
        wanted = self.options.workers or min(units, os.cpu_count() or 1)
        return max(1, min(wanted, units))

    # -- target state ---------------------------------------------------------------------------------------------

    def _primaries(self) -> list[Endpoint]:
        if isinstance(self.target, Topology):
            return [s.primary.endpoint for s in self.target.shards]
        return [self.target_server.endpoint]

    def _held(self, db: int) -> int:
        if not isinstance(self.target, Topology):
            return dbsize(self.target_server, db)
        return sum(int(_node_call(e, self.settings, db, ("DBSIZE",))) for e in self._primaries())

    def _flush(self, db: int) -> None:
        for endpoint in self._primaries():
            _node_call(endpoint, self.settings, db, ("FLUSHDB",))
        log.warning("flushed", target=str(self.config.common.require_target()), db=db,
                    nodes=len(self._primaries()))

    def _reconcile(self, units: list[Unit]) -> None:
        """On --resume: redo the units whose target database lost keys; remove a killed run's temporary keys."""
        outcomes = [_saved(u) for u in units]
        self._redo_lost(units, outcomes)
        removed = sum(self._remove_temp_keys(db) for db in sorted({u.target_db for u in units}))
        if removed:
            self.notes.append(f"removed {removed} temporary keys the interrupted run left on the target")

    def _remove_temp_keys(self, db: int) -> int:
        removed = 0
        for endpoint in self._primaries():
            link = NodeLink(endpoint, self.settings, "target", db)
            try:
                cursor = b"0"
                while True:
                    cursor, keys = link.command("SCAN", cursor, "MATCH", b"*" + TEMP_KEY_MARK + b"*", "COUNT", 1000)
                    for key in (k for k in keys if _is_temp_key(k)):
                        removed += int(link.command("DEL", key))  # one key per DEL: temporary keys differ in slot
                    if cursor == b"0":
                        break
            finally:
                link.close()
        return removed

    def _redo_lost(self, units: list[Unit], outcomes: Sequence[UnitOutcome | None]) -> list[int]:
        """Target dbs holding fewer keys than written into them: their units' checkpoints are dropped."""
        written: dict[int, int] = {}
        for unit, outcome in zip(units, outcomes, strict=True):
            if outcome is not None:
                tally = outcome.tally
                written[unit.target_db] = written.get(unit.target_db, 0) + tally["copied"] - tally["volatile"]
        lost = []
        for db, must_hold in sorted(written.items()):
            held = self._held(db)
            if held >= must_hold:
                continue
            lost.append(db)
            for unit in units:
                if unit.target_db == db:
                    unit.checkpoint.unlink(missing_ok=True)
            self.notes.append(f"the target holds {held:,} keys in db {db} where this run had written {must_hold:,} "
                              "(keys with an expiry aside): every shard writing into it copied again from the start")
            log.warning("target lost keys", target_db=db, held=held, written=must_hold)
        return lost

    # -- execution ------------------------------------------------------------------------------------------------

    def _functions(self, manifest: Checkpoint) -> FunctionsReport | None:
        if manifest.functions_done:
            return None
        report = None
        for endpoint in self._primaries():
            target = Server("target", endpoint, self.settings)
            try:
                report = copy_functions(self.source_server, target, self.settings,
                                        replace=self.options.replace or self.options.resume,
                                        dry_run=self.options.dry_run)
            finally:
                target.close()
        if not self.options.dry_run:
            manifest.functions_done = True
            manifest.save()
        return report

    def _execute(self, units: list[Unit], total: int) -> list[UnitOutcome]:
        options = self.options
        done_before = sum(_saved_processed(u) for u in units)
        with RunProgress(options.show_progress, total) as progress:
            progress.advance(done_before, 0)
            monitor = Monitor(units, progress.advance)
            outcomes = execute(units, self.workers(len(units)), options.scheduler, monitor, progress.advance,
                               self.settings.connect_timeout)
        failed = [o for o in outcomes if o.failed]
        if failed:
            raise self._failure(failed)
        return outcomes

    def _failure(self, failed: list[UnitOutcome]) -> MigrateError:
        name, message, hint = failed[0].error or ("MigrationError", "?", "")
        more = f" ({len(failed) - 1} other shards failed too)" if len(failed) > 1 else ""
        error = error_class(name)(f"shard {failed[0].name}: {message}{more}", hint)
        if not self.options.dry_run:
            error.hint = f"{error.hint}; the checkpoints in {self.options.shard_folder} are kept: rerun with --resume"
        return error

    def _guard(self, units: list[Unit], outcomes: list[UnitOutcome], total: int) -> list[UnitOutcome]:
        """The target guard at the end: databases that lost keys are copied again (bounded)."""
        if self.options.dry_run:
            return outcomes
        for _ in range(MAX_RECOVERIES):
            lost = self._redo_lost(units, outcomes)
            if not lost:
                return outcomes
            again = [dataclasses.replace(u, recovering=True) for u in units if u.target_db in lost]
            redone = dict(zip([u.name for u in again], self._execute(again, total), strict=True))
            outcomes = [redone.get(o.name, o) for o in outcomes]
        if self._redo_lost(units, outcomes):
            raise MigrationError(f"the target kept losing keys ({MAX_RECOVERIES} recoveries)",
                                 "make the target stable (memory, crashes, restarts) before migrating")
        return outcomes

    def _check_source_unchanged(self, units: list[Unit]) -> None:
        if not isinstance(self.source, Topology):
            return
        now = discover(self.config.common.seeds("source"), self.settings, role="source")
        before = {u.ranges for u in units}
        after = {tuple((r.start, r.end) for r in s.ranges) for s in now.shards} if isinstance(now, Topology) else set()
        if before != after:
            moved = sorted(_text(r) for r in before - after if r is not None)
            raise MigrationError(f"the source was resharded during the run: the shards of slots {', '.join(moved)} "
                                 "changed, keys that moved meanwhile may be missing",
                                 "rerun with --resume: the shards whose slots changed are copied again")


def _unit_name(db: int, ranges: tuple[tuple[int, int], ...] | None) -> str:
    if ranges is None:
        return f"db{db}"
    text = _text(ranges)
    short = text if len(text) <= 40 else text[:24] + "-" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return f"db{db}-slots-{short.replace(',', '_')}"


def _text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def _saved(unit: Unit) -> UnitOutcome | None:
    """A unit's state as its checkpoint file has it (None: not started)."""
    try:
        checkpoint = Checkpoint.load(unit.checkpoint, unit.fingerprint)
    except MigrateError:
        return None
    tally = checkpoint.dbs[unit.source_db].tally
    return UnitOutcome(unit.name, tally.to_dict(), "", 0.0, 0, 0)


def _saved_processed(unit: Unit) -> int:
    saved = _saved(unit)
    if saved is None:
        return 0
    t = saved.tally
    return int(t["copied"]) + int(t["expired"]) + len(t["skipped"]) + len(t["busy"])


def _merged(dbs: list[int], target_dbs: list[int], outcomes: list[UnitOutcome]) -> tuple[DbReport, ...]:
    merged = {db: DbTally(db, target_db) for db, target_db in zip(dbs, target_dbs, strict=True)}
    for outcome in outcomes:
        tally = DbTally.from_dict(outcome.tally)
        merged[tally.source_db].add(tally)
    return tuple(DbReport.of(merged[db]) for db in dbs)


def _report(unit: Unit, outcome: UnitOutcome) -> ShardReport:
    tally = outcome.tally
    return ShardReport(unit.name, unit.source_db, unit.shard_text, outcome.node, int(tally["copied"]),
                       round(outcome.seconds, 3), outcome.keys, outcome.resumed_at, outcome.peak_rss_kib,
                       round(outcome.cpu_seconds, 3))


def _node_call(endpoint: Endpoint, settings: ConnectionSettings, db: int, args: tuple[str, ...]) -> Any:
    link = NodeLink(endpoint, settings, "target", db)
    try:
        reply = link.call(pack(args), 1)[0]
    except (rex.RedisError, OSError) as exc:
        raise translate(exc, endpoint, "target") from exc
    finally:
        with contextlib.suppress(OSError):
            link.close()
    if is_error(reply):
        raise translate(rex.ResponseError(str(reply)), endpoint, "target")
    return reply


def unit_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))
