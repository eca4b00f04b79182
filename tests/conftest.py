"""Real-server harness: a session-scoped factory of throwaway servers on free loopback ports.

Servers are reused across tests (keyed by name and start arguments) and emptied before each use; all are stopped at
the end of the session, even on failure. A version that is not provisioned is skipped locally and fails under CI.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # fixtures/ (datasets) is imported by tests, not installed

from fixtures.sandbox import LocalServer, ServerStartError, load_manifest  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(name: str) -> None:
    message = f"server {name} is not provisioned (run: scripts/servers {name})"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class ServerFactory:
    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self.binaries = load_manifest()
        self.shared: dict[tuple[str, tuple[str, ...], str | None], LocalServer] = {}
        self.private: list[LocalServer] = []
        atexit.register(self.stop_all)

    def _new(self, name: str, args: tuple[str, ...], password: str | None) -> LocalServer:
        if name not in self.binaries:
            missing(name)
        workdir = self.tmp_root / f"{name}-{len(self.shared) + len(self.private)}"
        workdir.mkdir(parents=True)
        try:
            return LocalServer(self.binaries[name], args, workdir, password).start()
        except ServerStartError as exc:
            pytest.fail(str(exc))

    def get(self, name: str, *args: str, password: str | None = None) -> LocalServer:
        """A shared server of this version and arguments, flushed (every db) and ready."""
        key = (name, args, password)
        server = self.shared.get(key)
        if server is None or server.process is None or server.process.poll() is not None:
            server = self.shared[key] = self._new(name, args, password)
        reset(server)
        return server

    def fresh(self, name: str, *args: str, password: str | None = None) -> LocalServer:
        """A private server for tests that kill, restart or reconfigure it; stopped at the end of the session."""
        server = self._new(name, args, password)
        self.private.append(server)
        return server

    def stop_all(self) -> None:
        for server in [*self.shared.values(), *self.private]:
            server.stop()
        self.shared.clear()
        self.private.clear()


def reset(server: LocalServer) -> None:
    client = server.client()
    try:
        client.execute_command("FLUSHALL")
        client.execute_command("FUNCTION", "FLUSH") if server.binary.version >= "7" else None
        users = [u for u in client.execute_command("ACL", "USERS") if u not in (b"default", "default")]
        if users:  # a test's ACL users would show up in the next test's verification
            client.execute_command("ACL", "DELUSER", *users)
    except redis.ResponseError:
        pass
    finally:
        client.close()


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    yield factory
    factory.stop_all()


@pytest.fixture
def server(servers: ServerFactory, request: pytest.FixtureRequest) -> LocalServer:
    """A clean shared server of the version named by the test's `name` parameter."""
    return servers.get(request.getfixturevalue("name"))


from tests.cluster_support import clusters  # noqa: E402, F401  (the session-scoped factory of local clusters)
