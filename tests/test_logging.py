"""Logs go to stderr, as JSON lines with --log-format json, and never carry a password."""

from __future__ import annotations

import json
import subprocess
import sys

from fixtures.sandbox import free_port


def test_json_logs_on_stderr_without_secrets():
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "--log-format", "json", "identify",
         "--source", f"redis://admin:topsecret@127.0.0.1:{port}/0", "--retries", "3"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout == ""
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [r["attempt"] for r in records] == [1, 2]  # bounded retries, each logged
    assert all(r["event"] == "retrying" and r["level"] == "warning" for r in records)
    assert "topsecret" not in done.stderr
    assert "admin:***@" in records[0]["what"]
