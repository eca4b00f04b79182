"""Real command streams for the stream tests: traffic of every kind on a source that writes an AOF, the AOF read back
as (argv, end offset) pairs, and a canonical read of both sides to compare.

The stream is the source's own AOF (appendonly yes, aof-use-rdb-preamble no, appendfsync always): what the server
writes there is the effects it propagates (MONITOR would show calls, not effects). Offsets are byte positions in the
concatenated command files, as a replication offset is a byte position in the replication stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hiredis
import redis

from migrate.stream.marker import is_marker_key
from migrate.stream.resp import pack
from tests.readback import comparable, raw, read_value

AOF_ARGS = ("--appendonly", "yes", "--aof-use-rdb-preamble", "no", "--appendfsync", "always")
LONG_S = 3600
FUNCTION_LIBRARY = """#!lua name=streamlib
redis.register_function('bump', function(keys, args)
  redis.call('incrby', keys[1], args[1])
  redis.call('rpush', keys[2], args[1])
  return 1
end)
"""

Command = tuple[tuple[bytes, ...], int]


# -- reading an AOF --------------------------------------------------------------------------------------------------

def aof_files(directory: Path) -> list[Path]:
    """The command files of a server's AOF, in replay order (7.0+ manifest: base, then incr by seq; 6.0: one file)."""
    manifests = sorted(directory.glob("appendonlydir/*.manifest"))
    if not manifests:
        return [directory / "appendonly.aof"]
    files: list[tuple[int, int, Path]] = []
    for line in manifests[0].read_text().splitlines():
        fields = line.split()
        attrs = dict(zip(fields[::2], fields[1::2], strict=False))
        kind = 0 if attrs.get("type") == "b" else 1
        files.append((kind, int(attrs.get("seq", "0")), directory / "appendonlydir" / attrs["file"]))
    return [path for _, _, path in sorted(files) if path.suffix == ".aof"]


def read_aof(directory: Path) -> list[Command]:
    """Every command of the AOF with the offset where it ends (RESP as the server wrote it: canonical arrays)."""
    out: list[Command] = []
    offset = 0
    for path in aof_files(directory):
        reader = hiredis.Reader()
        reader.feed(path.read_bytes())
        while (argv := reader.gets()) is not False:
            command = tuple(argv)
            offset += len(pack(command))
            out.append((command, offset))
    return out


def write_commands(commands: list[Command], path: Path) -> None:
    """A recorded stream as one RESP file (the subprocess tests and the benchmark read it back with read_stream)."""
    with path.open("wb") as fh:
        for argv, _ in commands:
            fh.write(pack(argv))


def read_stream(path: Path, start: int = 0) -> Iterator[Command]:
    """Commands of a RESP file from byte `start` (an end offset of an earlier command), with their end offsets."""
    reader = hiredis.Reader()
    offset = start
    with path.open("rb") as fh:
        fh.seek(start)
        while chunk := fh.read(1 << 20):
            reader.feed(chunk)
            while (argv := reader.gets()) is not False:
                command = tuple(argv)
                offset += len(pack(command))
                yield command, offset


# -- traffic ---------------------------------------------------------------------------------------------------------

@dataclass
class Traffic:
    """What the traffic did that the tests check: keys a target without field TTLs changes or cannot hold."""

    version: tuple[int, ...]
    field_ttl_keys: set[tuple[int, str]] = field(default_factory=set)  # touched by field-TTL commands (db, key)
    field_ttl_only: set[tuple[int, str]] = field(default_factory=set)  # ... by nothing else (absent under skip)
    vector_keys: set[tuple[int, str]] = field(default_factory=set)  # vector sets: no Valkey holds them
    group_keys: tuple[str, str, str] = ("grp:a", "fttl:grp", "grp:c")  # a MULTI/EXEC with an incompatible command


def version_of(client: redis.Redis) -> tuple[int, ...]:
    info = client.info("server")
    return tuple(int(p) for p in str(info["redis_version"]).split(".")[:3])


def x(client: redis.Redis, *args: Any) -> Any:
    return raw(client, *args)


def generate(client: redis.Redis, *, counters: int = 200, flushall: bool = True) -> Traffic:
    """Writes of every kind a source of this release can make, on databases 0-2 of the server behind `client`
    (`flushall`: starting with a FLUSHALL, so nothing written before may survive on the target)."""
    version = version_of(client)
    traffic = Traffic(version)
    if flushall:
        for db in (0, 1):
            c = _on(client, db)
            x(c, "SET", "before-flushall", db)
            c.close()
        x(client, "FLUSHALL")  # nothing written before it may survive on the target
    for db in (0, 1, 2):
        c = _on(client, db)
        _core(c, db, version)
        _expiries(c, version)
        _streams(c, version)
        c.close()
    c0 = client
    _transactions_and_scripts(c0, version)
    if version >= (7, 4):
        _field_ttls(c0, traffic)
    if version >= (8, 0):
        for i in range(3):
            x(c0, "VADD", f"vec:{i}", "VALUES", 2, i, i + 1, f"e{i}")
            traffic.vector_keys.add((0, f"vec:{i}"))
    _databases(client, version)
    _expire_short_keys(client, version)
    _counters(c0, counters)
    return traffic


def _core(c: redis.Redis, db: int, version: tuple[int, ...]) -> None:
    for i in range(20):
        x(c, "SET", f"str:{i}", f"value-{db}-{i}")
        x(c, "APPEND", f"str:{i}", "+")
        x(c, "INCRBY", "cnt", i)
        x(c, "RPUSH", "list", *(f"e{i}-{j}" for j in range(3)))
        x(c, "SADD", "set", i, i + 100)
        x(c, "ZADD", "zset", i * 1.5, f"m{i}")
        x(c, "HSET", "hash", f"f{i}", i)
    x(c, "INCRBYFLOAT", "float", "2.5")
    x(c, "DECR", "cnt")
    x(c, "LPOP", "list")
    x(c, "RPOPLPUSH", "list", "list2")
    x(c, "LTRIM", "list", 0, 40)
    x(c, "LSET", "list", 0, "first")
    x(c, "LINSERT", "list", "BEFORE", "first", "zeroth")
    x(c, "SPOP", "set")
    x(c, "SPOP", "set", 3)
    x(c, "SMOVE", "set", "set2", 5)
    x(c, "SREM", "set", 6)
    x(c, "ZINCRBY", "zset", 10, "m3")
    x(c, "ZPOPMIN", "zset")
    x(c, "ZUNIONSTORE", "zu", 1, "zset")
    x(c, "HINCRBY", "hash", "f1", 5)
    x(c, "HINCRBYFLOAT", "hash", "f2", "0.25")  # Redis 8.0.6 propagates HSETEX KEEPTTL
    x(c, "HDEL", "hash", "f3")
    x(c, "HSETNX", "hash", "new", 1)
    x(c, "PFADD", "hll", *range(50))
    x(c, "SETBIT", "bits", 7, 1)
    x(c, "SETBIT", "bits2", 3, 1)
    x(c, "BITOP", "OR", "bitsor", "bits", "bits2")
    x(c, "GEOADD", "geo", 13.361389, 38.115556, "Palermo")
    x(c, "SORT", "list2", "ALPHA", "STORE", "sorted")
    x(c, "GETSET", "str:0", "swapped")
    x(c, "SETRANGE", "str:1", 2, "XY")
    x(c, "MSET", "m:a", 1, "m:b", 2)
    x(c, "RENAME", "m:a", "m:renamed")
    x(c, "DEL", "str:19")
    x(c, "UNLINK", "str:18")
    x(c, "SETNX", "str:17", "kept")
    if version >= (6, 2):
        x(c, "LMOVE", "list", "list3", "LEFT", "RIGHT")
        x(c, "GETDEL", "str:16")
    if version >= (7, 0):
        x(c, "LMPOP", 1, "list", "LEFT", "COUNT", 2)
        x(c, "ZMPOP", 1, "zset", "MIN")


def _expiries(c: redis.Redis, version: tuple[int, ...]) -> None:
    now_s = int(time.time())
    x(c, "SET", "ttl:ex", "v", "EX", LONG_S)
    x(c, "SET", "ttl:px", "v", "PX", LONG_S * 1000, "NX")
    x(c, "SETEX", "ttl:setex", LONG_S, "v")
    x(c, "PSETEX", "ttl:psetex", LONG_S * 1000, "v")
    x(c, "SET", "ttl:expire", "v")
    x(c, "EXPIRE", "ttl:expire", LONG_S)
    x(c, "SET", "ttl:pexpire", "v")
    x(c, "PEXPIRE", "ttl:pexpire", LONG_S * 1000)
    x(c, "SET", "ttl:expireat", "v")
    x(c, "EXPIREAT", "ttl:expireat", now_s + LONG_S)
    x(c, "SET", "ttl:pexpireat", "v")
    x(c, "PEXPIREAT", "ttl:pexpireat", (now_s + LONG_S) * 1000)
    x(c, "SET", "ttl:persist", "v", "EX", LONG_S)
    x(c, "PERSIST", "ttl:persist")
    x(c, "SET", "ttl:keep", "v", "EX", LONG_S)
    x(c, "SET", "ttl:keep", "w", "KEEPTTL")
    x(c, "SET", "ttl:restore-src", "payload")
    x(c, "RESTORE", "ttl:restored", LONG_S * 1000, c.dump("ttl:restore-src"))
    x(c, "RESTORE", "restored", 0, c.dump("ttl:restore-src"))
    for i in range(5):
        x(c, "SET", f"short:{i}", "gone", "PX", 20)  # expire during the traffic: DEL/UNLINK in the stream
    x(c, "SET", "short:expired-by-expire", "v")
    x(c, "EXPIRE", "short:expired-by-expire", -1)  # a past time: propagated as DEL
    if version >= (6, 2):
        x(c, "SET", "ttl:exat", "v", "EXAT", now_s + LONG_S)
        x(c, "SET", "ttl:getex", "v")
        x(c, "GETEX", "ttl:getex", "EX", LONG_S)
        x(c, "SET", "ttl:getex-persist", "v", "EX", LONG_S)
        x(c, "GETEX", "ttl:getex-persist", "PERSIST")
    if version >= (7, 0):
        x(c, "SET", "ttl:gt", "v", "EX", 100)
        x(c, "EXPIRE", "ttl:gt", LONG_S, "GT")


def _streams(c: redis.Redis, version: tuple[int, ...]) -> None:
    for i in range(30):
        x(c, "XADD", "stream", "MAXLEN", "~", 1000, "*", "n", i, "payload", "x" * (i % 7))
    x(c, "XGROUP", "CREATE", "stream", "g1", "0")
    x(c, "XGROUP", "CREATE", "stream", "g2", "$")
    x(c, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", 5, "STREAMS", "stream", ">")
    x(c, "XREADGROUP", "GROUP", "g1", "bob", "COUNT", 5, "STREAMS", "stream", ">")
    x(c, "XREADGROUP", "GROUP", "g1", "carol", "COUNT", 3, "NOACK", "STREAMS", "stream", ">")
    entries = x(c, "XRANGE", "stream", "-", "+", "COUNT", 10)
    ids = [e[0] for e in entries]
    x(c, "XACK", "stream", "g1", ids[0], ids[1])
    x(c, "XCLAIM", "stream", "g1", "bob", 0, ids[2], ids[3])
    x(c, "XDEL", "stream", ids[9])
    x(c, "XADD", "stream", "*", "late", 1)
    x(c, "XGROUP", "SETID", "stream", "g2", ids[4])
    x(c, "XGROUP", "DELCONSUMER", "stream", "g1", "carol")
    x(c, "XADD", "stream2", "*", "a", 1)
    x(c, "XTRIM", "stream2", "MAXLEN", 0)
    if version >= (6, 2):
        x(c, "XAUTOCLAIM", "stream", "g1", "dave", 0, "0", "COUNT", 2)
        x(c, "XGROUP", "CREATECONSUMER", "stream", "g2", "erin")
        x(c, "XTRIM", "stream", "MINID", ids[0])


def _transactions_and_scripts(c: redis.Redis, version: tuple[int, ...]) -> None:
    pipe = c.pipeline(transaction=True)
    pipe.set("tx:a", 1)
    pipe.incr("tx:b")
    pipe.execute_command("SELECT", 1)
    pipe.rpush("tx:list", "x", "y")
    pipe.execute_command("SELECT", 0)
    pipe.execute()
    script = "redis.call('set', KEYS[1], ARGV[1]); redis.call('incr', KEYS[2]); return 1"
    x(c, "EVAL", script, 2, "lua:a", "lua:b", "v1")
    sha = x(c, "SCRIPT", "LOAD", "redis.call('lpush', KEYS[1], ARGV[1]); return redis.call('incr', KEYS[2])")
    for i in range(3):
        x(c, "EVALSHA", sha, 2, "lua:list", "lua:cnt", i)
    if version >= (7, 0):
        x(c, "FUNCTION", "LOAD", "REPLACE", FUNCTION_LIBRARY)
        for i in range(3):
            x(c, "FCALL", "bump", 2, "fn:cnt", "fn:list", i + 1)


def _field_ttls(c: redis.Redis, traffic: Traffic) -> None:
    """Hash field TTLs (Redis 7.4+, HSETEX/HGETEX/HGETDEL 8.0+): lossy on targets without field TTLs."""
    x(c, "HSET", "fttl:mixed:1", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5)
    x(c, "HEXPIRE", "fttl:mixed:1", LONG_S, "FIELDS", 1, "a")
    x(c, "HPEXPIRE", "fttl:mixed:1", 20, "FIELDS", 1, "b")  # expires during the traffic: HDEL in the stream
    x(c, "HPEXPIRE", "fttl:mixed:1", LONG_S * 1000, "FIELDS", 1, "c")
    x(c, "HPERSIST", "fttl:mixed:1", "FIELDS", 1, "c")
    traffic.field_ttl_keys.add((0, "fttl:mixed:1"))
    x(c, "HSET", "plain:hash", "x", 1)
    x(c, "HINCRBYFLOAT", "plain:hash", "x", "1.5")  # 8.0.6: HSETEX KEEPTTL, an exact HSET on Valkey 8
    if traffic.version >= (8, 0):
        x(c, "HSETEX", "fttl:only:1", "EX", LONG_S, "FIELDS", 2, "p", 1, "q", 2)
        x(c, "HSETEX", "fttl:only:1", "FNX", "PX", LONG_S * 1000, "FIELDS", 1, "r", 3)
        x(c, "HGETEX", "fttl:mixed:1", "PX", LONG_S * 1000, "FIELDS", 1, "d")
        x(c, "HGETDEL", "fttl:mixed:1", "FIELDS", 1, "e")
        x(c, "HSETEX", "plain:hash", "KEEPTTL", "FIELDS", 1, "y", 2)  # exact on every target
        traffic.field_ttl_keys.add((0, "fttl:only:1"))
        traffic.field_ttl_only.add((0, "fttl:only:1"))
        pipe = c.pipeline(transaction=True)
        pipe.set("grp:a", "in-group")
        pipe.execute_command("HSETEX", "fttl:grp", "EX", LONG_S, "FIELDS", 1, "f", 1)
        pipe.incr("grp:c")
        pipe.execute()
        traffic.field_ttl_keys.add((0, "fttl:grp"))
        traffic.field_ttl_only.add((0, "fttl:grp"))


def _databases(client: redis.Redis, version: tuple[int, ...]) -> None:
    c2 = _on(client, 2)
    x(c2, "SET", "doomed", 1)
    x(c2, "FLUSHDB")
    _core(c2, 2, version)
    x(client, "SWAPDB", 1, 2)
    x(client, "SET", "moving", "to-1")
    x(client, "MOVE", "moving", 1)
    if version >= (6, 2):
        x(client, "COPY", "str:2", "copied", "DB", 2)
        x(client, "COPY", "str:3", "copied-here")
    c2.close()


def _expire_short_keys(client: redis.Redis, version: tuple[int, ...]) -> None:
    """Let the short TTLs pass, then touch the keys so their expiry is in the stream (lazy expiry propagates DEL)."""
    time.sleep(0.1)
    for db in (0, 1, 2):
        c = _on(client, db)
        for i in range(5):
            x(c, "EXISTS", f"short:{i}")
        if db == 0 and version >= (7, 4):
            x(c, "HGET", "fttl:mixed:1", "b")  # a field past its TTL: HDEL in the stream
        c.close()


def _counters(c: redis.Redis, n: int) -> None:
    """Commands that are not idempotent: applied twice, they show (INCR, LPUSH, HINCRBY)."""
    for i in range(n):
        x(c, "INCR", "once:cnt")
        x(c, "LPUSH", "once:list", i)
        if i % 10 == 0:
            x(c, "HINCRBY", "once:hash", f"f{i % 3}", 1)


def _on(client: redis.Redis, db: int) -> redis.Redis:
    kwargs = {**client.connection_pool.connection_kwargs, "db": db}
    return redis.Redis(connection_pool=client.connection_pool.__class__(**kwargs))


# -- canonical read of both sides ------------------------------------------------------------------------------------

def snapshot(client: redis.Redis, dbs: tuple[int, ...] = (0, 1, 2)) -> dict[tuple[int, bytes], tuple[str, Any, Any]]:
    """(db, key) -> (type, value, absolute expiry ms or None), for core types; the marker key left out."""
    out: dict[tuple[int, bytes], tuple[str, Any, Any]] = {}
    for db in dbs:
        c = _on(client, db)
        for key in c.scan_iter(count=1000):
            if is_marker_key(key):
                continue
            kind = raw(c, "TYPE", key).decode()
            value = read_value(c, key) if kind in ("string", "list", "set", "zset", "hash", "stream") else kind
            out[(db, key)] = (kind, value, _expire_at(c, key))
        c.close()
    return out


def _expire_at(c: redis.Redis, key: bytes) -> int | None:
    try:
        at = int(raw(c, "PEXPIRETIME", key))
    except redis.ResponseError:
        ttl = int(raw(c, "PTTL", key))
        return int(time.time() * 1000) + ttl if ttl >= 0 else None
    return at if at >= 0 else None


def differences(source: dict[Any, Any], target: dict[Any, Any], *, ttl_tolerance_ms: int = 0,
                ignore_field_ttls: set[tuple[int, bytes]] | None = None,
                loose_ttls: set[tuple[int, bytes]] | None = None) -> dict[tuple[int, bytes], str]:
    """(db, key) -> what differs. Field TTLs are compared unless the key is in `ignore_field_ttls`; keys in
    `loose_ttls` get 5 s of expiry tolerance (a relative TTL in an AOF, which has no timestamps)."""
    out: dict[tuple[int, bytes], str] = {}
    for ident in sorted(set(source) | set(target)):
        if ident not in target:
            out[ident] = "missing on the target"
            continue
        if ident not in source:
            out[ident] = "extra on the target"
            continue
        (skind, svalue, sexp), (tkind, tvalue, texp) = source[ident], target[ident]
        if skind != tkind:
            out[ident] = f"type {skind} != {tkind}"
            continue
        keep = not (ignore_field_ttls and ident in ignore_field_ttls)
        a, b = comparable(svalue, tvalue, field_ttls=keep)
        if a != b:
            out[ident] = f"value {a!r:.300} != {b!r:.300}"
        elif (sexp is None) != (texp is None) or (sexp is not None and abs(sexp - texp) > (
                5000 if loose_ttls and ident in loose_ttls else ttl_tolerance_ms)):
            out[ident] = f"expiry {sexp} != {texp}"
    return out


# -- a live replication stream ---------------------------------------------------------------------------------------

class ReplicaTap:
    """Attach to a source as a replica (PSYNC ? -1), skip the snapshot and record the write stream it then sends,
    with the time each chunk arrived: a real replication stream (PINGs, PUBLISH, Redis 6.0's relative expiries)."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(b"REPLCONF listening-port 0\r\n")
        self._line()
        self.sock.sendall(b"PSYNC ? -1\r\n")
        head = self._line()
        if not head.startswith(b"+FULLRESYNC"):
            raise RuntimeError(f"unexpected PSYNC answer {head!r}")
        self.start_offset = int(head.split()[2])
        size = self._line()
        while size in (b"", b"\n"):
            size = self._line()
        if not size.startswith(b"$") or size.startswith(b"$EOF:"):
            raise RuntimeError(f"expected a disk-based snapshot, got {size[:60]!r} (repl-diskless-sync no)")
        self._read_exact(int(size[1:]))
        self.chunks: list[tuple[int, bytes]] = []  # (received unix ms, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _line(self) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            out += self.sock.recv(1)
        return bytes(out).rstrip(b"\r\n") if out != b"\n" else b"\n"

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += self.sock.recv(min(1 << 20, n - len(out)))
        return bytes(out)

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                return
            self.chunks.append((int(time.time() * 1000), data))

    def stop(self) -> list[tuple[tuple[bytes, ...], int, int]]:
        """Stop recording: every command with its end offset (replication offset) and the time it arrived."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        reader = hiredis.Reader()
        out: list[tuple[tuple[bytes, ...], int, int]] = []
        offset = self.start_offset
        for at, data in self.chunks:
            reader.feed(data)
            while (argv := reader.gets()) is not False:
                command = tuple(argv)
                offset += len(pack(command))
                out.append((command, offset, at))
        return out
