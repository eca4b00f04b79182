"""Shared by the AOF tests: the fixture corpus, a replay of the reader's events into a server, and a server started
on a copy of a fixture (the ground truth: the server's own AOF loading)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from fixtures.sandbox import LocalServer, ServerBinary, load_manifest
from migrate.aof import AofCommand, AofReader, FileStart
from migrate.rdb.dump import build_dump
from migrate.rdb.records import FunctionRecord, KeyRecord
from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "aof"
BAD = CORPUS / "bad"
FIXTURES = sorted(p.name.removesuffix(".state.json") for p in CORPUS.glob("*.state.json"))
REDIS_6_TOLERANCE_MS = 5_000  # Redis 6.0 has no PEXPIRETIME: its expiries are read back as now + PTTL


def expected_state(fixture: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((CORPUS / f"{fixture}.state.json").read_text())
    return state


def writer_of(fixture: str) -> str:
    return str(expected_state(fixture)["server"])


def tolerance(state: dict[str, Any]) -> int:
    return 0 if state["expiry_exact"] else REDIS_6_TOLERANCE_MS


def replay(reader: AofReader, client: redis.Redis) -> list[str]:
    """Load what the reader yields into the server behind `client`: RDB keys with RESTORE ... ABSTTL (a payload built
    for the file's own RDB version), functions with FUNCTION LOAD, commands as sent (SELECT replaced by the event's
    db, so the reader's database tracking is what routes them). Returns the error replies (none expected)."""
    conn = client.connection_pool.get_connection()
    errors: list[str] = []
    current_db: int | None = None
    version = 0

    def send(*args: Any) -> None:
        conn.send_command(*args)
        try:
            conn.read_response()
        except redis.ResponseError as exc:
            errors.append(f"{args[0]!r}: {exc}")

    def use(db: int) -> None:
        nonlocal current_db
        if db != current_db:
            send("SELECT", db)
            current_db = db

    try:
        for event in reader:
            if isinstance(event, FileStart):
                version = event.file.rdb_version or 0
            elif isinstance(event, KeyRecord):
                use(event.db)
                ttl = event.expire_ms if event.expire_ms is not None else 0
                send("RESTORE", event.key, ttl, build_dump(event.type_byte, event.payload, version), "ABSTTL")
            elif isinstance(event, FunctionRecord):
                send("FUNCTION", "LOAD", "REPLACE", event.code)
            elif isinstance(event, AofCommand) and event.name != "select":
                if not event.in_transaction or event.name == "multi":
                    use(event.db)
                send(*event.argv)
    finally:
        client.connection_pool.release(conn)
    return errors


def copy_for_server(source: Path, workdir: Path) -> Path:
    """A private copy of an AOF input (a server truncates a torn tail in place): the folder to give as --dir."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if (source / "appendonly.aof").is_file():
        shutil.copyfile(source / "appendonly.aof", workdir / "appendonly.aof")
    else:
        shutil.copytree(source, workdir / "appendonlydir")
    return workdir


def binary(name: str) -> ServerBinary:
    """The provisioned server `name` (skipped locally, a failure under CI, when it is not provisioned)."""
    binaries = load_manifest()
    if name not in binaries:
        missing(name)
    return binaries[name]


def server_on_aof(name: str, source: Path, workdir: Path) -> LocalServer:
    """A server of version `name` started on a copy of `source` (its own AOF loading); the caller stops it."""
    data = copy_for_server(source, workdir / "data")
    args = ("--appendonly", "yes", "--dir", str(data), "--appendfilename", "appendonly.aof")
    if (data / "appendonlydir").is_dir():
        args += ("--appenddirname", "appendonlydir")
    server = LocalServer(binary(name), args, workdir)
    return server.start()


def server_refuses(name: str, source: Path, workdir: Path, wait: float = 20.0) -> tuple[bool, str]:
    """Start a server of version `name` once on a copy of `source`, on a unix socket only: (whether it exited with an
    error instead of running, its log). One attempt only: a refused start may already have cut a torn file. A server
    that loads is stopped once it logs that it is ready."""
    data = copy_for_server(source, workdir / "data")
    log = workdir / "refused.log"
    socket_dir = Path(tempfile.mkdtemp(prefix="aof-"))  # a short path: unix socket paths are limited to 107 bytes
    args = [binary(name).server, "--port", "0", "--unixsocket", str(socket_dir / "s"), "--save", "",
            "--daemonize", "no", "--dir", str(data), "--appendonly", "yes", "--appendfilename", "appendonly.aof",
            "--logfile", str(log)]
    if (data / "appendonlydir").is_dir():
        args += ["--appenddirname", "appendonlydir"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait
    try:
        while process.poll() is None and time.monotonic() < deadline and not _ready(log):
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(socket_dir, ignore_errors=True)
    text = log.read_text(errors="replace") if log.exists() else ""
    code = process.returncode if not _ready(log) else 0
    assert "not listen anywhere" not in text
    return code != 0, text


def _ready(log: Path) -> bool:
    return log.exists() and "ready to accept connections" in log.read_text(errors="replace").lower()


def truncation_offsets(log: str) -> list[int]:
    """The offsets of every "Truncating the AOF [file] at offset N" line of a server log."""
    return [int(m) for m in re.findall(r"Truncating the AOF (?:.+ )?at offset (\d+)", log)]
