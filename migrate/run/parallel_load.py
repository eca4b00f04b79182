"""Reload's snapshots checked and loaded at once, one worker process each: a cluster source's primaries (spooled or
streamed), or several --from-rdb files. The files are checked (load.check_snapshot) in the workers before the flush;
after it, each worker runs the same KeyLoader as the sequential load (per-key conversion, batches, slot routing on a
cluster target) on its own connections; the coordinator shows one progress bar fed by the workers' batches and
merges their tallies, function libraries and notes in snapshot order.

A worker's failure, or its death, stops the others at once (after the flush the target holds a partial load either
way, and the caller says so); nothing is retried, a reload cannot resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, cast

from migrate.cluster.topology import Topology
from migrate.config import Endpoint
from migrate.errors import MigrateError, MigrationError
from migrate.facts.capabilities import Capabilities
from migrate.logs import get_logger
from migrate.rdb.reader import RdbReader
from migrate.run.executors import stop_workers, worker_context
from migrate.run.load import Extras, KeyLoader, LoadOutcome, check_snapshot
from migrate.run.options import RunConfig
from migrate.run.progress import RunProgress
from migrate.run.shards import error_class, peak_rss_kib
from migrate.run.snapshot import ReplicationSnapshot
from migrate.run.tally import DbTally
from migrate.server import Server

log = get_logger(__name__)

POLL_SECONDS: Final = 0.2
_progress: Any = None  # in a worker: the queue its batches are reported on (set by the pool's initializer)


@dataclass(frozen=True)
class LoadTask:
    """One snapshot to load: a file, or a node whose snapshot is streamed over the replication protocol."""

    index: int
    config: RunConfig
    target: Endpoint
    target_topology: Topology | None
    file: Path | None = None
    node: Endpoint | None = None

    @property
    def name(self) -> str:
        return str(self.file) if self.file is not None else f"the snapshot of {self.node}"


@dataclass(frozen=True)
class TaskOutcome:
    index: int
    tallies: dict[int, DbTally]  # per source database
    extras: Extras
    seconds: float
    keys: int
    peak_rss_kib: int
    error: tuple[str, str, str] | None = None  # (class name, message, hint)


@dataclass
class _Loaded:
    keys: int = 0
    started: float = field(default_factory=time.monotonic)


class SnapshotPool:
    """`workers` processes that check and then load snapshots; started at once, so that their start-up (an
    interpreter importing migrate) runs while the snapshots are taken."""

    def __init__(self, workers: int) -> None:
        context = worker_context()
        self.workers = workers
        self._reports = context.Queue()
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_set_queue,
                                            initargs=(self._reports,))
        # Starting a worker waits for the fork server to import migrate (about 0.5 s): done by a thread, so that the
        # snapshots are taken meanwhile.
        self._warm = threading.Thread(target=self._start, name="start-workers", daemon=True)
        self._warm.start()

    def _start(self) -> None:
        with contextlib.suppress(RuntimeError):  # stopped before it started
            for _ in range(self.workers):
                self._pool.submit(_ready)

    def check(self, files: list[Path], config: RunConfig, target: Capabilities) -> None:
        """Every file read whole before the flush (load.check_snapshot), several at once; the first refusal is
        raised, the other checks stopped."""
        try:
            with _deaths("checking the snapshots; the target was not touched"):
                futures = [self._pool.submit(check_task, file, config, target) for file in files]
                for future in futures:
                    error = future.result()
                    if error is not None:
                        raise error_class(error[0])(error[1], error[2])
        except BaseException:
            self.stop()
            raise

    def load(self, tasks: list[LoadTask], progress: RunProgress) -> LoadOutcome:
        """Every task; the merged outcome, or the first failure raised (the others stopped)."""
        try:
            with _deaths("loading the snapshots"):
                outcomes = self._load(tasks, progress)
        except BaseException:
            self.stop()  # a failure or an interrupt: no worker goes on loading behind our back
            raise
        return _merged([outcomes[t.index] for t in tasks])

    def _load(self, tasks: list[LoadTask], progress: RunProgress) -> dict[int, TaskOutcome]:
        outcomes: dict[int, TaskOutcome] = {}
        running = {self._pool.submit(load_task, task): task for task in tasks}
        while running:
            done, _ = cf.wait(running, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
            _drain(self._reports, progress)
            for future in done:
                running.pop(future)
                outcome = future.result()
                if outcome.error is not None:
                    raise _failure(tasks[outcome.index], outcome.error)
                outcomes[outcome.index] = outcome
                log.info("snapshot loaded", snapshot=tasks[outcome.index].name, keys=outcome.keys,
                         seconds=round(outcome.seconds, 3), peak_rss_kib=outcome.peak_rss_kib)
        _drain(self._reports, progress)
        return outcomes

    def stop(self) -> None:
        self._warm.join()
        stop_workers(self._pool)

    def close(self) -> None:
        self._warm.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _deaths(doing: str) -> Iterator[None]:
    """A worker process that died (killed, out of memory) is a clear error, not a traceback."""
    try:
        yield
    except BrokenProcessPool:
        raise MigrationError(f"a worker process died while {doing}",
                             "check the machine's memory and logs (a killed process, the OOM killer), then run "
                             "again, with --workers 1 to use one process") from None


def _ready() -> None:
    """Nothing: a task that makes a worker start."""


def check_task(file: Path, config: RunConfig, target: Capabilities) -> tuple[str, str, str] | None:
    """In a worker: check one file; the refusal comes back as data (its class by name)."""
    try:
        check_snapshot(file, config, target)
    except MigrateError as exc:
        return type(exc).__name__, exc.message, exc.hint
    return None


def load_task(task: LoadTask) -> TaskOutcome:
    """In a worker: load one snapshot; a MigrateError comes back as data (its class by name)."""
    loaded = _Loaded()
    settings = task.config.common.connection
    target: Server | None = None
    loader: KeyLoader | None = None

    def on_batch(keys: int, nbytes: int) -> None:
        loaded.keys += keys
        if _progress is not None:
            _progress.put((keys, nbytes))

    try:
        target = Server("target", task.target, settings)
        loader = KeyLoader(task.config, target, task.target_topology)
        quiet = RunProgress(False, None)
        if task.file is not None:
            with RdbReader(str(task.file)) as reader:
                loader.load(reader, quiet, on_batch)
        else:
            assert task.node is not None
            with ReplicationSnapshot(task.node, settings) as snapshot, \
                    RdbReader(cast(IO[bytes], snapshot)) as reader:
                loader.load(reader, quiet, on_batch)
    except MigrateError as exc:
        return _outcome(task, loaded, loader, (type(exc).__name__, exc.message, exc.hint))
    finally:
        if loader is not None:
            loader.close()
        if target is not None:
            target.close()
    return _outcome(task, loaded, loader, None)


def _outcome(task: LoadTask, loaded: _Loaded, loader: KeyLoader | None,
             error: tuple[str, str, str] | None) -> TaskOutcome:
    tallies = loader.tallies if loader is not None else {}
    extras = loader.extras if loader is not None else Extras()
    return TaskOutcome(task.index, tallies, extras, time.monotonic() - loaded.started, loaded.keys, peak_rss_kib(),
                       error)


def _set_queue(reports: Any) -> None:
    global _progress
    _progress = reports


def _drain(reports: Any, progress: RunProgress) -> None:
    while True:
        try:
            keys, nbytes = reports.get_nowait()
        except queue.Empty:
            return
        progress.advance(keys, nbytes)


def _failure(task: LoadTask, error: tuple[str, str, str]) -> MigrateError:
    name, message, hint = error
    return error_class(name)(f"{task.name}: {message}", hint)


def _merged(outcomes: list[TaskOutcome]) -> LoadOutcome:
    """The tallies summed per source database, the extras in snapshot order (functions deduplicated later)."""
    tallies: dict[int, DbTally] = {}
    extras = Extras()
    for outcome in outcomes:
        for db, tally in outcome.tallies.items():
            if db in tallies:
                tallies[db].add(tally)
            else:
                tallies[db] = tally
        extras.functions += outcome.extras.functions
        extras.notes += outcome.extras.notes
        extras.end = outcome.extras.end
    return LoadOutcome(tallies, extras)

