"""Bad input gets one line on stderr and the documented exit code, through the real CLI against real servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from fixtures.sandbox import free_port
from migrate.cli import run_cli
from migrate.errors import ExitCode


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "(hint:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_lists_verbs(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "identify" in out
    from migrate.cli import cli

    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"


def test_identify_reports_both_sides(capsys, servers):
    src, dst = servers.get("redis-7.0"), servers.get("valkey-8.1")
    code, out, _ = run(capsys, "identify", "--source", src.url, "--target", dst.url, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["source"]["product"] == "redis" and data["source"]["rdb_version"] == 10
    assert data["target"]["product"] == "valkey" and data["target"]["rdb_version"] == 11


def test_malformed_url(capsys):
    code, _, err = run(capsys, "identify", "--source", "http://nope")
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "malformed source URL")


def test_refused_connection(capsys):
    port = free_port()
    code, _, err = run(capsys, "identify", "--source", f"redis://127.0.0.1:{port}", "--retries", "1")
    assert code == ExitCode.CONNECTION
    assert_one_line_error(err, "connection refused", str(port))


def test_wrong_password_is_not_echoed(capsys, servers):
    server = servers.get("valkey-8.1", password="right-pass")
    code, _, err = run(capsys, "identify", "--target", f"redis://:wrong-pass@127.0.0.1:{server.port}/0")
    assert code == ExitCode.CONNECTION
    assert_one_line_error(err, "authentication failed")
    assert "wrong-pass" not in err and "right-pass" not in err


def test_unknown_tls_ca_file(capsys, tmp_path):
    code, _, err = run(capsys, "identify", "--source", "rediss://127.0.0.1:6390",
                       "--tls-ca-file", str(tmp_path / "missing-ca.pem"))
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "CA file not found")


def test_unanswering_host_fails_within_bounded_time(capsys):
    """A host that accepts TCP but never answers (a listening socket nobody serves) must not hang the tool."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        started = time.monotonic()
        code, _, err = run(capsys, "identify", "--source", f"redis://127.0.0.1:{port}",
                           "--connect-timeout", "1", "--retries", "2")
        elapsed = time.monotonic() - started
    assert code == ExitCode.CONNECTION
    assert_one_line_error(err, "did not answer in time")
    assert elapsed < 10


def test_traceback_flag_shows_the_original(capsys):
    code, _, err = run(capsys, "--traceback", "identify", "--source", "http://nope")
    assert code == ExitCode.CONFIG and "Traceback" in err


def test_config_from_environment(capsys, servers, monkeypatch):
    server = servers.get("redis-6.0")
    monkeypatch.setenv("MIGRATE_SOURCE", server.url)
    code, out, _ = run(capsys, "identify", "--format", "json")
    assert code == 0 and json.loads(out)["source"]["version"].startswith("6.0")


def test_python_dash_m_entry_point(servers):
    server = servers.get("valkey-9.1")
    done = subprocess.run([sys.executable, "-m", "migrate", "identify", "--target", server.url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Valkey 9.1" in done.stdout and "RDB 80" in done.stdout


@pytest.mark.parametrize("args", [["identify"], ["identify", "--format", "xml", "--source", "redis://h"]])
def test_usage_errors_exit_2_or_1(capsys, args):
    code, _, err = run(capsys, *args)
    assert code in (ExitCode.CONFIG, ExitCode.USAGE)
    assert "Traceback" not in err
