"""Throwaway local servers from the provisioned matrix (scripts/servers): used by the tests, the demo and bench/.

Servers bind to 127.0.0.1 on a free port, keep their files in a private folder and never daemonize, so they can
always be stopped (their process group is killed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent


def servers_dir() -> Path:
    return Path(os.environ.get("MIGRATE_SERVERS_DIR") or REPO / ".servers")


@dataclass(frozen=True)
class ServerBinary:
    name: str  # matrix entry, e.g. redis-8.0.2
    product: str
    version: str
    server: str
    cli: str
    modules: dict[str, str] = field(default_factory=dict)


def load_manifest() -> dict[str, ServerBinary]:
    path = servers_dir() / "manifest.json"
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: ServerBinary(**{k: v for k, v in entry.items() if k != "suite"})
            for name, entry in raw.items() if isinstance(entry, dict) and "server" in entry}


def load_tools() -> dict[str, str]:
    """Helper programs provisioned beside the servers (stunnel4, openssl)."""
    path = servers_dir() / "manifest.json"
    tools = json.loads(path.read_text()).get("tools", {}) if path.exists() else {}
    return {str(k): str(v) for k, v in tools.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerStartError(RuntimeError):
    pass


class LocalServer:
    """One running server process."""

    def __init__(self, binary: ServerBinary, args: tuple[str, ...] = (), workdir: Path | None = None,
                 password: str | None = None) -> None:
        self.binary = binary
        self.args = args
        self.password = password
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix=f"migrate-{binary.name}-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.binary.name

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def url_for(self, db: int = 0, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user or ''}:{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def command_line(self) -> list[str]:
        base = [self.binary.server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
                "--logfile", str(self.dir / "server.log")]
        if self.password:
            base += ["--requirepass", self.password]
        return base + list(self.args)

    def start(self, port: int | None = None, timeout: float = 15.0) -> LocalServer:
        for _ in range(5):
            self.port = port or free_port()
            self.process = subprocess.Popen(self.command_line(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            start_new_session=True)
            if self._wait_ready(timeout):
                return self
            if port:  # a fixed port that failed will fail again
                break
        raise ServerStartError(f"{self.name} did not start: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with self.client(socket_timeout=1) as c:
                    c.ping()
                return True
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            time.sleep(0.05)
        return False

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, lines: int = 15) -> str:
        path = self.dir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self.process is not None and self.process.stderr is not None and self.process.poll() is not None:
            text += self.process.stderr.read().decode(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> LocalServer:
        """Stop and start again on the same port and folder (data persists only if the args enable it)."""
        self.stop()
        return self.start(port=self.port)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalServer:
        # start_server() hands out a running server: entering it must not start (and leak) a second process.
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def start_server(name: str, args: tuple[str, ...] = (), password: str | None = None) -> LocalServer:
    binaries = load_manifest()
    if name not in binaries:
        raise ServerStartError(f"server {name} is not provisioned: run scripts/servers {name}")
    return LocalServer(binaries[name], args, password=password).start()
