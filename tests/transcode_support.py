"""Helpers for the transcoder's server tests: what a source RDB holds, what a target should hold after loading the
transcoded file, and the comparison of the two (values, expiries, LFU counters, stream metadata)."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures.sandbox import LocalServer
from migrate.facts.releases import parse_version
from migrate.facts.types import type_name
from migrate.rdb.decode import decode_object
from migrate.rdb.reader import RdbReader
from migrate.rdb.records import FunctionRecord, KeyRecord
from migrate.rdb.target import TargetFormat
from migrate.rdb.transcode import NamedKeys, TranscodeReport
from migrate.rdb.values import HashValue, ModuleValue, StreamValue, Value
from migrate.render import display_key
from tests.rdb_builders import CRC64, length, string
from tests.readback import as_dict, raw, read_expire_at_ms, read_value


@dataclass(frozen=True)
class SourceKey:
    db: int
    key: bytes
    type_name: str
    value: Value
    expire_ms: int | None
    freq: int | None
    idle: int | None


@dataclass(frozen=True)
class Source:
    keys: tuple[SourceKey, ...]
    functions: tuple[str, ...]
    rdb_version: int


def read_source(path: Path) -> Source:
    with RdbReader(path) as reader:
        records = list(reader.records())
        version = reader.rdb_version
    keys = tuple(SourceKey(r.db, r.key, type_name(r.type_byte, version),
                           decode_object(r.type_byte, r.payload, rdb_version=version), r.expire_ms, r.freq, r.idle)
                 for r in records if isinstance(r, KeyRecord))
    functions = tuple(r.library or "" for r in records if isinstance(r, FunctionRecord))
    return Source(keys, functions, version)


def target_of(server: LocalServer, modules: frozenset[str] = frozenset()) -> TargetFormat:
    return TargetFormat.for_release(server.binary.product, parse_version(server.binary.version), modules=modules)


def start_on(servers: Any, name: str, folder: Path, filename: str, *args: str) -> LocalServer:
    """A fresh server of `name` loading `folder/filename` at start-up, with deep payload sanitization where the
    release has it (Redis 6.2+ / Valkey): every structure of the file is validated as it loads."""
    sanitize = () if name == "redis-6.0" else ("--sanitize-dump-payload", "yes")
    return servers.fresh(name, "--dir", str(folder), "--dbfilename", filename, *sanitize, *args)


def lfu_or_lru_args(source: Source) -> tuple[str, ...]:
    if any(k.freq is not None for k in source.keys):
        # lfu-decay-time 0: a counter must not decay when a minute boundary passes between the load and the check
        return ("--maxmemory-policy", "allkeys-lfu", "--lfu-decay-time", "0")
    if any(k.idle is not None for k in source.keys):
        return ("--maxmemory-policy", "allkeys-lru")
    return ()


def named(names: NamedKeys) -> set[tuple[int, str]]:
    assert names.unlisted == 0
    return {(n.db, n.key) for n in names.listed}


def expected_keys(source: Source, report: TranscodeReport) -> list[SourceKey]:
    gone = named(report.skipped) | named(report.expired) | named(report.empty)
    return [k for k in source.keys if (k.db, display_key(k.key)) not in gone]


def expected_value(value: Value, target: TargetFormat, now_ms: int) -> Value:
    if isinstance(value, HashValue):
        live = {f: v for f, v in value.fields.items() if value.field_expiry_ms.get(f, now_ms + 1) >= now_ms}
        ttl = {f: t for f, t in value.field_expiry_ms.items() if f in live} if target.field_ttls else {}
        return HashValue(live, ttl)
    return value


def same_stream(source: StreamValue, live: StreamValue) -> tuple[StreamValue, StreamValue]:
    """Both streams with what one side cannot report blanked on both: counters a stream form lacks (source) or a
    release does not report (target), entries-read likewise, and active-time where the target has none. A target
    that reports active-time for a source without it must report the seen-time (what a loader sets)."""
    blank = {name: None for name in ("first_id", "max_deleted_id", "entries_added")
             if getattr(source, name) is None or getattr(live, name) is None}
    s_groups, l_groups = [], []
    for sg, lg in zip(source.groups, live.groups, strict=True):
        known = sg.entries_read is not None and lg.entries_read is not None
        s_consumers, l_consumers = [], []
        for sc, lc in zip(sg.consumers, lg.consumers, strict=True):
            if lc.active_time_ms is None:
                s_active = None
            else:
                s_active = sc.active_time_ms if sc.active_time_ms is not None else sc.seen_time_ms
            s_consumers.append(dataclasses.replace(sc, active_time_ms=s_active))
            l_consumers.append(lc)
        s_groups.append(dataclasses.replace(sg, entries_read=sg.entries_read if known else None,
                                            consumers=tuple(s_consumers)))
        l_groups.append(dataclasses.replace(lg, entries_read=lg.entries_read if known else None,
                                            consumers=tuple(l_consumers)))
    return (dataclasses.replace(source, groups=tuple(s_groups), **blank),
            dataclasses.replace(live, groups=tuple(l_groups), **blank))


def assert_target_holds(server: LocalServer, target: TargetFormat, source: Source, report: TranscodeReport,
                        now_ms: int) -> None:
    """Every key the report says was written is on the server with its value, expiry and LFU counter; nothing else
    is there."""
    want = expected_keys(source, report)
    assert report.keys_written == len(want)
    by_db: dict[int, set[bytes]] = {}
    for k in want:
        client = server.client(k.db)
        by_db.setdefault(k.db, set()).add(k.key)
        if k.freq is not None and not isinstance(k.value, ModuleValue):  # read first: any access bumps it
            assert int(raw(client, "OBJECT", "FREQ", k.key)) == k.freq, k.key
        live = read_value(client, k.key)
        expected = expected_value(k.value, target, now_ms)
        if isinstance(expected, StreamValue):
            assert isinstance(live, StreamValue), k.key
            expected, live = same_stream(expected, live)
        if isinstance(expected, ModuleValue):
            assert isinstance(live, ModuleValue), k.key
        else:
            assert live == expected, k.key
        at = read_expire_at_ms(client, k.key)
        if k.expire_ms is None or target.version >= (7, 0):
            assert at == k.expire_ms, k.key
        else:
            assert at is not None and abs(at - k.expire_ms) < 1000, k.key
    for db in {k.db for k in source.keys} | set(by_db):
        assert set(server.client(db).scan_iter(count=1000)) == by_db.get(db, set()), db


def functions_on(server: LocalServer) -> list[str]:
    if server.binary.version < "7":
        return []
    return sorted(as_dict(e)[b"library_name"].decode() for e in raw(server.client(), "FUNCTION", "LIST"))


def copy_into(path: Path, folder: Path, name: str = "source.rdb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(path, folder / name))


# -- hand-built RDB files (from tests/rdb_builders.py, independent of the writer under test) -------------------------

def rdb_bytes(magic: bytes, *records: bytes) -> bytes:
    """A whole RDB file: magic, records, EOF and the CRC64 of everything before it."""
    data = magic + b"".join(records) + b"\xff"
    return data + CRC64.calc(data).to_bytes(8, "little")


def aux(name: bytes, value: bytes) -> bytes:
    return b"\xfa" + string(name) + string(value)


def select(db: int) -> bytes:
    return b"\xfe" + length(db)


def resize(keys: int, expires: int) -> bytes:
    return b"\xfb" + length(keys) + length(expires)


def record(type_byte: int, key: bytes, body: bytes, *, expire_ms: int | None = None, freq: int | None = None) -> bytes:
    head = b"\xfc" + expire_ms.to_bytes(8, "little", signed=True) if expire_ms is not None else b""
    if freq is not None:
        head += b"\xf9" + bytes([freq])
    return head + bytes([type_byte]) + string(key) + body
