"""`migrate run --strategy sync` against real servers, with live traffic from another process: every kind of write
during and after the snapshot, kill -9 and --resume (partial resync), a restarted source (full resync), a restarted
target and connections dropped by a TCP proxy (nothing lost), short TTLs expiring meanwhile, the cutover in a write
pause, and the keyspace-notification fallback. Both sides are read back and compared (tests/stream_support.py)."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import pytest

from fixtures.dataset import populate
from fixtures.sandbox import free_port
from fixtures.tcpproxy import TcpProxy
from migrate.errors import ConfigError, ExitCode, MigrationError
from migrate.identity import identify
from migrate.run.options import CutoverMode, OnIncompatible
from migrate.stream import is_marker_key
from tests.sync_support import (
    FAST,
    CliRun,
    SyncRun,
    compare,
    finish,
    named,
    sync_config,
    traffic,
)

PAIRS = [("redis-8.0.2", "valkey-8.1"), ("redis-8.0.6", "valkey-9.1"), ("redis-7.0", "valkey-8.1"),
         ("redis-6.0", "valkey-9.1")]


def marker_keys(server) -> list[bytes]:
    return [k for k in server.client().scan_iter() if is_marker_key(k)]


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_sync_follows_writes_of_every_kind_during_and_after_the_snapshot(servers, tmp_path, source_name,
                                                                         target_name):
    source, target = servers.get(source_name, *FAST), servers.get(target_name)
    populate(source.client(), dbs=(3,), extra=True)  # generate() writes dbs 0-2
    during = traffic(source.url, "every-kind", "2")
    job = SyncRun(sync_config(source.url, target.url, tmp_path, on_incompatible=OnIncompatible.LOSSY))
    job.streaming()
    finish(during)
    finish(traffic(source.url, "every-kind", "1"))
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None and result.sync.resyncs[0].kind == "full"
    field_ttls = identify(target.client()).hash_field_ttl
    skipped = named(result, "skipped")
    assert {key for _, key in skipped} <= {b"vec:0", b"vec:1", b"vec:2"}  # vector sets: no Valkey holds them
    assert compare(source, target, field_ttls=field_ttls, skipped=skipped, dbs=(0, 1, 2, 3)) == {}
    assert marker_keys(target) == []  # removed at the cutover
    cutover = result.sync.cutover
    assert cutover is not None and cutover.cut_offset <= result.sync.applied_offset
    if not skipped:
        assert cutover.counts_match, cutover.counts


def test_kill_9_then_resume_continues_with_a_partial_resync(servers, tmp_path):
    source, target = servers.get("redis-7.0", *FAST), servers.get("valkey-8.1")
    populate(source.client(), dbs=(3,))
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    cli = CliRun("sync", source, target, tmp_path)
    first = cli.start()
    cli.streaming(first)
    first.kill()  # kill -9: no checkpoint write on the way out, the marker on the target is the truth
    first.communicate()
    time.sleep(0.3)  # the source takes writes meanwhile
    second = cli.start("--resume")
    doc = cli.wait(second, lambda d: d.get("pid") == second.pid and d["phase"] == "streaming")
    assert doc["resync"] == "partial", doc
    second.send_signal(signal.SIGTERM)  # a clean stop: exit 130, resumable
    _, err = second.communicate(timeout=30)
    assert second.returncode == ExitCode.INTERRUPTED, err[-2000:]
    assert cli.read()["state"] == "stopped"
    third = cli.start("--resume")
    doc = cli.wait(third, lambda d: d.get("pid") == third.pid and d["phase"] == "streaming")
    assert doc["resync"] == "partial"
    stop.touch()
    finish(writes)
    report = cli.cutover(third, source)
    assert [r["kind"] for r in report["sync"]["resyncs"]] == ["partial"]
    assert compare(source, target, dbs=(0, 3)) == {}
    assert source.client().lrange("log", 0, -1) == target.client().lrange("log", 0, -1)


def test_a_restarted_source_means_a_full_resync_and_keys_it_lost_go(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.2", *FAST), servers.get("valkey-9.1")
    client = source.client()
    for i in range(300):
        client.set(f"old:{i}", i)
    port = free_port()
    job = SyncRun(sync_config(source.url, target.url, tmp_path, metrics_address=("127.0.0.1", port)))
    job.streaming()
    client.set("old:extra", 1)
    status = job.caught_up(source)
    assert status["lag_bytes"] == 0 and status["pid"] and status["resync"] == "full"
    assert {"source_offset", "applied_offset", "lag_seconds", "counters"} <= set(status)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "migrate_sync_lag_bytes" in metrics and 'migrate_sync_phase{phase="streaming"} 1.0' in metrics
    source.restart()  # no persistence: empty, with a new replication id
    client = source.client()
    for i in range(50):
        client.set(f"new:{i}", i)
    job.wait(lambda s: s["counters"]["full_resyncs"] >= 2 and s["phase"] == "streaming", what="the full resync")
    client.set("after", 1)
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None
    assert [e.kind for e in result.sync.resyncs] == ["full", "full"]
    assert "replication history changed" in result.sync.resyncs[1].reason
    assert any("full resync" in note for note in result.notes)
    assert compare(source, target) == {}
    assert target.client().dbsize() == 51


def test_target_restart_and_dropped_connections_lose_nothing(servers, tmp_path):
    source, target = servers.fresh("redis-7.0", *FAST), servers.fresh("valkey-8.1")
    populate(source.client(), dbs=(3,))
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    with TcpProxy("127.0.0.1", source.port) as to_source, TcpProxy("127.0.0.1", target.port) as to_target:
        job = SyncRun(sync_config(f"redis://127.0.0.1:{to_source.port}/0", f"redis://127.0.0.1:{to_target.port}/0",
                                  tmp_path))
        job.streaming()
        time.sleep(0.5)
        assert to_source.reset() >= 1  # the replication link (and the offset reader) dropped with an RST
        job.wait(lambda s: s["counters"]["partial_resyncs"] >= 1, what="a partial resync")
        time.sleep(0.3)
        assert to_target.reset() >= 1  # the applier reconnects and resends what the marker does not cover
        time.sleep(0.5)
        target.restart()  # no persistence: the target comes back empty, the marker gone with the data
        job.wait(lambda s: s["counters"]["full_resyncs"] >= 2 and s["phase"] == "streaming", what="a full resync")
        time.sleep(0.3)
        stop.touch()
        finish(writes)
        job.caught_up(source)
        result = job.cutover()
    assert result.sync is not None
    kinds = [e.kind for e in result.sync.resyncs]
    assert kinds[0] == "full" and "partial" in kinds and kinds.count("full") >= 2, kinds
    assert compare(source, target, dbs=(0, 3)) == {}  # short TTLs expired meanwhile: none resurrected
    assert source.client().lrange("log", 0, -1) == target.client().lrange("log", 0, -1)


def test_auto_cutover_under_traffic_pauses_writes_and_keeps_those_made_during_the_pause(servers, tmp_path):
    source, target = servers.get("redis-8.0.6", *FAST), servers.get("valkey-9.1")
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    time.sleep(0.3)
    job = SyncRun(sync_config(source.url, target.url, tmp_path, cutover=CutoverMode.AUTO, cutover_grace=1.5))
    # the moment to repoint clients is in the status file as soon as the pause ends, during the grace period
    grace = job.wait(lambda s: s["phase"] in ("grace", "done"), what="the cutover point")
    result = job.join()
    status = job.status()
    stop.touch()
    finish(writes)
    assert result.sync is not None and result.sync.cutover is not None
    cutover = result.sync.cutover
    assert cutover.paused and cutover.pause_ms is not None and cutover.pause_ms > 0
    assert cutover.after_cutover_writes > 0  # blocked by the pause, released by the unpause, applied in the grace
    assert cutover.counts_match, cutover.counts
    assert "Repoint" in cutover.instructions
    assert status["phase"] == "done" and status["cutover"]["pause_ms"] == cutover.pause_ms
    assert grace["phase"] == "grace" and grace["cut_offset"] == cutover.cut_offset
    assert grace["pause_ms"] == cutover.pause_ms and grace["state"] == "running"
    source_log = source.client().lrange("log", 0, -1)
    target_log = target.client().lrange("log", 0, -1)
    assert target_log and target_log == source_log[:len(target_log)]  # nothing lost up to where the copy stopped
    assert marker_keys(target) == []


def test_auto_cutover_is_refused_on_redis_6_0(servers, tmp_path):
    source, target = servers.get("redis-6.0", *FAST), servers.get("valkey-9.1")
    from migrate.run import run

    with pytest.raises(ConfigError) as err:
        run(sync_config(source.url, target.url, tmp_path, cutover=CutoverMode.AUTO))
    assert "CLIENT PAUSE WRITE" in err.value.message and "--cutover manual" in err.value.hint


RENAMED = ("--rename-command", "PSYNC", "", "--rename-command", "SYNC", "")


def fallback_under_writes(source, source_url: str, target, tmp_path):
    """A sync as `source_url`'s user while an application writes, cut over once the writes stop."""
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    job = SyncRun(sync_config(source_url, target.url, tmp_path))
    job.streaming()
    time.sleep(0.5)
    stop.touch()
    finish(writes)
    time.sleep(0.3)
    return job.cutover()


def test_a_source_refusing_replication_falls_back_to_keyspace_notifications(servers, tmp_path):
    source = servers.get("redis-7.0", *RENAMED, "--notify-keyspace-events", "KEA")
    target = servers.get("valkey-8.1")
    populate(source.client(), dbs=(3,))
    result = fallback_under_writes(source, source.url, target, tmp_path)
    assert result.sync is not None and result.sync.mode == "keyspace-notifications"
    assert any("FLUSHALL" in miss for miss in result.sync.misses)
    assert result.sync.stream["keys_copied"] > 0
    assert compare(source, target, dbs=(0, 3)) == {}


def test_a_user_denied_psync_by_acl_falls_back_to_keyspace_notifications(servers, tmp_path):
    """Redis 7.0+ refuse PSYNC inside MULTI before checking the ACL, so the rights probe once took a denied PSYNC for
    granted and the run failed on NOPERM instead of falling back; preflight names the same mode."""
    from migrate.config import CommonConfig, parse_endpoint
    from migrate.preflight import PreflightConfig, preflight

    source = servers.fresh("redis-7.0", "--notify-keyspace-events", "KEA")
    target = servers.get("valkey-8.1")
    populate(source.client(), dbs=(3,))
    source.client().execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-psync", "-sync")
    source_url = source.url_for(0, "app", "pw")
    found = preflight(PreflightConfig(CommonConfig(parse_endpoint(source_url), parse_endpoint(target.url))))
    option = next(o for o in found.strategy.options if o.name == "sync")
    assert option.possible and option.mode.startswith("keyspace-notification fallback"), option
    assert "PSYNC" in option.mode, option
    result = fallback_under_writes(source, source_url, target, tmp_path)
    assert result.sync is not None and result.sync.mode == "keyspace-notifications"
    assert compare(source, target, dbs=(0, 3)) == {}


def test_a_source_refusing_replication_without_notifications_is_refused(servers, tmp_path):
    source, target = servers.get("redis-7.0", *RENAMED), servers.get("valkey-8.1")
    from migrate.run import run

    with pytest.raises(MigrationError) as err:
        run(sync_config(source.url, target.url, tmp_path))
    assert "PSYNC is renamed" in err.value.message and "keyspace notifications are off" in err.value.message
    assert "CONFIG SET notify-keyspace-events" in err.value.hint
    assert target.client().dbsize() == 0


def test_a_non_empty_target_is_refused_and_selections_by_key_are_not_taken(servers, tmp_path):
    source, target = servers.get("redis-7.0", *FAST), servers.get("valkey-8.1")
    target.client().set("theirs", 1)
    from migrate.errors import TargetNotEmptyError
    from migrate.run import run
    from migrate.selection import KeySelection

    with pytest.raises(TargetNotEmptyError):
        run(sync_config(source.url, target.url, tmp_path))
    with pytest.raises(ConfigError) as err:
        run(sync_config(source.url, target.url, tmp_path, selection=KeySelection(match="user:*")))
    assert "--db and --db-map" in err.value.message
    assert Path(tmp_path / "sync.checkpoint.json").exists() is False


def test_verify_never_counts_the_sync_marker(servers, tmp_path):
    from migrate.config import CommonConfig, parse_endpoint
    from migrate.stream import marker_key
    from migrate.verify import VerifyConfig, VerifyOptions, verify
    from migrate.verify.options import Level

    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    for side in (source, target):
        side.client().set("same", "value")
    target.client().set(marker_key("sync"), b"v1 offset=10 db=0 at=1")  # a sync before its cutover
    common = CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url))
    for level in (Level.COUNT, Level.KEYS, Level.FULL):
        result = verify(VerifyConfig(common, VerifyOptions(level=level, reverse_scan="always", rounds=0)))
        assert result.ok, (level, result.divergent)


@pytest.mark.parametrize(("args", "mode", "possible"), [
    (FAST, "replication stream", True),
    ((*RENAMED, "--notify-keyspace-events", "KEA"), "keyspace-notification fallback", True),
    (RENAMED, "keyspace-notification fallback", False),
], ids=["psync", "renamed-with-notifications", "renamed-without"])
def test_preflight_says_which_mode_a_sync_would_use(servers, args, mode, possible):
    from migrate.config import CommonConfig, parse_endpoint
    from migrate.preflight import PreflightConfig, preflight

    source, target = servers.get("redis-7.0", *args), servers.get("valkey-8.1")
    source.client().set("k", "v")
    result = preflight(PreflightConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url))))
    option = next(o for o in result.strategy.options if o.name == "sync")
    assert option.possible is possible and option.mode.startswith(mode), option
    if not possible:
        assert any("notify-keyspace-events" in why for why in option.why_not)
