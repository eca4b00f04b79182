"""Helpers of the sync tests: a sync running in a thread (steered like the CLI steers it), live traffic from another
process, and the comparison of both sides read back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fixtures.sandbox import LocalServer
from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
from migrate.run import RunConfig, RunOptions, RunResult, Strategy, run
from migrate.run.sync.control import SyncControl
from tests import stream_support as ss

ROOT = Path(__file__).resolve().parent.parent
FAST = ("--repl-diskless-sync-delay", "0")


def sync_config(source_url: str, target_url: str, tmp_path: Path, **options: Any) -> RunConfig:
    common = CommonConfig(parse_endpoint(source_url), parse_endpoint(target_url), ConnectionSettings(retries=3))
    defaults: dict[str, Any] = {"strategy": Strategy.SYNC, "checkpoint": tmp_path / "sync.checkpoint.json",
                                "status_file": tmp_path / "status.json", "spool_dir": tmp_path,
                                "cutover_grace": 0.5}
    return RunConfig(common, RunOptions(**{**defaults, **options}))


class SyncRun:
    """`run(config)` of a sync in a thread; `status()` reads its status file, `cutover()` asks and waits."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.control = SyncControl()
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = run(self.config, control=self.control)
        except BaseException as exc:
            self.error = exc

    def status(self) -> dict[str, Any]:
        path = self.config.options.status_file
        assert path is not None
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def wait(self, predicate: Any, timeout: float = 60.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise self.error
            status = self.status()
            if status and predicate(status):
                return status
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
            time.sleep(0.05)

    def streaming(self, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(lambda s: s["phase"] == "streaming", timeout, "the stream")

    def caught_up(self, source: LocalServer, timeout: float = 60.0) -> dict[str, Any]:
        """Streaming, and the target has applied the source's offset as it is now."""
        offset = int(source.client().info("replication")["master_repl_offset"])
        return self.wait(lambda s: s["phase"] == "streaming" and s["applied_offset"] >= offset, timeout,
                         f"offset {offset}")

    def cutover(self, timeout: float = 120.0) -> RunResult:
        self.control.request_cutover()
        return self.join(timeout)

    def join(self, timeout: float = 120.0) -> RunResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the sync did not end: {self.status()}"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def traffic(url: str, mode: str, arg: str = "1") -> subprocess.Popen[str]:
    """The traffic worker in its own process, started and connected."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.sync_traffic", url, mode, arg], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"traffic did not start: {line} {proc.stderr.read() if proc.stderr else ''}"
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def sync_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "migrate", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def under_steady_traffic(config: RunConfig, source: LocalServer, tmp_path: Path) -> RunResult:
    """The job of `config` (sync or relay) while the traffic worker writes steadily, then caught up and cut over."""
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    job = SyncRun(config)
    job.streaming()
    time.sleep(0.5)
    stop.touch()
    finish(writes)
    job.caught_up(source)
    return job.cutover()


class CliRun:
    """`migrate run --strategy <strategy>` as CLI processes sharing one status file and checkpoint (a kill -9, a
    --resume, `migrate cutover`), with the traffic worker's live writes."""

    def __init__(self, strategy: str, source: LocalServer, target: LocalServer, tmp_path: Path) -> None:
        self.status = tmp_path / "status.json"
        self.args = ["run", "--strategy", strategy, "--source", source.url, "--target", target.url, "--checkpoint",
                     str(tmp_path / "cp.json"), "--status-file", str(self.status), "--spool-dir", str(tmp_path),
                     "--no-progress", "--cutover-grace", "0.5", "--format", "json"]

    def start(self, *extra: str) -> subprocess.Popen[str]:
        return sync_cli(*self.args, *extra)

    def read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def wait(self, proc: subprocess.Popen[str], predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not predicate(doc := self.read()):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, doc
            time.sleep(0.05)
        return doc

    def streaming(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        """This process's job streams (and, for a first one, has applied some of the stream)."""
        return self.wait(proc, lambda d: d.get("pid") == proc.pid and d["phase"] == "streaming"
                         and d["applied_offset"] > 0 and d["counters"]["commands"])

    def cutover(self, proc: subprocess.Popen[str], source: LocalServer) -> dict[str, Any]:
        """Wait until the job applied the source's offset, ask `migrate cutover`, and return the job's report."""
        offset = int(source.client().info("replication")["master_repl_offset"])
        self.wait(proc, lambda d: d["applied_offset"] >= offset)
        asked = subprocess.run([sys.executable, "-m", "migrate", "cutover", "--status-file", str(self.status)],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert asked.returncode == 0, asked.stderr
        assert "cutover done" in asked.stdout and "write pause" in asked.stdout
        cut = json.loads(self.status.read_text())["cut_offset"]  # the moment to repoint clients, said when it came
        assert f"cutover point reached at source offset {cut} " in asked.stderr and "repoint" in asked.stderr
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        return dict(json.loads(out))


def compare(source: LocalServer, target: LocalServer, *, field_ttls: bool = True,
            skipped: set[tuple[int, bytes]] | None = None,
            dbs: tuple[int, ...] = (0, 1, 2)) -> dict[tuple[int, bytes], str]:
    """What differs between the two sides (the marker key left out), minus the keys the run named skipped; hash
    field TTLs compared only when the target can hold them."""
    src, dst = ss.snapshot(source.client(), dbs), ss.snapshot(target.client(), dbs)
    for ident in skipped or ():
        src.pop(ident, None)
    ignore = None if field_ttls else {ident for ident, (kind, _, _) in src.items() if kind == "hash"}
    return ss.differences(src, dst, ttl_tolerance_ms=2500, ignore_field_ttls=ignore)


def named(result: RunResult, what: str) -> set[tuple[int, bytes]]:
    """Keys the stream (or the snapshot load) named as skipped or changed."""
    assert result.sync is not None
    keys = {(i["db"], i["key"].encode()) for i in result.sync.stream[what]["named"]}
    issues = result.skipped if what == "skipped" else result.changed
    return keys | {(i.db, i.key.encode()) for i in issues}
