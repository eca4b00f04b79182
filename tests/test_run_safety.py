"""Never destroy what the user did not give up, never report work that was not done (run), on real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fixtures.tcpproxy import TcpProxy
from migrate.cli import run_cli
from migrate.config import CommonConfig, parse_endpoint
from migrate.errors import ConfigError, ExitCode, IncompatibleDataError
from migrate.rdb.rewrite import temp_key
from migrate.run import OnIncompatible, RunConfig, RunOptions, run
from migrate.selection import KeySelection
from migrate.verify import VerifyConfig, verify
from tests.run_compare import differences
from tests.test_run_matrix import config
from tests.test_run_resume import ROOT, _wait_for_progress, cli, fill


def test_a_database_holding_only_big_keys_is_copied(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().hset("big", mapping={f"f{i}": f"v{i}" for i in range(50_000)})
    result = run(config(source, target, tmp_path, big_key_threshold=64 * 1024))
    assert result.copied == 1 and result.dbs[0].by_route == {"chunked": 1}
    assert differences(source.client(), target.client()) == []


@pytest.mark.parametrize("policy", [OnIncompatible.SKIP, OnIncompatible.LOSSY])
def test_a_value_longer_than_the_targets_limit_goes_to_the_policy(servers, tmp_path, policy):
    source = servers.get("redis-7.0")
    target = servers.get("valkey-8.1", "--proto-max-bulk-len", "1mb")
    source.client().set("huge", os.urandom(5 * 1024 * 1024))
    source.client().set("small", "v")
    result = run(config(source, target, tmp_path, on_incompatible=policy))
    assert [(i.key, "proto-max-bulk-len" in i.reason) for i in result.skipped] == [("huge", True)]
    assert target.client().keys() == [b"small"]
    assert not list(target.client().scan_iter(match="*migrate-tmp:*"))


def test_a_value_longer_than_the_targets_limit_fails_by_default_and_names_the_key(servers, tmp_path):
    source = servers.get("redis-7.0")
    target = servers.get("valkey-8.1", "--proto-max-bulk-len", "1mb")
    source.client().set("huge", os.urandom(3 * 1024 * 1024))
    with pytest.raises(IncompatibleDataError) as err:
        run(config(source, target, tmp_path))
    assert "huge" in err.value.message and "proto-max-bulk-len" in err.value.message
    assert err.value.exit_code == ExitCode.MIGRATION


# -- 1. the source and the target are never the same server ---

def same_server_urls(server) -> tuple[str, str]:
    return f"redis://127.0.0.1:{server.port}", f"redis://localhost:{server.port}"  # one server, two spellings


@pytest.mark.parametrize("args", [
    ("--flush-target", "--yes"),
    ("--strategy", "reload", "--yes"),
    ("--strategy", "replicaof", "--yes"),
], ids=["replay-flush", "reload", "replicaof"])
def test_a_server_is_never_migrated_onto_itself(servers, capsys, tmp_path, args):
    server = servers.get("valkey-8.1")
    server.client().set("precious", "v")
    source, target = same_server_urls(server)
    code = run_cli(["run", "--source", source, "--target", target, "--checkpoint", str(tmp_path / "cp.json"), *args])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG and "the same server" in err, err
    assert server.client().get("precious") == b"v" and server.client().info("replication")["role"] == "master"


def test_verify_refuses_to_compare_a_server_with_itself(servers, capsys):
    server = servers.get("valkey-8.1")
    source, target = same_server_urls(server)
    assert run_cli(["verify", "--source", source, "--target", target]) == ExitCode.CONFIG
    assert "the same server" in capsys.readouterr().err


def test_copying_between_databases_of_one_server_is_allowed(servers, tmp_path):
    server = servers.get("valkey-8.1")
    server.client(0).set("k", "v")
    source, target = same_server_urls(server)
    result = run(RunConfig(CommonConfig(parse_endpoint(source), parse_endpoint(target)),
                           RunOptions(checkpoint=tmp_path / "cp.json", selection=KeySelection(db_map=((0, 3),)))))
    assert result.copied == 1 and server.client(3).get("k") == b"v"


# -- 2. the target, not the checkpoint, says what was copied ---

def _kill_when(proc, checkpoint: Path, at_least: int) -> None:
    try:
        _wait_for_progress(checkpoint, at_least=at_least)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_target_restarted_empty_during_the_run_is_filled_again(servers, tmp_path):
    source = servers.get("redis-7.0")
    target = servers.fresh("valkey-8.1")  # no persistence: a restart empties it
    fill(source.client(), 60_000)
    checkpoint = tmp_path / "cp.json"
    proc = subprocess.Popen([sys.executable, "-m", "migrate", "run", "--source", source.url, "--target", target.url,
                             "--checkpoint", str(checkpoint), "--retries", "10", "--rate-limit", "20000",
                             "--format", "json", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_progress(checkpoint, at_least=15_000)
    target.restart()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert any("copied again" in note for note in report["notes"]), report["notes"]
    assert report["totals"]["copied"] == 60_000
    assert differences(source.client(), target.client()) == []


def test_resume_after_the_target_restarted_empty_copies_again(servers, tmp_path):
    source = servers.get("redis-7.0")
    target = servers.fresh("valkey-8.1")
    fill(source.client(), 20_000)
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--format",
            "json", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "4000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, checkpoint, 4000)
    target.restart()
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert any("copied again" in n for n in json.loads(resumed.stdout)["notes"])
    assert differences(source.client(), target.client()) == []


def test_resume_after_someone_flushed_the_target_copies_again(servers, tmp_path):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-9.1")
    fill(source.client(), 20_000)
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--format",
            "json", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "4000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, checkpoint, 4000)
    target.client().flushall()
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert differences(source.client(), target.client()) == []


def test_a_killed_chunked_copy_leaves_no_temporary_key_after_resume(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    fill(source.client(), 20_000)
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "4000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, checkpoint, 4000)
    orphan = temp_key(b"k:1")  # what a kill in the middle of a chunked copy leaves behind
    target.client().set(orphan, "partial", px=3_600_000)
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not target.client().exists(orphan)
    assert differences(source.client(), target.client()) == []


# -- 4. reload never flushes before it holds a complete, valid snapshot ---

@pytest.fixture
def rdb_file(servers, tmp_path) -> Path:
    """A real RDB file of 3,000 keys, written by Redis 7.0."""
    writer = servers.fresh("redis-7.0", "--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    fill(writer.client(), 3000)
    writer.client().save()
    return tmp_path / "dump.rdb"


def reload_file(target, path: Path, *extra: str) -> tuple[int, str]:
    code = run_cli(["run", "--strategy", "reload", "--from-rdb", str(path), "--target", target.url, "--yes", *extra])
    return code, ""


@pytest.mark.parametrize("damage", ["truncated", "checksum"])
def test_a_damaged_rdb_file_never_flushes_the_target(servers, capsys, rdb_file, damage):
    target = servers.get("valkey-8.1")
    target.client().set("keep", "me")
    data = bytearray(rdb_file.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-3] ^= 0xFF  # inside the checksum
    rdb_file.write_bytes(bytes(data))
    code = run_cli(["run", "--strategy", "reload", "--from-rdb", str(rdb_file), "--target", target.url, "--yes",
                    "--replace"])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT and "not touched" in err, err
    assert target.client().keys() == [b"keep"]


def test_field_ttl_hashes_into_valkey_8_fail_before_the_flush(servers, capsys, tmp_path):
    writer = servers.fresh("redis-8.0.2", "--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    writer.client().hset("h", mapping={"a": "1", "b": "2"})
    writer.client().execute_command("HPEXPIRE", "h", 600_000, "FIELDS", 1, "a")
    writer.client().set("s", "v")
    writer.client().save()
    target = servers.get("valkey-8.1")
    target.client().set("keep", "me")
    code = run_cli(["run", "--strategy", "reload", "--from-rdb", str(tmp_path / "dump.rdb"), "--target", target.url,
                    "--yes"])
    err = capsys.readouterr().err
    assert code == ExitCode.PROBLEMS and "nothing was flushed" in err and "h" in err, err
    assert target.client().keys() == [b"keep"]


def test_a_live_snapshot_broken_mid_stream_leaves_the_target_untouched(servers, tmp_path):
    source = servers.get("redis-7.0", "--repl-diskless-sync", "no")
    for i in range(8):
        source.client().set(f"big:{i}", os.urandom(4 * 1024 * 1024))
    target = servers.get("valkey-8.1")
    target.client().set("keep", "me")
    with TcpProxy("127.0.0.1", source.port) as proxy:
        proc = subprocess.Popen([sys.executable, "-m", "migrate", "run", "--strategy", "reload", "--source",
                                 f"redis://127.0.0.1:{proxy.port}", "--target", target.url, "--yes", "--replace",
                                 "--spool-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(f.stat().st_size for f in tmp_path.glob("migrate-snapshot-*")) \
                < 2 * 1024 * 1024:  # the snapshot is flowing into the spool file
            time.sleep(0.005)
        proxy.reset()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.CONNECTION and "not touched" in err, err
    assert target.client().keys() == [b"keep"]
    assert not list(tmp_path.glob("migrate-snapshot-*"))  # the partial spool file is removed


# -- 5. a database named in a URL is the one used ---

def test_the_database_in_the_urls_is_honoured(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client(2).set("in-two", "v")
    source.client(0).set("in-zero", "v")
    result = run(RunConfig(CommonConfig(parse_endpoint(source.url_for(2)), parse_endpoint(target.url_for(5))),
                           RunOptions(checkpoint=tmp_path / "cp.json")))
    assert [(d.source_db, d.target_db, d.copied) for d in result.dbs] == [(2, 5, 1)]
    assert target.client(5).keys() == [b"in-two"] and target.client(0).dbsize() == 0
    assert any("db 0 (1 keys)" in note for note in result.notes)  # the unselected database is named
    proof = verify(VerifyConfig(CommonConfig(parse_endpoint(source.url_for(2)), parse_endpoint(target.url_for(5)))))
    assert proof.ok and [(d.source_db, d.target_db) for d in proof.databases] == [(2, 5)]


# -- 11. --flush-target empties only the databases the run writes into ---

def test_flush_target_leaves_databases_the_selection_writes_nothing_into(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("user:1", "v")
    target.client().set("other", "kept")
    result = run(RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)),
                           RunOptions(checkpoint=tmp_path / "cp.json", flush_target=True, yes=True,
                                      selection=KeySelection(match="nomatch*"))))
    assert result.copied == 0 and target.client().keys() == [b"other"]
    run(RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)),
                  RunOptions(checkpoint=tmp_path / "cp.json", flush_target=True, yes=True)))
    assert target.client().keys() == [b"user:1"]


# -- 13. more than 16 databases, CONFIG renamed ---

def test_databases_above_16_with_config_renamed(servers, tmp_path):
    source = servers.get("redis-7.0", "--databases", "32", "--rename-command", "CONFIG", "")
    target = servers.get("valkey-8.1", "--databases", "32")
    source.client(20).set("twenty", "v")
    source.client(31).set("thirty-one", "v")
    result = run(RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)),
                           RunOptions(checkpoint=tmp_path / "cp.json")))
    assert result.copied == 2 and target.client(31).get("thirty-one") == b"v"


def test_a_target_with_too_few_databases_is_refused_before_writing(servers, tmp_path):
    source = servers.get("redis-7.0", "--databases", "32")
    target = servers.get("valkey-8.1", "--rename-command", "CONFIG", "")  # 16 databases, not readable by CONFIG
    source.client(20).set("twenty", "v")
    source.client(0).set("zero", "v")
    with pytest.raises(ConfigError, match="db 20 does not exist"):
        run(RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)),
                      RunOptions(checkpoint=tmp_path / "cp.json")))
    assert target.client().dbsize() == 0


# -- 14. a copy under writes says so ---

def test_writes_to_the_source_during_the_copy_are_reported(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    fill(source.client(), 30_000)
    stop = threading.Event()

    def write() -> None:
        client = source.client()
        i = 0
        while not stop.is_set():
            client.set(f"live:{i % 500}", i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = run(RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)),
                               RunOptions(checkpoint=tmp_path / "cp.json", rate_limit=30_000)))
    finally:
        stop.set()
        writer.join()
    note = next(n for n in result.notes if "the source changed during the copy" in n)
    assert "writes" in note and "migrate verify" in note and "--strategy sync" in note


# -- 8. replicaof refuses a source that refuses replicas ---

def test_replicaof_refuses_a_source_with_sync_renamed(servers, capsys):
    source = servers.get("redis-7.0", "--rename-command", "PSYNC", "", "--rename-command", "SYNC", "")
    target = servers.get("valkey-8.1")
    code = run_cli(["run", "--strategy", "replicaof", "--source", source.url, "--target", target.url, "--yes",
                    "--sync-timeout", "30"])
    err = capsys.readouterr().err
    assert code == ExitCode.MIGRATION and "does not accept replicas" in err, err
    assert target.client().info("replication")["role"] == "master"
