"""The README's promise, checked across every verb and every failure this suite can provoke cheaply: a password
given in a URL never appears in stdout, stderr (human or JSON logs, debug level), reports, checkpoints or spooled
snapshots' names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.dataset import populate

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Zq-8vT-unguessable-p4ss"


def migrate(tmp_path: Path, *args: str) -> str:
    """Every byte the CLI wrote: stdout, stderr (debug JSON logs) and any file it left in its working folder."""
    done = subprocess.run([sys.executable, "-m", "migrate", "--log-format", "json", "--log-level", "debug", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    files = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    return done.stdout + done.stderr + files


@pytest.fixture
def pair(servers):
    source = servers.get("redis-8.0.2", password=SECRET)
    target = servers.get("valkey-8.1", password=SECRET)
    populate(source.client(), dbs=(0,))
    return source, target


def test_no_verb_ever_shows_the_password(pair, tmp_path):
    source, target = pair
    urls = ["--source", source.url, "--target", target.url]
    seen = migrate(tmp_path, "identify", *urls, "--format", "json")
    seen += migrate(tmp_path, "preflight", *urls, "--format", "json", "--output", "preflight.json")
    seen += migrate(tmp_path, "run", *urls, "--on-incompatible", "lossy", "--format", "json", "--verify")
    seen += migrate(tmp_path, "verify", *urls, "--format", "markdown")
    seen += migrate(tmp_path, "run", "--strategy", "reload", *urls, "--yes", "--replace", "--spool-dir",
                    str(tmp_path), "--on-incompatible", "lossy")
    assert SECRET not in seen
    assert "***" in seen  # the URLs were shown, redacted


@pytest.mark.parametrize("case", ["wrong-password", "refused-port", "malformed", "busy-target", "no-rights"])
def test_no_failure_ever_shows_the_password(pair, tmp_path, case):
    source, target = pair
    url = {
        "wrong-password": source.url.replace(SECRET, SECRET + "-wrong"),
        "refused-port": f"redis://:{SECRET}@127.0.0.1:1/0",
        "malformed": f"redis://:{SECRET}/with-a-slash@127.0.0.1:{source.port}",
        "busy-target": source.url,
        "no-rights": source.url_for(0, "nobody", SECRET),
    }[case]
    if case == "busy-target":
        target.client().set("busy", "v")
    if case == "no-rights":
        source.client().execute_command("ACL", "SETUSER", "nobody", "on", f">{SECRET}", "~*", "-@all", "+ping",
                                        "+client|setname")
    seen = migrate(tmp_path, "run", "--source", url, "--target", target.url, "--retries", "1")
    assert "error:" in seen
    assert SECRET not in seen and SECRET[:6] not in seen
