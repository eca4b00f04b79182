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
import dataclasses
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol, cast

from migrate.cluster.topology import Topology
from migrate.config import Endpoint
from migrate.errors import MigrateError, MigrationError
from migrate.facts.capabilities import Capabilities
from migrate.logs import get_logger
from migrate.rdb.reader import RdbReader
from migrate.run.executors import dask_client, stop_workers, worker_context
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
    reports: str | None = None  # on Dask: the name of the queue its batches are reported on (and of its marks)

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
    """Snapshots checked, then loaded, at once: in `workers` local processes, or as tasks on the Dask distributed
    cluster at `scheduler` (--scheduler; the files must then be in a folder every worker reads: --spool-dir,
    --from-rdb). Local workers start at once, so that their start-up (an interpreter importing migrate) runs while
    the snapshots are taken."""

    def __init__(self, workers: int, scheduler: str | None = None, connect_timeout: float = 30.0) -> None:
        self._runner: _Runner = _Processes(workers) if scheduler is None else _Dask(scheduler, connect_timeout)
        self.workers = self._runner.workers
        self.where = self._runner.where

    def check(self, files: list[Path], config: RunConfig, target: Capabilities) -> None:
        """Every file read whole before the flush (load.check_snapshot), several at once; the first refusal is
        raised, the other checks stopped."""
        runner = self._runner
        try:
            with runner.deaths("checking the snapshots; the target was not touched"):
                futures = [runner.submit(check_task, f"check-{i}", file, config, target)
                           for i, file in enumerate(files)]
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
            with self._runner.deaths("loading the snapshots"):
                outcomes = self._load(tasks, progress)
        except BaseException:
            self.stop()  # a failure or an interrupt: no worker goes on loading behind our back
            raise
        return _merged([outcomes[t.index] for t in tasks])

    def _load(self, tasks: list[LoadTask], progress: RunProgress) -> dict[int, TaskOutcome]:
        runner = self._runner
        outcomes: dict[int, TaskOutcome] = {}
        running = {runner.submit(load_task, f"load-{t.index}", runner.task(t)): t for t in tasks}
        while running:
            done = runner.wait(list(running), POLL_SECONDS)
            runner.drain(progress)
            for future in done:
                running.pop(future)
                outcome = future.result()
                if outcome.error is not None:
                    raise _failure(tasks[outcome.index], outcome.error)
                outcomes[outcome.index] = outcome
                log.info("snapshot loaded", snapshot=tasks[outcome.index].name, keys=outcome.keys,
                         seconds=round(outcome.seconds, 3), peak_rss_kib=outcome.peak_rss_kib)
        runner.drain(progress)
        return outcomes

    def stop(self) -> None:
        self._runner.stop()

    def close(self) -> None:
        self._runner.close()


class _Runner(Protocol):
    workers: int
    where: str  # "worker processes", "Dask workers (tcp://...)": for the report

    def submit(self, fn: Callable[..., Any], name: str, *args: Any) -> Any: ...

    def task(self, task: LoadTask) -> LoadTask: ...

    def wait(self, futures: list[Any], timeout: float) -> list[Any]: ...

    def drain(self, progress: RunProgress) -> None: ...

    def deaths(self, doing: str) -> contextlib.AbstractContextManager[None]: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class _Processes:
    """Local worker processes forked from a fork server; their batches reported on a queue."""

    def __init__(self, workers: int) -> None:
        context = worker_context()
        self.workers = workers
        self.where = "worker processes"
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

    def submit(self, fn: Callable[..., Any], name: str, *args: Any) -> Any:
        return self._pool.submit(fn, *args)

    def task(self, task: LoadTask) -> LoadTask:
        return task

    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        return list(cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)[0])

    def drain(self, progress: RunProgress) -> None:
        while True:
            try:
                keys, nbytes = self._reports.get_nowait()
            except queue.Empty:
                return
            progress.advance(keys, nbytes)

    @contextlib.contextmanager
    def deaths(self, doing: str) -> Iterator[None]:
        """A worker process that died (killed, out of memory) is a clear error, not a traceback."""
        try:
            yield
        except BrokenProcessPool:
            raise MigrationError(f"a worker process died while {doing}",
                                 "check the machine's memory and logs (a killed process, the OOM killer), then run "
                                 "again, with --workers 1 to use one process") from None

    def stop(self) -> None:
        self._warm.join()
        stop_workers(self._pool)

    def close(self) -> None:
        self._warm.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    """Tasks on a Dask distributed cluster, their batches reported on a Dask queue. A task whose worker died is run
    again on another worker by the scheduler (as Dask does): a load run again knows it (a Dask variable its first
    attempt set), overwrites the keys its first attempt wrote (the target was flushed: they are its own) and says
    so in the report. A task the scheduler gave up on (its workers kept dying) is a clear error."""

    def __init__(self, scheduler: str, connect_timeout: float) -> None:
        from distributed import Queue

        self._client = dask_client(scheduler, connect_timeout)
        self.workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        self.where = f"Dask workers ({scheduler})"
        self._token = f"migrate-reload-{time.time_ns():x}"
        self._reports = Queue(self._token, client=self._client)  # type: ignore[no-untyped-call]
        self._futures: list[Any] = []
        self._marks: list[str] = []  # the Dask variables the load tasks set (see _attempt)

    def submit(self, fn: Callable[..., Any], name: str, *args: Any) -> Any:
        future = self._client.submit(fn, *args, key=f"{self._token}-{name}", pure=False)
        self._futures.append(future)
        return future

    def task(self, task: LoadTask) -> LoadTask:
        self._marks.append(f"{self._token}-started-{task.index}")
        return dataclasses.replace(task, reports=self._token)

    def wait(self, futures: list[Any], timeout: float) -> list[Any]:
        """The futures done, after `timeout` at most (polled: distributed.wait needs a default client, and this
        client is not made the process's default)."""
        deadline = time.monotonic() + timeout
        while True:
            done = [f for f in futures if f.done()]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.02)

    def drain(self, progress: RunProgress) -> None:
        for keys, nbytes in self._reports.get(batch=True, timeout=0):  # type: ignore[no-untyped-call]
            progress.advance(keys, nbytes)

    @contextlib.contextmanager
    def deaths(self, doing: str) -> Iterator[None]:
        from distributed import KilledWorker

        try:
            yield
        except KilledWorker as exc:
            raise MigrationError(f"Dask workers kept dying while {doing} ({' '.join(str(exc).split())[:200]})",
                                 "read the workers' logs (memory, a killed process), then run again") from None

    def stop(self) -> None:
        self._client.cancel(self._futures)  # an interrupt or a failure: the tasks stop on the cluster too

    def close(self) -> None:
        from distributed import Variable

        for name in self._marks:
            with contextlib.suppress(Exception):  # the scheduler may be gone: nothing to clean then
                Variable(name, client=self._client).delete()  # type: ignore[no-untyped-call]
        self._client.close()


def _ready() -> None:
    """Nothing: a task that makes a worker start."""


def check_task(file: Path, config: RunConfig, target: Capabilities) -> tuple[str, str, str] | None:
    """In a worker: check one file; the refusal comes back as data (its class by name)."""
    if not file.is_file():  # on Dask, a worker on another host: the folder is not shared
        return ("ConfigError", f"{file} is not readable on the worker host {socket.gethostname()}; the target was not "
                "touched", "with --scheduler, give --spool-dir (and --from-rdb files) a folder every worker reads")
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
    report = _reporter(task)
    config, again = _attempt(task)

    def on_batch(keys: int, nbytes: int) -> None:
        loaded.keys += keys
        if report is not None:
            report((keys, nbytes))

    try:
        target = Server("target", task.target, settings)
        loader = KeyLoader(config, target, task.target_topology)
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
    if again and loader is not None:
        loader.extras.notes.append(f"{task.name} was loaded again on another Dask worker after its worker died: the "
                                   "keys its first attempt wrote were overwritten with the same values")
    return _outcome(task, loaded, loader, None)


def _reporter(task: LoadTask) -> Callable[[tuple[int, int]], None] | None:
    """Where a worker reports its batches: the pool's queue (local processes) or the Dask queue the task names."""
    if task.reports is None:
        return None if _progress is None else _progress.put
    from distributed import Queue, get_client

    queue_ = Queue(task.reports, client=get_client())  # type: ignore[no-untyped-call]
    return cast(Callable[[tuple[int, int]], None], queue_.put)


def _attempt(task: LoadTask) -> tuple[RunConfig, bool]:
    """The config of this attempt, and whether an attempt of the same task ran before (on Dask, whose scheduler
    runs a task again when its worker dies): then the keys are written with REPLACE (they were that snapshot's own,
    the target having been flushed)."""
    if task.reports is None:
        return task.config, False
    from distributed import Variable, get_client

    mark = Variable(f"{task.reports}-started-{task.index}", client=get_client())  # type: ignore[no-untyped-call]
    try:
        mark.get(timeout=0)  # type: ignore[no-untyped-call]
    except TimeoutError:
        mark.set(True)  # type: ignore[no-untyped-call]
        return task.config, False
    options = dataclasses.replace(task.config.options, replace=True)
    return dataclasses.replace(task.config, options=options), True


def _outcome(task: LoadTask, loaded: _Loaded, loader: KeyLoader | None,
             error: tuple[str, str, str] | None) -> TaskOutcome:
    tallies = loader.tallies if loader is not None else {}
    extras = loader.extras if loader is not None else Extras()
    return TaskOutcome(task.index, tallies, extras, time.monotonic() - loaded.started, loaded.keys, peak_rss_kib(),
                       error)


def _set_queue(reports: Any) -> None:
    global _progress
    _progress = reports


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

