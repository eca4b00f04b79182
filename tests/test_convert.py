"""`migrate convert IN OUT`: the transcoder as a command (exit codes, reports, no partial output), on real servers.
What the output holds is proven by tests/test_transcode_*.py; here the command's contract is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.transcode_support import start_on

FIXTURES = "fixtures/rdb"


def convert(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["convert", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_redis_8_file_loads_into_valkey_8_with_every_loss_named(servers, capsys, tmp_path):
    out = tmp_path / "valkey.rdb"
    code, report, err = convert(capsys, f"{FIXTURES}/redis-8.0.6.rdb", str(out), "--target-version", "valkey:8.1",
                                "--on-incompatible", "lossy", "--format", "json")
    assert code == 0, err
    doc = json.loads(report)
    assert doc["schema"] == "migrate.convert/1" and doc["output_version"] == 11
    assert doc["changed"]["total"] > 0 and not doc["ok"]  # field-TTL hashes, written without their TTLs
    assert all("field TTL" in k["detail"] for k in doc["changed"]["listed"])
    server = start_on(servers, "valkey-8.1", tmp_path, "valkey.rdb")
    assert sum(server.client(db).dbsize() for db in range(16)) == doc["keys_written"]


def test_fail_writes_nothing_and_exits_5(capsys, tmp_path):
    out = tmp_path / "valkey.rdb"
    code, _, err = convert(capsys, f"{FIXTURES}/redis-8.0.6.rdb", str(out), "--target-version", "valkey:8.1")
    assert code == ExitCode.PROBLEMS and "no output was written" in err, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_corrupt_input_exits_6_and_leaves_nothing(capsys, tmp_path):
    broken = tmp_path / "broken.rdb"
    data = Path(f"{FIXTURES}/redis-7.0.rdb").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.rdb"
    code, _, err = convert(capsys, str(broken), str(out), "--target-version", "valkey:9.1")
    assert code == ExitCode.BAD_INPUT and "error:" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken.rdb"]


def test_the_target_can_be_a_live_server(servers, capsys, tmp_path):
    target = servers.get("valkey-9.1")
    out = tmp_path / "v91.rdb"
    code, report, err = convert(capsys, f"{FIXTURES}/redis-7.0.rdb", str(out), "--target", target.url,
                                "--on-incompatible", "skip")
    assert code == 0, err
    assert "Valkey 9.1" in report and out.read_bytes().startswith(b"VALKEY080")


@pytest.mark.parametrize(("args", "needle"), [
    (("--target-version", "valkey:8.1"), "exists"),
    (("--target-version", "memcached:1.6"), "bad target version"),
    ((), "no target release given"),
])
def test_bad_requests_exit_1(capsys, tmp_path, args, needle):
    out = tmp_path / "exists.rdb"
    out.write_bytes(b"x")
    target = out if needle == "exists" else tmp_path / "new.rdb"
    code, _, err = convert(capsys, f"{FIXTURES}/redis-7.0.rdb", str(target), *args)
    assert code == ExitCode.CONFIG and needle in err, err
    assert out.read_bytes() == b"x"
