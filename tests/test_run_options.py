"""Key selection, rate limit, progress, report formats and SIGTERM, through the CLI against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.run_compare import differences
from tests.test_run_resume import ROOT, _wait_for_progress, fill
from tests.test_run_resume import cli as subprocess_cli


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def mixed(client) -> None:
    client.set("user:1", "a")
    client.set("user:2", "b")
    client.set("user:tmp", "c")
    client.hset("user:h", mapping={"f": "v"})
    client.zadd("user:z", {"m": 1})
    client.rpush("queue", "x")


def test_match_type_exclude_and_db_map(servers, capsys, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-9.1")
    mixed(source.client(0))
    source.client(2).set("user:other-db", "v")
    code, out, _ = cli(capsys, "--source", source.url, "--target", target.url, "--no-progress", "--match", "user:*",
                       "--type", "string", "--type", "hash", "--exclude", "*:tmp", "--db-map", "0:4",
                       "--checkpoint", str(tmp_path / "cp.json"), "--format", "json")
    assert code == 0
    assert sorted(target.client(4).keys()) == [b"user:1", b"user:2", b"user:h"]
    assert target.client(0).dbsize() == 0 and target.client(2).dbsize() == 0  # --db-map names only db 0
    report = json.loads(out)
    assert [(d["source_db"], d["target_db"], d["by_type"]) for d in report["dbs"]] == [(0, 4, {"hash": 1,
                                                                                              "string": 2})]


def test_single_type_and_db(servers, capsys, tmp_path):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.0")
    mixed(source.client(1))
    mixed(source.client(3))
    code, _, _ = cli(capsys, "--source", source.url, "--target", target.url, "--no-progress", "--type", "zset",
                     "--db", "3", "--checkpoint", str(tmp_path / "cp.json"))
    assert code == 0
    assert target.client(3).keys() == [b"user:z"] and target.client(1).dbsize() == 0


def test_rate_limit_and_progress_and_markdown(servers, capsys, tmp_path):
    source, target = servers.get("redis-6.0"), servers.get("valkey-8.1")
    fill(source.client(), 600)
    began = time.monotonic()
    code, out, err = cli(capsys, "--source", source.url, "--target", target.url, "--rate-limit", "1000",
                         "--progress", "--format", "markdown", "--checkpoint", str(tmp_path / "cp.json"))
    elapsed = time.monotonic() - began
    assert code == 0
    assert elapsed >= 0.45  # 600 keys at 1000 keys/s, one second of burst allowance at most 250 keys
    assert "keys/s" in err and "600/600" in err  # the progress bar, on stderr
    assert out.startswith("# migrate run (replay)") and "| source db | target db | copied |" in out
    assert differences(source.client(), target.client()) == []


def test_sigterm_saves_the_checkpoint_and_exits_130(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.0")
    fill(source.client(), 3000)
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "1000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(checkpoint, at_least=200)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "error: terminated (SIGTERM) (hint: rerun with --resume" in err
    saved = json.loads(checkpoint.read_text())["dbs"]["0"]
    assert saved["tally"]["copied"] >= 200 and not saved["done"]
    done = subprocess_cli(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert differences(source.client(), target.client()) == []
