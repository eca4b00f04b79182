"""Helpers shared by the replication tests: fast primaries, known command sequences, draining a link."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from fixtures.sandbox import LocalServer
from migrate.config import Endpoint, parse_endpoint
from migrate.rdb.reader import RdbReader
from migrate.rdb.records import KeyRecord
from migrate.replication import ReplicaLink, StreamCommand

# A diskless sync starts at once instead of after repl-diskless-sync-delay (5 s by default on 7.0+); 6.0 knows the
# option too (its default sync is disk-based).
FAST = ("--repl-diskless-sync-delay", "0")
ALL_PRIMARIES = ("redis-6.0", "redis-7.0", "redis-8.0.2", "redis-8.0.6", "valkey-8.0", "valkey-8.1", "valkey-9.1")
NOT_DATA = {b"PING", b"SELECT", b"MULTI", b"EXEC"}

Written = list[tuple[int, tuple[bytes, ...]]]


def endpoint(server: LocalServer, **parts: object) -> Endpoint:
    base = parse_endpoint(server.url)
    if not parts:
        return base
    return Endpoint(base.scheme, base.host, int(str(parts.get("port", base.port))), None,
                    parts.get("username") and str(parts["username"]), parts.get("password") and str(parts["password"]))


def master_offset(client: redis.Redis) -> int:
    return int(client.info("replication")["master_repl_offset"])


def write(server: LocalServer, start: int, count: int, dbs: tuple[int, ...] = (0, 2)) -> Written:
    """`count` commands propagated verbatim (no expiry rewrites), spread over `dbs`; what the stream must carry."""
    written: Written = []
    clients = {db: server.client(db=db) for db in dbs}
    for i in range(start, start + count):
        db = dbs[i % len(dbs)]
        argv = _command(i)
        clients[db].execute_command(*argv)
        written.append((db, argv))
    for client in clients.values():
        client.close()
    return written


def _command(i: int) -> tuple[bytes, ...]:
    kind = i % 4
    if kind == 0:
        return (b"SET", b"s:%d" % i, b"v%d" % i)
    if kind == 1:
        return (b"RPUSH", b"list", b"%d" % i)
    if kind == 2:
        return (b"HSET", b"h:%d" % (i % 50), b"f%d" % i, b"%d" % i)
    return (b"SADD", b"set", b"m%d" % i)


def data_commands(commands: list[StreamCommand]) -> Written:
    return [(c.db, c.argv) for c in commands if c.argv[0].upper() not in NOT_DATA]


def drain(link: ReplicaLink, offset: int, timeout: float = 30.0) -> list[StreamCommand]:
    """Commands until the consumed offset reaches `offset`."""
    got: list[StreamCommand] = []
    deadline = time.monotonic() + timeout
    while link.position.offset < offset:
        assert time.monotonic() < deadline, f"stuck at {link.position.offset} of {offset}: {link.status()}"
        got += link.read_commands(1000, timeout=0.5)
    return got


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rdb_keys(stream: object) -> int:
    with RdbReader(stream, capture_payload=False) as reader:  # type: ignore[arg-type]
        return sum(1 for record in reader if isinstance(record, KeyRecord))


def fill(server: LocalServer, keys: int, value_size: int = 100, db: int = 0) -> None:
    client = server.client(db=db)
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"key:{i}", b"x" * value_size)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.close()
