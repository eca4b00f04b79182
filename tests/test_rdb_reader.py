"""The RDB reader and decoder against real servers.

Each fixture file (fixtures/rdb/<server>.rdb, written by that server: scripts/make-rdb-fixtures) is loaded into a
fresh server of the same version; every key decoded from the file must equal what the server returns for it, its
captured payload must RESTORE to the same value, and expiries, LFU counters, functions and module types must match.
Live DUMP payloads of the dataset are decoded and compared the same way on every server of the matrix.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import struct
import time
from collections import Counter
from pathlib import Path

import anycrc
import pytest
import redis

from fixtures.dataset import populate
from migrate.facts.types import CORE_TYPES, logical_type
from migrate.rdb.decode import decode_object
from migrate.rdb.reader import RdbReader, read_records, skip_value
from migrate.rdb.records import AuxField, End, FunctionRecord, KeyRecord, ResizeDb, SelectDb
from migrate.rdb.summary import summarize
from migrate.rdb.values import HashValue, ModuleValue, Value
from tests.matrix import ALL, params
from tests.readback import as_dict, raw, read_expire_at_ms, read_value

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rdb"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.rdb"))
MODERN = {"redis-7.0", "redis-8.0.2", "redis-8.0.6", "valkey-8.0", "valkey-8.1", "valkey-9.1"}
CRC64 = anycrc.Model("CRC64-REDIS")


def dump_footer(body: bytes, rdb_version: int) -> bytes:
    data = body + struct.pack("<H", rdb_version)
    return data + struct.pack("<Q", CRC64.calc(data))


def still_live(value: Value, now_ms: int) -> Value | None:
    """The value as a server holds it after loading at now_ms: expired hash fields dropped, None if nothing is left."""
    if isinstance(value, HashValue) and value.field_expiry_ms:
        gone = {f for f, at in value.field_expiry_ms.items() if at <= now_ms}
        if gone:
            fields = {f: v for f, v in value.fields.items() if f not in gone}
            expiry = {f: at for f, at in value.field_expiry_ms.items() if f not in gone}
            return HashValue(fields, expiry) if fields else None
    return value


def fixture_server_args(name: str, records: list[KeyRecord], servers) -> tuple[str, ...]:
    args: list[str] = []
    if any(r.freq is not None for r in records):
        # lfu-decay-time 0: the counters must not decay when a minute boundary passes between the load and the check
        args += ["--maxmemory-policy", "allkeys-lfu", "--lfu-decay-time", "0"]
    elif any(r.idle is not None for r in records):
        args += ["--maxmemory-policy", "allkeys-lru"]
    if any(r.module_type for r in records):
        module = servers.binaries[name].modules.get("redisearch")
        if module is None:
            pytest.skip(f"{name} fixture has module keys but the module is not provisioned")
        args += ["--loadmodule", module]
    return tuple(args)


@pytest.fixture(scope="module")
def loaded(servers, tmp_path_factory):
    """name -> (server with the fixture loaded, reader records), started once per fixture."""
    cache: dict[str, tuple[object, list[object], RdbReader]] = {}

    def load(name: str):
        if name not in cache:
            folder = tmp_path_factory.mktemp(f"fixture-{name}")
            shutil.copyfile(FIXTURES / f"{name}.rdb", folder / "fixture.rdb")
            with RdbReader(FIXTURES / f"{name}.rdb") as reader:
                records = list(reader.records())
            keys = [r for r in records if isinstance(r, KeyRecord)]
            server = servers.fresh(name, "--dir", str(folder), "--dbfilename", "fixture.rdb",
                                   *fixture_server_args(name, keys, servers))
            cache[name] = (server, records, reader)
        return cache[name]

    return load


def test_every_matrix_server_has_a_fixture():
    assert set(FIXTURE_NAMES) == set(ALL)


@pytest.mark.parametrize("name", params(FIXTURE_NAMES))
def test_fixture_keys_match_the_live_server(loaded, name):
    server, records, reader = loaded(name)
    now_ms = int(time.time() * 1000)
    keys = [r for r in records if isinstance(r, KeyRecord)]
    assert len(keys) > 40
    expected_by_db: dict[int, set[bytes]] = {}
    for rec in keys:
        client = server.client(rec.db)
        if rec.freq is not None and rec.module_type is None:  # first: a read bumps it (and modules read theirs)
            assert int(raw(client, "OBJECT", "FREQ", rec.key)) == rec.freq, rec.key
        decoded = decode_object(rec.type_byte, rec.payload, rdb_version=reader.rdb_version)
        expected = still_live(decoded, now_ms)
        if (rec.expire_ms is not None and rec.expire_ms <= now_ms) or expected is None:
            assert raw(client, "EXISTS", rec.key) == 0, rec.key
            continue
        expected_by_db.setdefault(rec.db, set()).add(rec.key)
        live = read_value(client, rec.key)
        if isinstance(decoded, ModuleValue):
            assert isinstance(live, ModuleValue) and live.type_name == decoded.type_name == rec.module_type
            assert rec.module_encver == decoded.encoding_version
        else:
            assert expected == live, rec.key
            assert text_type(client, rec.key) == logical_type(rec.type_byte, reader.rdb_version)
        live_expire = read_expire_at_ms(client, rec.key)
        if rec.expire_ms is None or server.binary.version >= "7":  # PEXPIRETIME: exact
            assert live_expire == rec.expire_ms, rec.key
        else:  # now + PTTL: to the millisecond or so
            assert live_expire is not None and abs(live_expire - rec.expire_ms) <= 50, rec.key
        if rec.idle is not None and not is_shared_integer(live):
            assert abs(int(raw(client, "OBJECT", "IDLETIME", rec.key)) - rec.idle) <= 5, rec.key
    for db, names in expected_by_db.items():
        assert set(server.client(db).scan_iter(count=1000)) == names


def is_shared_integer(value: Value) -> bool:
    """Strings holding 0..9999 are the server's shared objects: their LRU clock is never updated."""
    return isinstance(value, bytes) and value.isdigit() and int(value) < 10000


def text_type(client: redis.Redis, key: bytes) -> str:
    return raw(client, "TYPE", key).decode()


@pytest.mark.parametrize("name", params(FIXTURE_NAMES))
def test_fixture_payloads_restore_to_the_same_value(loaded, name):
    """`bytes([type_byte]) + payload` + a DUMP footer is accepted by the server that wrote it, as the same value."""
    server, records, reader = loaded(name)
    for rec in records:
        if not isinstance(rec, KeyRecord):
            continue
        client = server.client(rec.db)
        copy = b"restored:" + rec.key
        client.restore(copy, 0, dump_footer(bytes([rec.type_byte]) + rec.payload, reader.rdb_version), replace=True)
        original = read_value(client, rec.key)
        assert read_value(client, copy) == original, rec.key
        if not isinstance(original, ModuleValue):
            assert client.dump(copy) == client.dump(rec.key), rec.key
        client.delete(copy)


@pytest.mark.parametrize("name", params(FIXTURE_NAMES))
def test_fixture_metadata(loaded, name):
    server, records, reader = loaded(name)
    product, version = name.split("-")[0], server.binary.version
    assert isinstance(records[0], AuxField)
    assert reader.writer == (product, version)
    assert reader.magic == ("VALKEY" if reader.rdb_version >= 80 else "REDIS")
    assert isinstance(records[-1], End) and records[-1].checksum_ok is True
    assert [r.db for r in records if isinstance(r, SelectDb)] == [0, 1, 2]
    sizes = [r.db_size for r in records if isinstance(r, ResizeDb)]
    assert sizes == [sum(1 for k in records if isinstance(k, KeyRecord) and k.db == db) for db in (0, 1, 2)]
    libraries = [r.library for r in records if isinstance(r, FunctionRecord)]
    live = raw(server.client(), "FUNCTION", "LIST") if server.binary.version >= "7" else []
    assert sorted(libraries) == sorted(as_dict(entry)[b"library_name"].decode() for entry in live)


@pytest.mark.parametrize("name", params(FIXTURE_NAMES))
def test_stream_source_in_tiny_chunks_reads_the_same(name):
    """A non-seekable stream that returns a few bytes per read (a socket) gives the same records as the file."""
    class Trickle:
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int) -> bytes:
            piece = self.data[self.pos:self.pos + min(n, 7)]
            self.pos += len(piece)
            return piece

    data = (FIXTURES / f"{name}.rdb").read_bytes()
    stream = Trickle(data + b"NEXT")
    reader = RdbReader(stream, chunk_size=5)  # type: ignore[arg-type]
    assert list(reader.records()) == list(read_records(FIXTURES / f"{name}.rdb"))
    assert reader.bytes_read == len(data)
    assert reader.leftover + stream.data[stream.pos:] == b"NEXT"


def modern_args(name: str) -> tuple[str, ...]:
    return ("--enable-debug-command", "yes") if name in MODERN else ()


@pytest.mark.parametrize("name", params(ALL))
def test_live_dump_payloads_decode_to_what_the_server_returns(servers, name):
    server = servers.get(name, *modern_args(name))
    client = server.client()
    if name in MODERN:
        client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "4000")  # big elements as PLAIN nodes
    data = populate(client, extra=True)
    seen_types: set[int] = set()
    for db, keys in data.keys.items():
        c = server.client(db)
        for key in keys:
            payload = c.dump(key)
            version = int.from_bytes(payload[-10:-8], "little")
            seen_types.add(payload[0])
            decoded = decode_object(payload[0], payload[1:-10], rdb_version=version)
            assert decoded == read_value(c, key), key
    assert {0, 5, 11}.issubset(seen_types)


@pytest.mark.parametrize("name", params(FIXTURE_NAMES))
def test_summary_matches_the_live_server(loaded, name):
    server, records, reader = loaded(name)
    summary = summarize(FIXTURES / f"{name}.rdb", top=5)
    keys = [r for r in records if isinstance(r, KeyRecord)]
    assert (summary.rdb_version, summary.magic) == (reader.rdb_version, reader.magic)
    assert (summary.writer_product, summary.writer_version) == (name.split("-")[0], server.binary.version)
    assert summary.keys == len(keys) and summary.checksum_ok is True
    assert summary.bytes_read == (FIXTURES / f"{name}.rdb").stat().st_size
    live_modules: Counter[str] = Counter()
    field_ttl_hashes = 0
    for db in summary.dbs:
        client = server.client(db.db)
        live_types: Counter[str] = Counter()
        for key in client.scan_iter(count=1000):
            kind = text_type(client, key)
            if kind not in CORE_TYPES:
                live_modules[kind] += 1
                kind = "module"
            live_types[kind] += 1
            if kind == "hash" and read_value(client, key).field_expiry_ms:  # type: ignore[union-attr]
                field_ttl_hashes += 1
        assert dict(live_types) == db.by_type
        assert db.keys == client.dbsize() == (db.resize_hint or (0, 0))[0]
        assert db.expires == client.info("keyspace")[f"db{db.db}"]["expires"]
    assert {m.name: m.keys for m in summary.modules} == dict(live_modules)
    assert summary.expiry.field_ttl_hashes == field_ttl_hashes
    assert summary.expiry.keys_with_expiry == sum(1 for k in keys if k.expire_ms is not None)
    assert summary.by_type == dict(sum((Counter(db.by_type) for db in summary.dbs), Counter()))
    assert {e.type_byte: (e.keys, e.bytes) for e in summary.encodings} == {
        t: (sum(1 for k in keys if k.type_byte == t), sum(len(k.payload) for k in keys if k.type_byte == t))
        for t in {k.type_byte for k in keys}}
    biggest = sorted(keys, key=lambda k: len(k.payload), reverse=True)[:5]
    assert [(b.key, b.size) for b in summary.biggest] == [(k.key, len(k.payload)) for k in biggest]
    live_libraries = raw(server.client(), "FUNCTION", "LIST") if server.binary.version >= "7" else []
    assert sorted(summary.functions) == sorted(as_dict(e)[b"library_name"].decode() for e in live_libraries)


def test_summary_of_a_stream_equals_the_summary_of_the_file():
    path = FIXTURES / "redis-8.0.2.rdb"
    with path.open("rb") as fh:
        piped = summarize(io.BufferedReader(io.BytesIO(fh.read())))
    assert dataclasses.replace(piped, source=str(path)) == summarize(path)
    later = summarize(path, now_ms=4102444800001)
    assert later.expiry.expired_at_read == later.expiry.keys_with_expiry > 0


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_skip_value_measures_each_payload(name):
    """skip_value finds where a serialized value ends without decoding it (the DUMP side validates with it)."""
    with RdbReader(FIXTURES / f"{name}.rdb") as reader:
        keys = list(reader.keys())
    assert keys
    for rec in keys:
        assert skip_value(rec.type_byte, rec.payload + b"trailing", reader.product) == len(rec.payload), rec.key
