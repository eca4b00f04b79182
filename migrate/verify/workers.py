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

Nodes = tuple[Endpoint, Endpoint]  # (source node, target node) a job reads


class Workers:
    def __init__(self, workers: int, source: Endpoint, target: Endpoint, settings: ConnectionSettings) -> None:
        # 0 workers: jobs run in the calling thread (no overlap; simplest to profile and debug).
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") if workers else None
        self.limit = 2 * workers
        self.endpoints = (source, target)  # the default pair (a cluster's jobs name the nodes they read)
        self.settings = settings
        self.local = threading.local()
        self.created: list[Channels] = []
        self.lock = threading.Lock()
        self.inflight: deque[tuple[Future[Any], Callable[[Any], None]]] = deque()

    def sides(self, nodes: Nodes | None = None) -> tuple[Channels, Channels]:
        """This thread's own connections to a source and a target node (default: the two servers)."""
        source, target = nodes or self.endpoints
        pool: dict[str, dict[tuple[str, int, int], Channels]] | None = getattr(self.local, "pool", None)
        if pool is None:
            pool = self.local.pool = {"source": {}, "target": {}}
        return self._channels(pool, "source", source), self._channels(pool, "target", target)

    def _channels(self, pool: dict[str, dict[tuple[str, int, int], Channels]], role: str,
                  endpoint: Endpoint) -> Channels:
        key = (endpoint.host if not endpoint.path else endpoint.path, endpoint.port, endpoint.db)
        found = pool[role].get(key)
        if found is None:
            found = pool[role][key] = Channels(role, endpoint, self.settings)
            with self.lock:
                self.created.append(found)
        return found

    def submit(self, job: Callable[[Channels, Channels], Any], done: Callable[[Any], None],
               nodes: Nodes | None = None) -> None:
        if self.executor is None:
            done(self._run(job, nodes))
            return
        self.inflight.append((self.executor.submit(self._run, job, nodes), done))
        while len(self.inflight) > self.limit:
            self._finish_one()

    def _run(self, job: Callable[[Channels, Channels], Any], nodes: Nodes | None = None) -> Any:
        return job(*self.sides(nodes))

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
