"""Batches compared by a few worker threads, each with its own connections, while the main thread scans.

One batch at a time leaves the CPUs idle in turn: the servers wait while Python classifies, Python waits while the
servers answer. With a few batches in flight, scanning, both servers and the comparison overlap (socket waits release
the GIL). Results come back to the main thread in submission order and are recorded there, so the tracker needs no
lock; at most 2 x workers batches are in flight, which bounds memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from migrate.config import ConnectionSettings, Endpoint
from migrate.server import Channels


class Workers:
    def __init__(self, workers: int, source: Endpoint, target: Endpoint, settings: ConnectionSettings) -> None:
        # 0 workers: jobs run in the calling thread (no overlap; simplest to profile and debug).
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") if workers else None
        self.limit = 2 * workers
        self.endpoints = (source, target)
        self.settings = settings
        self.local = threading.local()
        self.created: list[Channels] = []
        self.lock = threading.Lock()
        self.inflight: deque[tuple[Future[Any], Callable[[Any], None]]] = deque()

    def sides(self) -> tuple[Channels, Channels]:
        """This thread's own source and target connections."""
        sides: tuple[Channels, Channels] | None = getattr(self.local, "sides", None)
        if sides is None:
            source, target = self.endpoints
            sides = (Channels("source", source, self.settings), Channels("target", target, self.settings))
            self.local.sides = sides
            with self.lock:
                self.created.extend(sides)
        return sides

    def submit(self, job: Callable[[Channels, Channels], Any], done: Callable[[Any], None]) -> None:
        if self.executor is None:
            done(self._run(job))
            return
        self.inflight.append((self.executor.submit(self._run, job), done))
        while len(self.inflight) > self.limit:
            self._finish_one()

    def _run(self, job: Callable[[Channels, Channels], Any]) -> Any:
        return job(*self.sides())

    def _finish_one(self) -> None:
        future, done = self.inflight.popleft()
        done(future.result())

    def drain(self) -> None:
        while self.inflight:
            self._finish_one()

    def close(self) -> None:
        for future, _ in self.inflight:
            future.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        for side in self.created:
            side.close()
