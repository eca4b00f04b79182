"""The transcoder on every fixture file of the matrix, into every target, checked by the target server itself.

Each fixtures/rdb/<server>.rdb (written by that server: scripts/make-rdb-fixtures) is transcoded for Valkey 8.0, 8.1,
9.1, Redis 6.0, 7.0 and 8.0 under policy lossy; the target server starts on the output (--dir, --dbfilename, with
deep payload sanitization where it exists) and must then hold exactly the source's keys: the same values, expiries
and LFU counters, stream consumer groups with their PELs and times, hash field TTLs kept where the target stores
them (Valkey 9.1, Redis 8.0) and dropped with a report where it does not. Module keys (the Redis 7.0 fixture's
RediSearch values) are skipped and named, or passed through to a target that has the module.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from migrate.errors import IncompatibleDataError
from migrate.rdb.reader import read_records
from migrate.rdb.records import KeyRecord
from migrate.rdb.reencode import LOST_FIELD_TTLS
from migrate.rdb.target import target_format
from migrate.rdb.transcode import TranscodeOptions, precheck, transcode
from migrate.rdb.values import HashValue, ModuleValue, StreamValue
from migrate.render import display_key
from tests.transcode_support import (
    assert_target_holds,
    functions_on,
    lfu_or_lru_args,
    read_source,
    start_on,
    target_of,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rdb"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.rdb"))
TARGETS = ("valkey-8.0", "valkey-8.1", "valkey-9.1", "redis-6.0", "redis-7.0", "redis-8.0.6")


def cases() -> list[object]:
    return [pytest.param(f, t, id=f"{f}->{t}", marks=[pytest.mark.redis, pytest.mark.valkey])
            for f in FIXTURE_NAMES for t in TARGETS]


@pytest.mark.parametrize(("fixture", "target_name"), cases())
def test_fixture_transcoded_for_target_loads_as_the_source(servers, tmp_path, fixture, target_name):
    if target_name not in servers.binaries:
        pytest.skip(f"{target_name} is not provisioned")
    path = FIXTURES / f"{fixture}.rdb"
    source = read_source(path)
    target = target_of(servers.get(target_name))
    now = int(time.time() * 1000)
    report = transcode(path, tmp_path / "out.rdb", target, "lossy", TranscodeOptions(now_ms=now))

    assert (tmp_path / "out.rdb").read_bytes()[:9] == target.magic
    assert [p.name for p in tmp_path.iterdir()] == ["out.rdb"]  # no temporary file left beside it
    assert report.output_bytes == (tmp_path / "out.rdb").stat().st_size
    assert report.input_checksum_ok is True
    assert report.keys_read == len(source.keys)

    modules = {(k.db, display_key(k.key)) for k in source.keys if isinstance(k.value, ModuleValue)}
    assert {(n.db, n.key) for n in report.skipped.listed} == modules
    ttl_hashes = {(k.db, display_key(k.key)) for k in source.keys
                  if isinstance(k.value, HashValue) and k.value.field_expiry_ms}
    changed = {(n.db, n.key) for n in report.changed.listed}
    if target.field_ttls:
        assert not changed & ttl_hashes
    else:
        assert ttl_hashes <= changed
        assert all(n.detail == f"lost: {LOST_FIELD_TTLS}" for n in report.changed.listed if (n.db, n.key) in ttl_hashes)
    assert changed - ttl_hashes <= {(k.db, display_key(k.key)) for k in source.keys
                                    if isinstance(k.value, StreamValue)}  # streams into Redis 6.0/7.0 only
    if target.reads_opcode(245):
        assert report.functions == source.functions
    else:
        assert report.functions_dropped == source.functions

    server = start_on(servers, target_name, tmp_path, "out.rdb", *lfu_or_lru_args(source))
    try:
        assert_target_holds(server, target, source, report, now)
        assert functions_on(server) == sorted(report.functions)
    finally:
        server.stop()


@pytest.mark.redis
def test_module_values_pass_through_to_a_target_with_the_module(servers, tmp_path):
    """The module hook: Redis 7.0 with RediSearch loaded takes the fixture's ft_index0/ft_invidx values as they are."""
    module = servers.binaries["redis-7.0"].modules.get("redisearch") if "redis-7.0" in servers.binaries else None
    if module is None:
        pytest.skip("redis-7.0 with the RediSearch module is not provisioned")
    path = FIXTURES / "redis-7.0.rdb"
    source = read_source(path)
    names = frozenset(k.value.type_name for k in source.keys if isinstance(k.value, ModuleValue))
    assert names == {"ft_index0", "ft_invidx"}
    target = target_of(servers.get("redis-7.0"), modules=names)
    now = int(time.time() * 1000)
    report = transcode(path, tmp_path / "out.rdb", target, "fail", TranscodeOptions(now_ms=now))
    assert report.skipped.total == 0 and report.passed_through == len(source.keys)
    server = start_on(servers, "redis-7.0", tmp_path, "out.rdb", "--loadmodule", module, *lfu_or_lru_args(source))
    try:
        assert_target_holds(server, target, source, report, now)
        assert server.client().execute_command("FT.SEARCH", "idx", "hello")[0] == 1  # the index works
    finally:
        server.stop()


INCOMPATIBLE = [("redis-8.0.6", "valkey-8.1"), ("valkey-9.1", "valkey-8.0"), ("redis-7.0", "valkey-9.1")]


@pytest.mark.parametrize(("fixture", "target_name"), INCOMPATIBLE, ids=[f"{a}->{b}" for a, b in INCOMPATIBLE])
def test_policy_fail_leaves_no_output_and_precheck_names_every_record(servers, tmp_path, fixture, target_name):
    if target_name not in servers.binaries:
        pytest.skip(f"{target_name} is not provisioned")
    path = FIXTURES / f"{fixture}.rdb"
    target = target_of(servers.get(target_name))
    found = precheck(path, target, "fail", limit=None)
    source = read_source(path)
    expected = {(k.db, display_key(k.key)) for k in source.keys
                if isinstance(k.value, ModuleValue) or (isinstance(k.value, HashValue) and k.value.field_expiry_ms)}
    assert {(i.db, i.key) for i in found} == expected and expected
    assert all(i.blocks and i.outcome == "fail" for i in found)
    with pytest.raises(IncompatibleDataError, match="nothing was written"):
        transcode(path, tmp_path / "out.rdb", target, "fail")
    assert list(tmp_path.iterdir()) == []
    # the same records under the other policies: skipped, or written without what the target cannot hold
    skip = precheck(path, target, "skip", limit=None)
    assert {i.outcome for i in skip} == {"skip"} and len(skip) == len(found)
    lossy = precheck(path, target, "lossy", limit=None)
    assert {i.outcome for i in lossy} <= {"lossy", "skip"}
    assert all((i.outcome == "lossy") == bool(i.losses) for i in lossy)
    assert len(precheck(path, target, "fail", limit=1)) == 1


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_records_the_target_reads_are_copied_byte_for_byte(tmp_path, fixture):
    """Into Valkey 8.1: every key record of a type it reads comes out with the same payload, expiry and LFU/LRU."""
    path = FIXTURES / f"{fixture}.rdb"
    target = target_format("valkey:8.1")
    report = transcode(path, tmp_path / "out.rdb", target, "lossy")
    source = [r for r in read_records(path) if isinstance(r, KeyRecord)]
    out = {(r.db, r.key): r for r in read_records(tmp_path / "out.rdb") if isinstance(r, KeyRecord)}
    dialect = "valkey" if fixture == "valkey-9.1" else "redis"
    passed = 0
    for rec in source:
        written = out.get((rec.db, rec.key))
        if not target.reads_type(rec.type_byte, dialect) or rec.module_type is not None:
            continue
        assert written is not None, rec.key
        assert (written.type_byte, written.payload) == (rec.type_byte, rec.payload), rec.key
        assert (written.expire_ms, written.idle, written.freq) == (rec.expire_ms, rec.idle, rec.freq), rec.key
        passed += 1
    assert passed == report.passed_through
