"""Real clusters for tests: a session-scoped factory of local clusters (fixtures/cluster.py), stopped at the end of
the session even when tests fail (the fixture's finalizer and atexit).

`clusters.get(server, shards, replicas)` hands out a shared cluster, emptied, with its original layout (rebuilt when a
test changed it); `clusters.fresh(...)` a private one for tests that fail over, reshard, kill or break it.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.cluster import ClusterSpec, ClusterStartError, LocalCluster, start_cluster
from fixtures.sandbox import load_manifest

PASSWORD = "cluster-secret-9f3"  # a value tests can search for in messages and logs


def missing(name: str) -> None:
    """Like tests/conftest.py: a version that is not provisioned is skipped locally and fails under CI."""
    message = f"server {name} is not provisioned (run: scripts/servers {name})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class ClusterFactory:
    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self.binaries = load_manifest()
        self.shared: dict[ClusterSpec, LocalCluster] = {}
        self.private: list[LocalCluster] = []
        self.startup_seconds: list[tuple[ClusterSpec, float]] = []
        atexit.register(self.stop_all)

    def _start(self, spec: ClusterSpec) -> LocalCluster:
        if spec.server not in self.binaries:
            missing(spec.server)
        root = self.tmp_root / f"{spec.server}-{len(self.startup_seconds)}"
        root.mkdir(parents=True)
        try:
            cluster = start_cluster(spec, root)
        except ClusterStartError as exc:
            pytest.fail(str(exc))
        self.startup_seconds.append((spec, cluster.startup_seconds))
        return cluster

    def get(self, server: str, shards: int = 3, replicas: int = 0, password: str | None = None) -> LocalCluster:
        """A shared cluster of this shape: every primary flushed, the original layout checked (else rebuilt)."""
        spec = ClusterSpec(server, shards, replicas, password)
        cluster = self.shared.get(spec)
        if cluster is not None and not cluster.intact():
            cluster.stop()
            cluster = None
        if cluster is None:
            cluster = self.shared[spec] = self._start(spec)
        cluster.flushall()
        return cluster

    def fresh(self, server: str, shards: int = 3, replicas: int = 0, password: str | None = None,
              node_timeout_ms: int = 5000, args: tuple[str, ...] = ()) -> LocalCluster:
        """A private cluster (stopped at the end of the session) for tests that change its topology."""
        cluster = self._start(ClusterSpec(server, shards, replicas, password, node_timeout_ms, args))
        self.private.append(cluster)
        return cluster

    def stop_all(self) -> None:
        for cluster in [*self.shared.values(), *self.private]:
            cluster.stop()
        self.shared.clear()
        self.private.clear()


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    factory = ClusterFactory(tmp_path_factory.mktemp("clusters"))
    yield factory
    factory.stop_all()
