"""Bad input through the real CLI: one error line, the documented exit code, the target protected."""

from __future__ import annotations

import json

from fixtures.dataset import populate
from fixtures.sandbox import free_port
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.run_compare import differences
from tests.test_run_resume import fill


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["run", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_non_empty_target_is_refused_unless_replace_or_flush(servers, capsys, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    fill(source.client(), 50)
    target.client().set("k:1", "the target's own value")
    target.client().set("unrelated", "kept")
    base = ("--source", source.url, "--target", target.url, "--checkpoint", str(tmp_path / "cp.json"))

    code, _, err = cli(capsys, *base)
    assert code == ExitCode.MIGRATION
    assert "target is not empty: db 0 holds 2 keys" in error_line(err) and "--replace" in error_line(err)
    assert target.client().dbsize() == 2 and target.client().get("k:1") == b"the target's own value"

    code, _, err = cli(capsys, *base, "--flush-target")  # not a terminal: no prompt, an error
    assert code == ExitCode.CONFIG and "confirm with --yes" in error_line(err)
    assert target.client().dbsize() == 2

    code, out, _ = cli(capsys, *base, "--replace", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["copied"] == 50
    assert target.client().get("unrelated") == b"kept"
    assert differences(source.client(), target.client(), ignore=[b"unrelated"]) == []

    code, out, _ = cli(capsys, *base, "--flush-target", "--yes", "--format", "json")
    assert code == 0 and differences(source.client(), target.client()) == []


def test_keys_that_exist_mid_run_are_named_busy_not_overwritten(servers, capsys, tmp_path):
    """Two source dbs merged into one target db: the second copy of a name finds it there and leaves it alone."""
    source, target = servers.get("redis-6.0"), servers.get("valkey-8.0")
    source.client(0).set("same", "from db 0")
    source.client(1).set("same", "from db 1")
    source.client(1).set("only-in-1", "v")
    code, out, err = cli(capsys, "--source", source.url, "--target", target.url, "--db-map", "0:5,1:5",
                         "--checkpoint", str(tmp_path / "cp.json"), "--format", "json")
    assert code == ExitCode.PROBLEMS
    assert "1 keys exist on the target and were not overwritten" in error_line(err)
    report = json.loads(out)
    busy = [k for db in report["dbs"] for k in db["busy"]]
    assert busy == [{"db": 1, "key": "same", "reason": "exists on the target: not overwritten (use --replace)"}]
    assert target.client(5).get("same") == b"from db 0" and target.client(5).get("only-in-1") == b"v"


def test_target_out_of_memory_exits_4_and_keeps_the_checkpoint(servers, capsys, tmp_path):
    source = servers.get("redis-8.0.2")
    target = servers.get("valkey-8.1", "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    fill(source.client(), 20000)
    checkpoint = tmp_path / "cp.json"
    args = ("--source", source.url, "--target", target.url, "--checkpoint", str(checkpoint), "--batch-size", "500")
    code, _, err = cli(capsys, *args)
    assert code == ExitCode.MIGRATION
    line = error_line(err)
    assert "out of memory" in line and "--resume" in line
    assert checkpoint.exists()
    state = json.loads(checkpoint.read_text())["dbs"]["0"]
    assert not state["done"]

    target.client().config_set("maxmemory", "0")  # the operator makes room, then resumes
    code, out, err = cli(capsys, *args, "--resume", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["totals"]["copied"] == 20000
    assert differences(source.client(), target.client()) == []


def test_read_only_replica_target_is_refused(servers, capsys, tmp_path):
    source, primary = servers.get("redis-7.0"), servers.get("valkey-8.1")
    replica = servers.fresh("valkey-8.1")
    replica.client().execute_command("REPLICAOF", "127.0.0.1", primary.port)
    fill(source.client(), 5)
    code, _, err = cli(capsys, "--source", source.url, "--target", replica.url, "--checkpoint",
                       str(tmp_path / "cp.json"))
    assert code == ExitCode.MIGRATION
    assert "read-only replica" in error_line(err) and "REPLICAOF NO ONE" in error_line(err)
    replica.client().execute_command("REPLICAOF", "NO", "ONE")


def test_wrong_db_index(servers, capsys, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-9.1")
    fill(source.client(), 5)
    base = ("--source", source.url, "--target", target.url, "--checkpoint", str(tmp_path / "cp.json"))
    code, _, err = cli(capsys, *base, "--db", "99")
    assert code == ExitCode.CONFIG and "source has 16 databases" in error_line(err)
    code, _, err = cli(capsys, *base, "--db-map", "0:40")
    assert code == ExitCode.CONFIG and "target has 16 databases" in error_line(err)
    assert target.client().dbsize() == 0


def test_unreachable_target(servers, capsys, tmp_path):
    source = servers.get("redis-7.0")
    code, _, err = cli(capsys, "--source", source.url, "--target", f"redis://127.0.0.1:{free_port()}",
                       "--retries", "1", "--checkpoint", str(tmp_path / "cp.json"))
    assert code == ExitCode.CONNECTION and "connection refused by target" in error_line(err)


def test_dry_run_writes_nothing_and_reports_the_conversions(servers, capsys, tmp_path):
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-9.1")
    data = populate(source.client())
    code, out, _ = cli(capsys, "--source", source.url, "--target", target.url, "--dry-run", "--format", "json",
                       "--checkpoint", str(tmp_path / "cp.json"))
    assert code == 0
    report = json.loads(out)
    assert report["dry_run"] is True and report["totals"]["copied"] == data.total
    paths = {p for db in report["dbs"] for p in db["by_route"]}
    assert paths == {"restamp", "rewrite"}
    assert target.client().dbsize() == 0 and not (tmp_path / "cp.json").exists()
