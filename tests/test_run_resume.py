"""Interruptions: kill -9 mid-run then --resume, a target restart mid-run, live writes and deletes on the source, keys
that vanish or expire between their read and their write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fixtures.dataset import populate
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.identity import identify
from migrate.run import run
from migrate.run.checkpoint import Checkpoint
from migrate.run.convert import Converter
from migrate.run.options import RunOptions
from migrate.run.ratelimit import RateLimiter
from migrate.run.replay import SourceReader
from migrate.run.tally import DbTally
from migrate.run.writer import TargetWriter
from migrate.server import Server
from migrate.wire import Channel
from tests.run_compare import differences
from tests.test_run_matrix import config

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Pa55"


def fill(client, count: int, prefix: str = "k") -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:{i}", f"value-{i}-" + "x" * 50)
        if i % 3 == 0:
            pipe.pexpire(f"{prefix}:{i}", 3_600_000)
    pipe.execute()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrate", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_kill_9_mid_run_then_resume_ends_like_an_uninterrupted_run(servers, tmp_path):
    source = servers.get("redis-8.0.2", password=PASSWORD)
    target = servers.get("valkey-8.1", password=PASSWORD)
    data = populate(source.client(), field_ttls=False)
    fill(source.client(0), 3000)
    fill(source.client(1), 1000, "one")
    total = data.total + 4000
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint),
            "--format", "json", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "1500"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        progress = _wait_for_progress(checkpoint, at_least=600)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    copied_before = sum(int(db["tally"]["copied"]) for db in json.loads(checkpoint.read_text())["dbs"].values())
    assert 0 < copied_before < total and progress >= 600
    assert PASSWORD not in checkpoint.read_text()  # the checkpoint never holds a secret

    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] is True
    assert report["totals"] == {"copied": total, "expired": 0, "skipped": 0, "changed": 0, "busy": 0, "empty": 0,
                                "rebuilt": 0}
    for db in (0, 1, 2):
        assert differences(source.client(db), target.client(db)) == [], f"db {db}"
    assert not checkpoint.exists()
    assert PASSWORD not in resumed.stdout + resumed.stderr


def _wait_for_progress(checkpoint: Path, at_least: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads(checkpoint.read_text())
            copied = sum(int(db["tally"]["copied"]) for db in state["dbs"].values())
            if copied >= at_least:
                return copied
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("the run made no progress")


def test_resume_refuses_a_checkpoint_of_another_run(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.0")
    fill(source.client(), 10)
    checkpoint = tmp_path / "cp.json"
    Checkpoint(checkpoint, {"source": "redis://elsewhere:1/0"}).save()
    done = cli("run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--resume")
    assert done.returncode == 1 and "is for another run" in done.stderr
    missing = cli("run", "--source", source.url, "--target", target.url, "--checkpoint", str(tmp_path / "none"),
                  "--resume")
    assert missing.returncode == 1 and "no checkpoint to resume from" in missing.stderr


def test_target_restart_mid_run(servers, tmp_path):
    source = servers.get("redis-7.0")
    target = servers.fresh("valkey-9.1", "--appendonly", "yes", "--appendfsync", "everysec")
    fill(source.client(), 4000)
    restarted = threading.Event()

    def restart_soon() -> None:
        _wait_for_progress(tmp_path / "checkpoint.json", at_least=500)
        target.restart()
        restarted.set()

    thread = threading.Thread(target=restart_soon, daemon=True)
    thread.start()
    result = run(config(source, target, tmp_path, rate_limit=2000.0, checkpoint_interval=0.1))
    thread.join(timeout=30)
    assert restarted.is_set()
    assert result.copied == 4000 and not result.busy
    assert any("the target restarted during the run" in note for note in result.notes)
    assert differences(source.client(), target.client()) == []


def test_live_writes_and_deletes_during_the_run(servers, tmp_path):
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-8.1")
    fill(source.client(), 3000)
    touched: set[bytes] = set()
    stop = threading.Event()

    def traffic() -> None:
        client = source.client()
        i = 0
        while not stop.is_set():
            client.set(f"k:{i * 7 % 3000}", f"new-{i}")  # updates keys the run may already have copied
            client.delete(f"k:{(i * 11 + 5) % 3000}")
            client.set(f"live:{i}", "born during the run")
            touched.update({f"k:{i * 7 % 3000}".encode(), f"k:{(i * 11 + 5) % 3000}".encode(),
                            f"live:{i}".encode()})
            i += 1
            time.sleep(0.005)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        result = run(config(source, target, tmp_path, rate_limit=3000.0, verify=True))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(touched) > 100
    assert differences(source.client(), target.client(), ignore=touched) == []  # untouched keys: equal
    reported = {d.key for d in result.verify.divergent.keys}  # --verify names what live traffic changed
    assert reported <= touched
    assert result.copied + result.expired >= 3000 - len(touched)


def test_keys_gone_between_read_and_write_are_counted_not_resurrected(servers):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    client = source.client()
    client.set("stays", "v")
    client.set("expires", "v", px=400)
    settings = ConnectionSettings()
    src = Server("source", parse_endpoint(source.url), settings)
    reader = SourceReader(Channel(src.endpoint, settings, "source", 0), src, RunOptions(), RateLimiter(None), settings)
    items = reader.fetch([b"stays", b"expires", b"deleted-meanwhile"], {})
    assert items[2] == (b"deleted-meanwhile", None, None, 0)  # DUMP nil: vanished since SCAN
    time.sleep(0.5)  # "expires" is now past its absolute expiry: writing it would resurrect it
    writer = TargetWriter(Channel(parse_endpoint(target.url), settings, "target", 0),
                          Converter(identify(target.client()).capabilities, 1 << 20), RunOptions().on_incompatible,
                          settings,
                          source_db=0, restore_limit=1 << 20, copier=None, types=frozenset(), dry_run=False)
    tally = DbTally(0, 0)
    writer.write(items, tally, replace=False, retry_replace=True)
    assert (tally.copied, tally.expired) == (1, 2)
    assert target.client().keys() == [b"stays"]
