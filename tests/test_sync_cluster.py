"""`migrate run --strategy sync` from a cluster source into a standalone target, on real local clusters: one follower
per primary under live writes through a cluster client, the cutover that pauses every primary, FLUSHALL on one
primary, a failover on the source, kill -9 then --resume, one shard resynced in full, and the refusals. Both sides are
read back with redis-py's RedisCluster and a plain client (tests/cluster_run_support.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from redis.cluster import RedisCluster

from fixtures.cluster import LocalCluster
from migrate.errors import ConfigError, MigrationError
from migrate.rdb.rewrite import key_slot
from migrate.run.options import CutoverMode, RunOptions, Strategy
from migrate.stream import is_marker_key, slotapply
from migrate.stream.marker import SYNC_STREAM_ID, marker_key, marker_value
from tests.cluster_run_support import cluster_client, diff, fill
from tests.cluster_support import ClusterFactory
from tests.sync_support import FAST, ROOT, CliRun, SyncRun, sync_config
from tests.test_cluster_run import divergent_after_delete, verified


def fast(cluster: LocalCluster) -> LocalCluster:
    """Snapshots sent at once (Redis 7.0 waits 5 s for more replicas by default)."""
    for node in cluster.running():
        node.call("CONFIG", "SET", "repl-diskless-sync-delay", "0")
    return cluster


class Writer:
    """Writes of several kinds through a cluster client from a thread until stopped: SET, INCR, RPUSH, HSET, DEL,
    EXPIRE, a MULTI/EXEC on a hash tag; `written` counts them."""

    def __init__(self, side: LocalCluster | redis.Redis, prefix: str = "w") -> None:
        self.client = cluster_client(side) if isinstance(side, LocalCluster) else side
        self.prefix = prefix
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        try:
            while not self.stop.is_set():
                i = rng.randrange(400)
                key = f"{self.prefix}:{i}"
                kind = self.written % 7
                if kind == 0:
                    self.client.set(key, f"v{self.written}")
                elif kind == 1:
                    self.client.incr(f"{self.prefix}:counter:{i % 20}")
                elif kind == 2:
                    self.client.rpush(f"{self.prefix}:list:{i % 30}", self.written)
                elif kind == 3:
                    self.client.hset(f"{self.prefix}:hash:{i % 30}", str(i), self.written)
                elif kind == 4:
                    self.client.delete(key)
                elif kind == 5:
                    self.client.expire(f"{self.prefix}:list:{i % 30}", 3600)
                else:
                    pipe = self.client.pipeline(transaction=True)
                    tag = f"{{{self.prefix}-tx:{i % 10}}}"
                    pipe.incr(f"{tag}:a").rpush(f"{tag}:b", i).execute()
                self.written += 1
                if self.written % 50 == 0:
                    time.sleep(0.002)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error
        return self.written


def shards_streaming(job: SyncRun, count: int, timeout: float = 90.0) -> dict:
    return job.wait(lambda s: s["phase"] == "streaming" and len(s.get("shards") or []) == count
                    and all(sh["phase"] == "streaming" for sh in s["shards"]), timeout, "every shard streaming")


def caught_up(job: SyncRun, cluster: LocalCluster, timeout: float = 60.0) -> dict:
    total = summed_offset(cluster)
    return job.wait(lambda s: s["phase"] == "streaming" and s["applied_offset"] >= total, timeout,
                    f"summed offset {total}")


def marker_keys(client: redis.Redis) -> list[bytes]:
    return [k for k in client.scan_iter() if is_marker_key(k)]


def test_a_3_shard_cluster_syncs_into_a_standalone_target_under_writes(clusters: ClusterFactory, servers,
                                                                        tmp_path: Path) -> None:
    source = fast(clusters.get("redis-7.0", 3))
    target = servers.get("valkey-8.1")
    fill(cluster_client(source), 300)
    writer = Writer(source)
    job = SyncRun(sync_config(source.url(), target.url, tmp_path))
    status = shards_streaming(job, 3)
    assert {s["slots"] for s in status["shards"]} == {"-".join(map(str, source.slot_ranges(p)[0]))
                                                      for p in source.primaries}
    time.sleep(1.0)
    writes = writer.finish()
    assert writes > 100
    caught_up(job, source)
    result = job.cutover()
    sync = result.sync
    assert sync is not None and sync.cutover is not None
    assert len(sync.shards) == 3 and all(s.full_resyncs == 1 for s in sync.shards)
    assert len(sync.cutover.shard_cuts) == 3 and sync.cutover.cut_offset == sum(c for _, c in sync.cutover.shard_cuts)
    assert sync.cutover.paused and sync.cutover.counts_match, sync.cutover.counts
    assert diff(cluster_client(source), target.client()) == []
    assert marker_keys(target.client()) == []


def test_flushall_on_one_primary_deletes_only_that_shards_keys(clusters: ClusterFactory, servers,
                                                               tmp_path: Path) -> None:
    source = fast(clusters.get("redis-7.0", 3))
    target = servers.get("valkey-8.1")
    client = cluster_client(source)
    fill(client, 300, big=False)
    job = SyncRun(sync_config(source.url(), target.url, tmp_path))
    shards_streaming(job, 3)
    flushed = source.primaries[1]
    gone = {k for k in target.client().scan_iter() if source.owner_of_slot(key_slot(k)).node_id == flushed.node_id}
    assert gone
    flushed.call("FLUSHALL")
    client.set("after-flush", "1")
    caught_up(job, source)
    result = job.cutover()
    assert diff(client, target.client()) == []
    assert not gone & set(target.client().scan_iter())
    assert any("FLUSHALL on the shard's primary" in n for n in result.notes), result.notes


def test_a_source_failover_is_followed_by_partial_resync(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source = fast(clusters.fresh("redis-7.0", 3, replicas=1, args=("--repl-diskless-sync-delay", "0")))
    target = servers.get("valkey-8.1")
    fill(cluster_client(source), 300, big=False)
    writer = Writer(source)
    job = SyncRun(sync_config(source.url(), target.url, tmp_path))
    shards_streaming(job, 3)
    old = source.primaries[0]
    source.failover(source.replicas_of(old)[0])
    time.sleep(1.0)
    writer.finish()
    status = job.wait(lambda s: any(sh["partial_resyncs"] for sh in s["shards"]), 60, "a partial resync")
    assert status["counters"]["full_resyncs"] == 3, status
    caught_up(job, source)
    result = job.cutover()
    # A Redis 7.0 replica learns a consumer group's entries-read as unknown (XINFO GROUPS: None where its primary
    # says 1, measured here): the promoted replica's own state, so the keys with a group are compared by presence.
    grouped = {f"k:{i + 5}".encode() for i in range(0, 300, 30)}
    differences = diff(cluster_client(source), target.client(), ignore=grouped)
    assert differences == [], "\n".join(differences)
    assert all(target.client().exists(k) for k in grouped)
    moved = [s for s in result.sync.shards if s.partial_resyncs]
    assert moved and moved[0].node != old.url.split("//")[-1]
    assert any("a failover" in n for n in result.notes), result.notes


def test_kill_9_then_resume_continues_every_shard_and_one_without_its_marker_resyncs_alone(
        clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source = fast(clusters.get("redis-7.0", 3))
    target = servers.get("valkey-8.1")
    client = cluster_client(source)
    fill(client, 300, big=False)
    cli = CliRun("sync", SimpleNamespace(url=source.url()), target, tmp_path)

    def every_shard_streaming(proc: subprocess.Popen[str]) -> dict:
        return cli.wait(proc, lambda d: d.get("pid") == proc.pid and d["phase"] == "streaming"
                        and len(d.get("shards") or []) == 3 and all(s["phase"] == "streaming" for s in d["shards"]))

    first = cli.start()
    every_shard_streaming(first)
    for i in range(50):
        client.rpush(f"before:{i % 7}", i)
    total = summed_offset(source)
    cli.wait(first, lambda d: d["applied_offset"] >= total)
    first.kill()  # kill -9: the markers on the target are the truth
    first.communicate()
    for i in range(50):
        client.rpush(f"between:{i % 7}", i)  # RPUSH: applied twice would show
    markers = marker_keys(target.client())
    assert len(markers) == 3
    target.client().delete(markers[0])  # one shard's position lost: that shard alone is loaded again
    second = cli.start("--resume")
    doc = every_shard_streaming(second)
    assert sorted(s["resync"] for s in doc["shards"]) == ["full", "partial", "partial"], doc["shards"]
    total = summed_offset(source)
    report = cut_over(cli, second, total)
    assert any("keys of these slots deleted" in n for n in report["notes"]), report["notes"]
    assert diff(client, target.client()) == []
    assert marker_keys(target.client()) == []


def cut_over(cli: CliRun, proc: subprocess.Popen[str], offset: int) -> dict:
    """Once the sync applied `offset`: `migrate cutover`, then the sync's JSON report (exit 0 both)."""
    cli.wait(proc, lambda d: d["applied_offset"] >= offset)
    asked = subprocess.run([sys.executable, "-m", "migrate", "cutover", "--status-file", str(cli.status)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0, asked.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return dict(json.loads(out))


def same_and_unmarked(source: redis.Redis | RedisCluster, target: LocalCluster) -> None:
    """The cluster target equals the source, and holds no marker key."""
    differences = diff(source, cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    assert not [k for k in cluster_client(target).scan_iter() if is_marker_key(k)]


def summed_offset(cluster: LocalCluster) -> int:
    return sum(int(n.info("replication")["master_repl_offset"]) for n in cluster.primaries)


def test_a_standalone_source_syncs_into_a_cluster_target_under_writes(clusters: ClusterFactory, servers,
                                                                        tmp_path: Path) -> None:
    source = servers.get("redis-7.0", *FAST)
    target = clusters.get("valkey-8.1", 2)
    fill(source.client(), 300)
    writer = Writer(source.client())
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    job.streaming()
    time.sleep(1.0)
    assert writer.finish() > 100
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None and result.sync.cutover is not None and result.sync.cutover.counts_match
    differences = diff(source.client(), cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    assert not [k for k in cluster_client(target).scan_iter() if is_marker_key(k)]


def test_a_cluster_syncs_into_a_cluster_of_another_shape_under_writes(clusters: ClusterFactory,
                                                                     tmp_path: Path) -> None:
    source = fast(clusters.get("redis-7.0", 3))
    target = clusters.get("valkey-8.1", 2)
    fill(cluster_client(source), 300)
    writer = Writer(source)
    job = SyncRun(sync_config(source.url(), target.url(), tmp_path))
    shards_streaming(job, 3)
    time.sleep(1.0)
    assert writer.finish() > 100
    caught_up(job, source)
    result = job.cutover()
    assert result.sync is not None and result.sync.cutover is not None and result.sync.cutover.counts_match
    differences = diff(cluster_client(source), cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    assert not [k for k in cluster_client(target).scan_iter() if is_marker_key(k)]


def test_a_source_database_other_than_0_into_a_cluster_is_refused(clusters: ClusterFactory, servers,
                                                                  tmp_path: Path) -> None:
    source, target = servers.get("redis-7.0"), clusters.get("valkey-8.1", 2)
    source.client().flushall()
    redis.Redis.from_url(source.url_for(3)).set("elsewhere", 1)
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    with pytest.raises(ConfigError, match="db 0 only"):
        job.join(60)


def test_a_source_user_denied_psync_is_refused_before_anything_is_written(clusters: ClusterFactory, servers,
                                                                         tmp_path: Path) -> None:
    """A cluster source is followed through replication only: a user the ACL denies PSYNC (which Redis 7.0 refuses
    inside MULTI before its ACL check) is named before the target is touched, not found out by the link's NOPERM."""
    source, target = clusters.get("redis-7.0", 3), servers.get("valkey-8.1")
    target.client().flushall()
    try:
        for node in source.nodes:
            node.call("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-psync", "-sync")
        url = source.nodes[0].server.url_for(0, "app", "pw")
        job = SyncRun(sync_config(url, target.url, tmp_path))
        with pytest.raises(ConfigError, match="refuses replication") as refused:
            job.join(60)
        assert "may not run PSYNC" in refused.value.message and "+psync" in (refused.value.hint or "")
        assert "pw" not in refused.value.message
        assert target.client().dbsize() == 0
    finally:
        for node in source.nodes:
            node.call("ACL", "DELUSER", "app")


def test_auto_cutover_needs_every_primary_to_pause_writes(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source = clusters.get("redis-6.0", 3)
    target = servers.get("valkey-8.1")
    job = SyncRun(sync_config(source.url(), target.url, tmp_path, cutover=CutoverMode.AUTO))
    with pytest.raises(ConfigError, match="CLIENT PAUSE WRITE on every source primary"):
        job.join(60)



def test_a_slot_migration_on_the_target_during_the_sync_is_followed(clusters: ClusterFactory, servers,
                                                                    tmp_path: Path) -> None:
    source = servers.get("redis-7.0", *FAST)
    target = clusters.fresh("valkey-8.1", 2)
    fill(source.client(), 200, big=False)
    writer = Writer(source.client())
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    job.streaming()
    slot = key_slot(b"w:counter:0")  # INCRed all along by the writer
    migration = target.migration(slot, next(n for n in target.primaries if n is not target.owner_of_slot(slot)))
    migration.begin()
    time.sleep(0.5)
    while migration.move_keys(2):  # a few keys at a time while the stream writes into the slot
        time.sleep(0.2)
    migration.finish()
    time.sleep(0.5)
    assert writer.finish() > 100
    job.caught_up(source)
    result = job.cutover()
    assert target.owner_of_slot(slot) is migration.destination
    differences = diff(source.client(), cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    assert result.sync is not None and result.sync.stream["applied_commands"] > 100


def test_kill_9_then_resume_into_a_cluster_target_applies_nothing_twice(clusters: ClusterFactory, servers,
                                                                       tmp_path: Path) -> None:
    source = servers.get("redis-7.0", *FAST)
    target = clusters.get("valkey-8.1", 2)
    client = source.client()
    fill(client, 200, big=False)
    cli = CliRun("sync", source, SimpleNamespace(url=target.url()), tmp_path)
    first = cli.start()
    cli.streaming(first)
    earlier = int(client.info("replication")["master_repl_offset"])
    for i in range(300):
        client.rpush(f"before:{i % 13}", i)  # RPUSH: applied twice would show
    offset = int(client.info("replication")["master_repl_offset"])
    cli.wait(first, lambda d: d["applied_offset"] >= offset)
    first.kill()
    first.communicate()
    # As if the kill had come after the slots' transactions but before the floor marker: the floor goes back, so
    # the resumed stream replays those RPUSHes, and only the slot markers keep them from being applied twice.
    floor = marker_key(SYNC_STREAM_ID)
    cluster_client(target).set(floor, marker_value(earlier, 0, int(time.time() * 1000)))
    for i in range(300):
        client.rpush(f"between:{i % 13}", i)
    second = cli.start("--resume")
    doc = cli.wait(second, lambda d: d.get("pid") == second.pid and d["phase"] == "streaming")
    assert doc["resync"] == "partial", doc
    for i in range(100):
        client.rpush(f"after:{i % 13}", i)
    offset = int(client.info("replication")["master_repl_offset"])
    cut_over(cli, second, offset)
    same_and_unmarked(client, target)


def test_a_failover_of_the_target_cluster_during_the_sync_is_followed(clusters: ClusterFactory, servers,
                                                                      tmp_path: Path) -> None:
    source = servers.get("redis-7.0", *FAST)
    target = clusters.fresh("valkey-8.1", 2, replicas=1)
    fill(source.client(), 200, big=False)
    writer = Writer(source.client())
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    job.streaming()
    old = target.primaries[0]
    target.failover(target.replicas_of(old)[0])  # CLUSTER FAILOVER: the old primary answers MOVED from now on
    time.sleep(1.0)
    assert writer.finish() > 100
    job.caught_up(source)
    result = job.cutover()
    differences = diff(source.client(), cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    assert result.sync is not None and result.sync.resyncs[-1].kind == "full" and len(result.sync.resyncs) == 1


def test_a_cluster_into_itself_is_refused(clusters: ClusterFactory, tmp_path: Path) -> None:
    cluster = clusters.get("valkey-8.1", 3)
    job = SyncRun(sync_config(cluster.url(), cluster.nodes[1].url, tmp_path))
    with pytest.raises(ConfigError, match="same"):
        job.join(60)


LIBRARY = "#!lua name=synclib\nredis.register_function('one', function() return 1 end)"


def test_keyless_commands_reach_every_primary_of_a_cluster_target(clusters: ClusterFactory, servers,
                                                                  tmp_path: Path) -> None:
    """FLUSHALL (which takes the markers with it) and FUNCTION LOAD from a standalone source: run on every target
    primary once what came before them is committed; the stream goes on exactly once after them."""
    source = servers.get("redis-7.0", *FAST)
    target = clusters.get("valkey-8.1", 3)
    client = source.client()
    fill(client, 100, big=False)
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    job.streaming()
    for i in range(200):
        client.rpush(f"gone:{i % 17}", i)
    client.flushall()
    client.function_load(LIBRARY)
    for i in range(300):
        client.rpush(f"kept:{i % 17}", i)
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None and result.sync.cutover is not None and result.sync.cutover.counts_match
    differences = diff(client, cluster_client(target))
    assert differences == [], "\n".join(differences[:20])
    for node in target.primaries:
        listed = node.client().execute_command("FUNCTION", "LIST")
        assert [lib[b"library_name"] for lib in listed] == [b"synclib"]
    assert not [k for k in cluster_client(target).scan_iter() if is_marker_key(k)]


def test_kill_9_then_resume_from_a_cluster_into_a_cluster(clusters: ClusterFactory, tmp_path: Path) -> None:
    """Each source primary's follower resumes from its own floor, skipping what its slot markers hold: the floor of
    every follower moved back by hand after the kill, the RPUSHes replayed, none applied twice."""
    source = fast(clusters.get("redis-7.0", 3))
    target = clusters.get("valkey-8.1", 2)
    client = cluster_client(source)
    fill(client, 200, big=False)
    cli = CliRun("sync", SimpleNamespace(url=source.url()), SimpleNamespace(url=target.url()), tmp_path)
    first = cli.start()
    cli.wait(first, lambda d: d.get("pid") == first.pid and d["phase"] == "streaming"
             and all(s["phase"] == "streaming" for s in d.get("shards") or [{"phase": ""}]))
    earlier = {n.port: int(n.info("replication")["master_repl_offset"]) for n in source.primaries}
    for i in range(400):
        client.rpush(f"before:{i % 29}", i)
    total = summed_offset(source)
    cli.wait(first, lambda d: d["applied_offset"] >= total)
    first.kill()
    first.communicate()
    floors = [k for k in cluster_client(target).scan_iter() if is_marker_key(k) and b"{" not in k]
    assert len(floors) == 3, floors
    by_slots = {"-".join(map(str, source.slot_ranges(p)[0])): p.port for p in source.primaries}
    for key in floors:
        port = by_slots[key.decode().rsplit(":", 1)[1]]
        cluster_client(target).set(key, marker_value(earlier[port], 0, int(time.time() * 1000)))
    for i in range(100):
        client.rpush(f"between:{i % 29}", i)
    second = cli.start("--resume")
    doc = cli.wait(second, lambda d: d.get("pid") == second.pid and d["phase"] == "streaming"
                   and len(d.get("shards") or []) == 3 and all(s["phase"] == "streaming" for s in d["shards"]))
    assert [s["resync"] for s in doc["shards"]] == ["partial"] * 3, doc["shards"]
    total = summed_offset(source)
    cut_over(cli, second, total)
    same_and_unmarked(client, target)


def test_redis_8_cluster_with_field_ttls_syncs_into_a_4_shard_valkey_9_1_cluster(clusters: ClusterFactory,
                                                                                tmp_path: Path) -> None:
    """The issue's second pair: RDB 12 snapshots of every primary and a stream of field-TTL commands (HEXPIRE,
    HSETEX) into Valkey 9.1, which keeps field TTLs."""
    source = fast(clusters.get("redis-8.0.2", 3))
    target = clusters.get("valkey-9.1", 4)
    client = cluster_client(source)
    written = fill(client, 300, field_ttls=True)
    job = SyncRun(sync_config(source.url(), target.url(), tmp_path))
    shards_streaming(job, 3)
    writer = Writer(source)
    for i in range(40):
        key = f"live-fttl:{i}"
        client.hset(key, mapping={"a": "1", "b": "2", "c": "3"})
        client.execute_command("HEXPIRE", key, 3600 + i, "FIELDS", 2, "a", "b")
        client.execute_command("HSETEX", key, "EX", 7200, "FIELDS", 1, "c", "4")
    assert writer.finish() > 50
    caught_up(job, source)
    result = job.cutover()
    assert result.sync is not None and result.sync.cutover is not None and result.sync.cutover.counts_match
    assert result.skipped == () and not result.sync.stream["skipped"]["count"]
    same_and_unmarked(client, target)
    assert written.field_ttl_keys
    ttl = cluster_client(target).execute_command("HPEXPIRETIME", "live-fttl:3", "FIELDS", 3, "a", "b", "c")
    assert all(t > 0 for t in ttl), ttl
    verified(source.url(), target.url())  # `migrate verify` exits 0 across both clusters
    first = target.primaries[0]
    doomed = next(k for k in target.keys_by_node()[first.node_id] if b"fttl" in k)
    divergent_after_delete(first.client(), doomed, source.url(), target.url())  # verify exits 5 naming it


@pytest.mark.parametrize("strategy", [Strategy.SYNC, Strategy.RELOAD, Strategy.RELAY])
def test_read_from_replica_is_refused_where_it_does_not_apply(strategy: Strategy) -> None:
    """A sync follows each primary's stream (and pauses the primaries); reload takes the primaries' snapshots: the
    option would be silently ignored, so it is refused."""
    with pytest.raises(ConfigError, match="--read-from replica applies to --strategy replay"):
        RunOptions(strategy=strategy, read_from="replica").validate()
    RunOptions(strategy=Strategy.REPLAY, read_from="replica").validate()


def test_a_target_primary_that_dies_for_good_fails_the_sync_in_bounded_time(clusters: ClusterFactory, servers,
                                                                            tmp_path: Path, monkeypatch) -> None:
    """No replica takes over: the slot transactions on the dead primary can neither be sent nor settled (their
    outcome is unknown, so they are never sent again blindly), and the sync fails once the retry budget is spent,
    resumable, instead of waiting per slot (it waited more than 300 s before)."""
    monkeypatch.setattr(slotapply, "RETRY_SECONDS", 5.0)
    source = servers.get("redis-7.0", *FAST)
    target = clusters.fresh("valkey-8.1", 2)
    job = SyncRun(sync_config(source.url, target.url(), tmp_path))
    job.streaming()
    target.kill(target.primaries[1])
    pipe = source.client().pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"after:{i}", i)
    started = time.monotonic()
    pipe.execute()  # batches that each touch hundreds of the dead primary's slots
    job.thread.join(120)
    assert not job.thread.is_alive() and time.monotonic() - started < 60
    assert isinstance(job.error, MigrationError) and "did not take" in job.error.message, job.error
    assert "--resume" in job.error.hint
