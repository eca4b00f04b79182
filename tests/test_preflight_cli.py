"""`migrate preflight` through the real CLI: formats, exit codes, offline RDB files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.dataset import populate
from fixtures.sandbox import free_port
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.matrix import SOURCES, params

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_RDB = {"redis-6.0": 9, "redis-7.0": 10, "redis-8.0.2": 12, "redis-8.0.6": 12}
DOCUMENTED_KEYS = {"schema", "tool_version", "started_at", "duration_s", "ok", "exit_code", "partial",
                   "partial_reasons", "summary", "source", "target", "strategy", "census", "rdb_file", "aof",
                   "clusters", "findings"}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["preflight", *args])
    out, err = capsys.readouterr()
    return code, out, err


def saved_rdb(servers, name: str, tmp_path: Path, *args: str) -> Path:
    """A real snapshot: the fixture file when the reader helper made one, else SAVE a populated server."""
    fixture = ROOT / "fixtures" / "rdb" / f"{name}.rdb"
    if fixture.exists() and not args:
        return fixture
    server = servers.fresh(name, *args)
    if not args:
        populate(server.client())
    return _save(server, tmp_path)


def _save(server, tmp_path: Path) -> Path:
    server.client().save()
    path = tmp_path / f"{server.name}.rdb"
    path.write_bytes((server.dir / "dump.rdb").read_bytes())
    return path


@pytest.mark.parametrize("name", params(SOURCES))
def test_rdb_file_of_each_source_version_offline(capsys, servers, tmp_path, name):
    path = saved_rdb(servers, name, tmp_path)
    code, out, err = run(capsys, "--rdb-file", str(path), "--target-version", "valkey:8.1", "--format", "json")
    doc = json.loads(out)
    assert doc["rdb_file"]["rdb_version"] == EXPECTED_RDB[name]
    assert doc["rdb_file"]["writer"]["product"] == "redis"
    assert doc["source"] is None and doc["partial"] is True
    assert doc["census"] is None and doc["rdb_file"]["census"]["dbs"]["0"]["total"] > 0
    codes = {f["code"] for f in doc["findings"]}
    assert "CHECK_ERROR" not in codes and "RDB_FILE" in codes
    field_ttls = EXPECTED_RDB[name] >= 12  # the dataset has hashes with field TTLs on Redis 7.4+
    module_keys = bool(doc["rdb_file"]["census"]["module_keys"])  # the 7.0 fixture holds RediSearch keys
    assert ("HFE_UNSUPPORTED" in codes) is field_ttls
    assert ("MODULE_KEYS_UNSUPPORTED" in codes) is module_keys
    assert code == (ExitCode.PROBLEMS if field_ttls or module_keys else ExitCode.OK), err
    assert doc["strategy"]["recommended"] == "reload"


def test_rdb_file_with_module_keys_offline(capsys, servers, tmp_path):
    path_so = servers.binaries["redis-7.0"].modules["redisearch"]
    server = servers.fresh("redis-7.0", "--loadmodule", path_so)
    server.client().execute_command("FT.CREATE", "idx", "SCHEMA", "title", "TEXT")
    server.client().execute_command("FT.ADD", "idx", "doc1", "1.0", "FIELDS", "title", "hello")
    path = _save(server, tmp_path)
    code, out, _ = run(capsys, "--rdb-file", str(path), "--target-version", "valkey:8.1", "--format", "json")
    assert code == ExitCode.PROBLEMS
    finding = next(f for f in json.loads(out)["findings"] if f["code"] == "MODULE_KEYS_UNSUPPORTED")
    assert finding["evidence"]["keys_by_type"] == {"ft_index0": 1, "ft_invidx": 1}
    assert "RediSearch" in finding["message"]


def test_corrupt_rdb_offline_is_one_line_exit_6(capsys, tmp_path, servers):
    good = saved_rdb(servers, "redis-7.0", tmp_path)
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    code, out, err = run(capsys, "--rdb-file", str(bad), "--target-version", "valkey:8.1")
    assert code == ExitCode.BAD_INPUT and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "bad.rdb" in lines[0] and "offset" in lines[0] and "Traceback" not in err


def test_corrupt_rdb_with_live_servers_is_a_finding(capsys, tmp_path, servers):
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(b"REDIS0011\xfa\x09redis-ver")
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    code, out, _ = run(capsys, "--source", source.url, "--target", target.url, "--rdb-file", str(bad),
                       "--format", "json")
    assert code == ExitCode.PROBLEMS
    finding = next(f for f in json.loads(out)["findings"] if f["code"] == "RDB_FILE_UNREADABLE")
    assert finding["severity"] == "blocker"


def test_json_schema_markdown_and_output_file(capsys, servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    populate(source.client())
    code, out, _ = run(capsys, "--source", source.url, "--target", target.url, "--format", "json")
    doc = json.loads(out)
    assert code == ExitCode.OK and set(doc) == DOCUMENTED_KEYS
    assert doc["schema"] == "migrate.preflight/1" and doc["ok"] is True and doc["exit_code"] == 0
    assert doc["strategy"]["recommended"] == "replication" and doc["strategy"]["keys"] == doc["source"]["keys"]
    assert set(doc["summary"]) == {"blocker", "warning", "info"}
    assert all({"code", "severity", "message", "remediation", "evidence", "check"} <= set(f)
               for f in doc["findings"])

    report = tmp_path / "preflight.md"
    code, out, err = run(capsys, "--source", source.url, "--target", target.url, "--format", "markdown",
                         "--output", str(report))
    text = report.read_text()
    assert code == ExitCode.OK and out == "" and "report written" in err
    assert text.startswith("# Preflight: NO BLOCKERS") and "| Severity | Code | Message |" in text
    assert "## Strategy" in text and "native replication" in text

    code, out, _ = run(capsys, "--source", source.url, "--target", target.url)
    assert code == ExitCode.OK and "Recommended strategy: native replication" in out and "Key census" in out


def test_unreachable_target_exit_5_and_says_partial(capsys, servers):
    source = servers.get("redis-7.0")
    populate(source.client())
    code, out, err = run(capsys, "--source", source.url, "--target", f"redis://127.0.0.1:{free_port()}",
                         "--retries", "1", "--connect-timeout", "1")
    assert code == ExitCode.PROBLEMS and "error:" not in err
    assert "PARTIAL REPORT: target unreachable" in out and "TARGET_UNREACHABLE" in out
    assert "Key census" in out


def test_unreachable_source_is_a_connection_error(capsys):
    code, _, err = run(capsys, "--source", f"redis://127.0.0.1:{free_port()}", "--retries", "1")
    assert code == ExitCode.CONNECTION and err.count("error:") == 1


@pytest.mark.parametrize("args,needle", [
    ((), "nothing to check"),
    (("--rdb-file", "/nonexistent.rdb", "--target-version", "valkey:8.1"), "RDB file not found"),
    (("--rdb-file", "x.rdb", "--target-version", "mongo"), "bad --target-version"),
    (("--source", "redis://127.0.0.1:1", "--sample", "0"), "--sample"),
])
def test_bad_arguments(capsys, args, needle):
    code, _, err = run(capsys, *args)
    assert code in (ExitCode.CONFIG, ExitCode.BAD_INPUT)
    assert needle in err and err.count("error:") == 1


def test_password_never_printed(capsys, servers):
    source = servers.get("redis-7.0", password="s3cret-pass")
    code, out, err = run(capsys, "--source", source.url, "--target-version", "valkey:8.1", "--format", "json")
    assert code == ExitCode.OK
    assert "s3cret-pass" not in out + err and json.loads(out)["source"]["endpoint"].startswith("redis://:***@")
