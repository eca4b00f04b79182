"""Bad input gets one line on stderr and the documented exit code, through the real CLI against real servers."""

from __future__ import annotations

import json
import os
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

    for name in cli.list_commands(None):
        assert cli.get_command(None, name).help, f"{name} has no help text"


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


# -- local input errors: one line, exit 1, never an internal error ---

@pytest.mark.parametrize(("env", "needle"), [
    ({"MIGRATE_CONNECT_TIMEOUT": "-1"}, "--connect-timeout"),
    ({"MIGRATE_SOCKET_TIMEOUT": "nan"}, "--socket-timeout"),
    ({"MIGRATE_SOCKET_TIMEOUT": "inf"}, "--socket-timeout"),
    ({"MIGRATE_SOCKET_TIMEOUT": "0"}, "--socket-timeout"),
    ({"MIGRATE_FORMAT": "xml"}, "--format"),
    ({"MIGRATE_RETRIES": "0"}, "--retries"),
])
def test_bad_values_from_the_environment(capsys, monkeypatch, env, needle):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "identify", "--source", "redis://127.0.0.1:1")
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, needle)


def test_a_binary_or_misspelt_config_file(capsys, tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x00\xff\xfe garbage \x89PNG")
    code, _, err = run(capsys, "--config", str(binary), "identify", "--source", "redis://127.0.0.1:1")
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "cannot read config file")
    misspelt = tmp_path / "migrate.toml"
    misspelt.write_text('source = "redis://127.0.0.1:1"\n[run]\nbatch_sise = 5\n')
    code, _, err = run(capsys, "--config", str(misspelt), "identify")
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "batch_sise")


def test_a_password_never_shows_in_a_malformed_url_error(capsys):
    code, _, err = run(capsys, "identify", "--source", "redis://:Tok3n/SECRETPART@host:6379")
    assert code == ExitCode.CONFIG
    assert "Tok3n" not in err and "SECRETPART" not in err
    assert_one_line_error(err, "malformed source URL")


def test_tls_options_on_a_plain_url_are_refused(capsys, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    code, _, err = run(capsys, "identify", "--source", "redis://127.0.0.1:1", "--tls-ca-file", str(ca))
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "no URL uses TLS")
    code, _, err = run(capsys, "identify", "--source", "rediss://127.0.0.1:1", "--tls-key-file", str(ca))
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "--tls-cert-file and --tls-key-file go together")


def test_an_unwritable_checkpoint_folder_is_refused_before_anything_is_written(capsys, servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, "run", "--source", source.url, "--target", target.url, "--checkpoint",
                           str(locked / "sub" / "cp.json"))
    finally:
        locked.chmod(0o700)
    if os.geteuid() == 0:  # root writes anywhere: the folder check cannot fail, nothing to see
        assert code == 0
        return
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "cannot write the checkpoint")
    assert target.client().dbsize() == 0


def test_a_checkpoint_path_that_cannot_be_a_folder_is_refused(capsys, servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, "run", "--source", source.url, "--target", target.url, "--checkpoint",
                       str(blocker / "cp.json"))
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "cannot write the checkpoint")
    assert target.client().dbsize() == 0


def test_a_device_is_not_an_rdb_file(capsys, servers):
    target = servers.get("valkey-8.1")
    code, _, err = run(capsys, "run", "--strategy", "reload", "--from-rdb", "/dev/zero", "--target", target.url)
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "not a regular file")


def test_verify_names_a_missing_target_database_with_a_fitting_hint(capsys, servers):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    code, _, err = run(capsys, "verify", "--source", source.url, "--target", target.url, "--db-map", "0:40")
    assert code == ExitCode.CONFIG
    assert_one_line_error(err, "db 40 does not exist")
    assert "--resume" not in err


def test_a_stalled_reply_names_the_socket_timeout(capsys):
    with socket.socket() as listener:  # accepts, answers the handshake never
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, _, err = run(capsys, "verify", "--source", f"redis://127.0.0.1:{port}", "--target",
                           f"redis://127.0.0.1:{port}", "--retries", "1", "--connect-timeout", "0.5")
    assert code == ExitCode.CONNECTION
    assert "--connect-timeout" in err or "--socket-timeout" in err


def test_keys_that_print_alike_are_told_apart():
    from migrate.render import display_key

    assert display_key(b"\x00") != display_key(b"\\x00")
    assert display_key(b"plain:key") == "plain:key" and display_key("ключ".encode()) == "ключ"
