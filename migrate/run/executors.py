"""Where the units of a sharded replay run: in this process (one worker), in local worker processes (`--workers N`),
or on a Dask distributed cluster (`--scheduler tcp://HOST:PORT`, the optional `distributed` extra).

Every way runs the same function (migrate.run.shards.copy_unit) on the same frozen Unit, and retries a task that
raised (a crash, a worker lost, a cluster down for longer than the router waits) up to SHARD_RETRIES times: the task
continues from its checkpoint file. Progress comes back the same way from every worker: the coordinator reads the
units' checkpoint files (a folder every worker shares) once a second; in this process, after every batch.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Final

from migrate.errors import ConfigError, MigrationError
from migrate.logs import get_logger
from migrate.run.shards import RETRYABLE, Progress, Unit, UnitOutcome, copy_unit

log = get_logger(__name__)

SHARD_RETRIES: Final = 2  # a task that raised is run again this many times, from its checkpoint
POLL_SECONDS: Final = 1.0
Tick = Callable[[], None]


class Monitor:
    """Progress of units running elsewhere, read from their checkpoint files (keys processed, bytes)."""

    def __init__(self, units: Sequence[Unit], advance: Callable[[int, int], None]) -> None:
        self.paths = [u.checkpoint for u in units]
        self.advance = advance
        self.seen: dict[Path, tuple[int, int]] = {p: _processed(p) for p in self.paths}

    def poll(self) -> None:
        keys = nbytes = 0
        for path in self.paths:
            now = _processed(path)
            before = self.seen[path]
            keys, nbytes = keys + max(0, now[0] - before[0]), nbytes + max(0, now[1] - before[1])
            self.seen[path] = now
        if keys or nbytes:
            self.advance(keys, nbytes)


def _processed(path: Path) -> tuple[int, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tallies = [state["tally"] for state in data["dbs"].values()]
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
    keys = sum(int(t["copied"]) + int(t["expired"]) + len(t["skipped"]) + len(t["busy"]) for t in tallies)
    return keys, sum(int(t["bytes"]) for t in tallies)


def execute(units: Sequence[Unit], workers: int, scheduler: str | None, monitor: Monitor,
            progress: Progress | None, connect_timeout: float = 30.0) -> list[UnitOutcome]:
    """Run every unit; outcomes in the units' order."""
    if scheduler is not None:
        return _on_dask(units, scheduler, monitor, connect_timeout)
    if workers <= 1 or len(units) <= 1:
        return [_in_process(unit, progress) for unit in units]
    return _in_processes(units, workers, monitor)


def _in_process(unit: Unit, progress: Progress | None) -> UnitOutcome:
    for attempt in range(SHARD_RETRIES + 1):
        try:
            return copy_unit(unit, progress)
        except RETRYABLE as exc:
            if attempt == SHARD_RETRIES:
                raise
            log.warning("shard task failed: retried from its checkpoint", unit=unit.name, attempt=attempt + 1,
                        error=exc.message)
    raise AssertionError("unreachable")  # pragma: no cover


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that imported migrate once: a clean process each (no thread or connection
    of the coordinator inherited), without each one paying the imports again (~0.3 s of CPU a process, measured:
    bench/RESULTS.md). Where there is no fork server (not POSIX), spawned interpreters."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["migrate.run.shards"])
    return context


def _in_processes(units: Sequence[Unit], workers: int, monitor: Monitor) -> list[UnitOutcome]:
    """Local worker processes, each running one unit at a time."""
    outcomes: dict[str, UnitOutcome] = {}
    attempts = {u.name: 0 for u in units}
    todo = list(units)
    while todo:
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=worker_context()) as pool:
            running = {pool.submit(copy_unit, unit): unit for unit in todo}
            todo = []
            try:
                while running:
                    done, _ = cf.wait(running, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
                    monitor.poll()
                    for future in done:
                        unit = running.pop(future)
                        try:
                            outcomes[unit.name] = future.result()
                        except (*RETRYABLE, BrokenProcessPool) as exc:
                            _retry(unit, attempts, exc)
                            todo.append(unit)
            except BaseException:
                stop_workers(pool)  # an interrupt or a failure: no worker goes on copying behind our back
                raise
        monitor.poll()
    return [outcomes[u.name] for u in units]


def stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate the pool's processes (SIGTERM: a unit stops where it is; its checkpoint is at most one interval old,
    as after a kill, and --resume continues from it). The executor has no public way before Python 3.14."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)


def _retry(unit: Unit, attempts: dict[str, int], exc: BaseException) -> None:
    attempts[unit.name] += 1
    if attempts[unit.name] > SHARD_RETRIES:
        if isinstance(exc, BrokenProcessPool):
            raise MigrationError(f"the worker process copying {unit.name} died {attempts[unit.name]} times",
                                 "check the machine's memory and logs, then rerun with --resume") from exc
        raise exc
    log.warning("shard task failed: retried from its checkpoint", unit=unit.name, attempt=attempts[unit.name],
                error=str(exc)[:200])


def dask_client(scheduler: str, connect_timeout: float) -> Any:
    """A client of the Dask scheduler at `scheduler` (the optional `distributed` extra); ConfigError when there is
    none, or no scheduler answers."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs Dask distributed, which is not installed",
                          "pip install 'valkey-migrate[distributed]'") from None
    try:
        return Client(scheduler, timeout=max(1.0, connect_timeout),  # type: ignore[no-untyped-call]
                      set_as_default=False)
    except OSError as exc:
        raise ConfigError(f"no Dask scheduler answered at {scheduler}: {exc}",
                          "start one (`dask scheduler`) and its workers (`dask worker ADDRESS`), or drop --scheduler"
                          ) from None


def _on_dask(units: Sequence[Unit], scheduler: str, monitor: Monitor, connect_timeout: float) -> list[UnitOutcome]:
    """Dask distributed: one task per unit, retried by the scheduler (from the unit's checkpoint) when it raises or
    its worker dies."""
    client = dask_client(scheduler, connect_timeout)
    token = f"{time.time_ns():x}"
    try:
        futures = [client.submit(copy_unit, unit, key=f"migrate-{unit.name}-{token}", retries=SHARD_RETRIES,
                                 pure=False) for unit in units]
        try:
            while not all(f.done() for f in futures):
                time.sleep(POLL_SECONDS)
                monitor.poll()
        except BaseException:
            client.cancel(futures)  # an interrupt: the tasks stop on the cluster too
            raise
        monitor.poll()
        return [f.result() for f in futures]
    finally:
        client.close()
