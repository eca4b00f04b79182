"""Streams re-encoded by the transcoder, judged by real servers.

A Redis 8.0 server builds streams of every shape the stream commands can make (multi-node streams, entries with and
without the node's master fields, numeric and empty fields and values, entries bigger than a node, deletions at node
edges, trimmed-to-empty streams that keep their groups, XSETID counters, groups with known and unknown entries-read,
claimed and re-delivered pending entries, consumers without pending entries) and saves them (STREAM_LISTPACKS_3).
The file is transcoded for Redis 7.0 (re-encoded as STREAM_LISTPACKS_2) and Redis 6.0 (STREAM_LISTPACKS), loaded
there with deep sanitization where the release has it, and every stream must read back as on the source, minus only
what the older form cannot hold (named in the report).
"""

from __future__ import annotations

import shutil
import time

import pytest

from migrate.rdb.reencode import LOST_ACTIVE_TIME
from migrate.rdb.transcode import TranscodeOptions, transcode
from migrate.rdb.values import StreamValue
from tests.readback import read_stream
from tests.transcode_support import same_stream, start_on, target_of


def build_streams(client) -> list[bytes]:
    """Stream shapes on a live server; returns the key names."""
    keys = []
    # 1. three hundred entries over several nodes, field sets changing every 7 entries, numeric and empty values
    for i in range(300):
        fields = {"a": i, "b": "" if i % 5 == 0 else f"v{i}"} if (i // 7) % 2 == 0 else {"other": i, "12": "-3"}
        client.xadd("st:nodes", fields, id=f"{1_700_000_000_000 + i}-{i % 4}")
    client.xdel("st:nodes", f"{1_700_000_000_000 + 0}-0", f"{1_700_000_000_000 + 99}-3",
                f"{1_700_000_000_000 + 100}-0", f"{1_700_000_000_000 + 299}-3")
    client.xgroup_create("st:nodes", "g1", id="0")
    client.xgroup_create("st:nodes", "g2", id="$")
    client.xreadgroup("g1", "alice", {"st:nodes": ">"}, count=40)
    client.xreadgroup("g1", "bob", {"st:nodes": ">"}, count=10)
    client.xclaim("st:nodes", "g1", "carol", 0, [f"{1_700_000_000_000 + 5}-1"])
    client.xclaim("st:nodes", "g1", "alice", 0, [f"{1_700_000_000_000 + 6}-2"], retrycount=9)
    client.xack("st:nodes", "g1", f"{1_700_000_000_000 + 1}-1")
    client.xgroup_createconsumer("st:nodes", "g2", "idle-one")
    keys.append(b"st:nodes")
    # 2. entries bigger than a node (4 KiB), one node each
    for i in range(5):
        client.xadd("st:big", {"blob": "x" * (3000 + i * 700), "n": i})
    keys.append(b"st:big")
    # 3. trimmed to nothing, groups kept, counters set
    client.xadd("st:emptied", {"a": "1"}, id="10-1")
    client.xadd("st:emptied", {"a": "2"}, id="10-2")
    client.xgroup_create("st:emptied", "g", id="0")
    client.xreadgroup("g", "c", {"st:emptied": ">"}, count=1)
    client.xtrim("st:emptied", maxlen=0)
    keys.append(b"st:emptied")
    # 4. XSETID with explicit counters; a group created with ENTRIESREAD
    client.xadd("st:counters", {"k": "v"}, id="5-5")
    client.execute_command("XSETID", "st:counters", "9-9", "ENTRIESADDED", 42, "MAXDELETEDID", "7-7")
    client.execute_command("XGROUP", "CREATE", "st:counters", "known", "5-5", "ENTRIESREAD", 1)
    keys.append(b"st:counters")
    # 5. large IDs and a single entry with many fields
    client.xadd("st:wide", {f"f{i}": i * 1000003 for i in range(60)}, id=f"{(1 << 62)}-{(1 << 40)}")
    keys.append(b"st:wide")
    return keys


@pytest.fixture(scope="module")
def saved(servers, tmp_path_factory):
    """(a copy of the Redis 8.0 dump, its streams as the server reads them)."""
    server = servers.get("redis-8.0.6")
    client = server.client()
    keys = build_streams(client)
    client.save()
    path = tmp_path_factory.mktemp("streams") / "dump.rdb"
    shutil.copyfile(server.dir / "dump.rdb", path)
    streams = {key: read_stream(client, key) for key in keys}
    return path, streams


@pytest.mark.parametrize("target_name", ["redis-6.0", "redis-7.0", "valkey-8.1"])
def test_streams_read_back_on_older_forms(servers, tmp_path, saved, target_name):
    path, streams = saved
    target = target_of(servers.get(target_name))
    report = transcode(path, tmp_path / "out.rdb", target, "lossy", TranscodeOptions(now_ms=int(time.time() * 1000)))
    converted = sum(n for kind, n in report.converted.items() if kind.startswith("STREAM_LISTPACKS_3"))
    assert converted == (0 if target_name == "valkey-8.1" else len(streams))
    changed = {n.key.encode(): n.detail for n in report.changed.listed}
    if target_name == "redis-7.0":  # v2 keeps every counter; only the consumers' active-time differs from seen-time
        assert all(detail == f"lost: {LOST_ACTIVE_TIME}" for detail in changed.values())
    server = start_on(servers, target_name, tmp_path, "out.rdb")
    try:
        client = server.client()
        for key, source in streams.items():
            live = read_stream(client, key)
            expected, live = same_stream(source, live)
            assert isinstance(expected, StreamValue)
            assert live == expected, key
    finally:
        server.stop()


def test_streams_whose_counters_disagree_load_on_valkey_9_1(servers, tmp_path):
    """Redis 5.0-rc1's XDEL left streams whose length (or a node's live/deleted header) disagrees with their entries;
    Valkey 9.1 refuses to load a file holding one (measured: "Stream length inconsistent with the number of valid
    entries", the server exits). Transcoded for 9.1, such a stream is written again from its entries (its length
    that of its entries, its groups, consumers and pending entries kept) and the file loads; for Valkey 8.1, which
    loads them, the records are copied byte for byte."""
    from tests.test_persistence_files import HANDBUILT

    source = HANDBUILT / "rdb9-trimmed-streams.rdb"
    shutil.copy(source, tmp_path / "in.rdb")
    for name, converted in (("valkey-9.1", 3), ("valkey-8.1", 0)):
        target = target_of(servers.get(name))
        report = transcode(tmp_path / "in.rdb", tmp_path / f"{name}.rdb", target, "fail")
        assert sum(n for kind, n in report.converted.items() if kind.startswith("STREAM")) == converted, name
        assert report.changed.total == 0 and report.skipped.total == 0
        server = start_on(servers, name, tmp_path, f"{name}.rdb")
        try:
            client = server.client()
            for key in (b"x:xdel-rc1", b"x:rc1-with-group", b"x:header-stale", b"x:consistent"):
                stream = read_stream(client, key)
                assert len(stream.entries) == 8, (name, key)
                assert stream.length == 8 or (name == "valkey-8.1" and key != b"x:consistent"), (name, key)
            groups = client.xinfo_groups("x:rc1-with-group")
            assert [(g["name"], g["consumers"], g["pending"]) for g in groups] == [(b"g1", 3, 2)]
        finally:
            server.stop()


def test_the_stream_reports_its_progress_as_it_goes():
    """TranscodeStream.progress(): key records and input bytes read, never more than the report's totals, equal to
    them at the end (what the progress bar of a reload through replication shows)."""
    from migrate.rdb.target import TargetFormat
    from migrate.rdb.transcode import transcode_chunks
    from tests.test_persistence_files import HANDBUILT

    stream = transcode_chunks(HANDBUILT / "rdb9-empty-keys.rdb", TargetFormat.for_release("valkey", (9, 1, 2)),
                              "skip")
    seen = [stream.progress() for _ in stream]
    assert stream.report is not None and seen
    assert all(keys <= stream.report.keys_read and nbytes <= stream.report.input_bytes for keys, nbytes in seen)
    assert stream.progress() == (stream.report.keys_read, stream.report.input_bytes)
