"""`migrate run` and `migrate verify` with clusters on either side, on real local clusters: every shape the issue names,
a source failover and a target slot migration during the run, kill -9 then --resume, the refusals, and the original
bug (a cluster named by one node's URL must be copied whole, and verify must see all of it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from migrate.cluster.errors import ClusterUnhealthyError
from migrate.errors import ConfigError
from migrate.rdb.rewrite import key_slot, slot_tag
from migrate.run import RunResult, run
from migrate.verify import VerifyConfig, VerifyOptions, verify
from tests.cluster_run_support import cluster_client, diff, fill, keys_of, run_config
from tests.cluster_support import ClusterFactory

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrate", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def verified(source_url: str, target_url: str) -> None:
    """verify exits 0 on the CLI (the user's proof), both directions."""
    done = cli("verify", "--source", source_url, "--target", target_url, "--format", "json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and report["totals"]["divergent"] == 0


def divergent_after_delete(target_client: redis.Redis, key: bytes, source_url: str, target_url: str) -> None:
    """One key deleted on the target: verify exits 5 and names it."""
    target_client.delete(key)
    done = cli("verify", "--source", source_url, "--target", target_url, "--format", "json", "--rounds", "1",
               "--interval", "0.1")
    assert done.returncode == 5, done.stderr[-2000:]
    report = json.loads(done.stdout)
    named = [(k["key"], k["reason"]) for k in report["divergent_keys"]]
    assert named == [(key.decode(), "missing_on_target")]


def test_a_cluster_named_by_one_node_is_copied_whole_and_verified(clusters: ClusterFactory, tmp_path: Path) -> None:
    """The original bug: a 3-shard Redis 8.0 source given by one node's URL copied that node's third and exited 0,
    and verify said PARITY. Now every shard is copied, and verify reads every shard."""
    source, target = clusters.get("redis-8.0.2", 3), clusters.get("valkey-9.1", 2)
    written = fill(cluster_client(source), 600)
    per_node = {node: len(keys) for node, keys in source.keys_by_node().items()}
    assert len(per_node) == 3 and max(per_node.values()) < written.total  # one node alone holds a third
    result = run(run_config(source.nodes[1].url, target.nodes[0].url, tmp_path))
    assert result.copied == written.total and len(result.shards) == 3
    assert keys_of(cluster_client(target)) == written.keys
    assert diff(cluster_client(source), cluster_client(target)) == []
    verified(source.nodes[1].url, target.nodes[1].url)
    divergent_after_delete(cluster_client(target), b"k:7", source.nodes[2].url, target.nodes[0].url)


def test_redis_70_three_shards_into_valkey_81_two_shards(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 400)
    result = run(run_config(source.url(), target.url(), tmp_path, workers=2))
    assert result.copied == written.total and not result.busy and not result.skipped
    assert {s.slots for s in result.shards} == {"0-5460", "5461-10921", "10922-16383"}
    assert sum(s.copied for s in result.shards) == written.total
    assert result.dbs[0].by_route.get("chunked") == len(written.big)  # big keys in chunks, routed by slot
    assert diff(cluster_client(source), cluster_client(target)) == []
    assert not (tmp_path / "cp.json").exists() and not (tmp_path / "cp.json.shards").exists()
    verified(source.url(), target.url())
    divergent_after_delete(cluster_client(target), b"k:11", source.url(), target.url())


def test_redis_80_field_ttls_into_valkey_91_four_shards(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-8.0.2", 3), clusters.get("valkey-9.1", 4)
    written = fill(cluster_client(source), 300, field_ttls=True)
    result = run(run_config(source.url(), target.url(), tmp_path))
    assert result.copied == written.total
    assert result.dbs[0].by_route.get("rewrite") == len(written.field_ttl_keys)  # HSET + HPEXPIREAT, one slot each
    assert diff(cluster_client(source), cluster_client(target)) == []
    ttls = cluster_client(target).execute_command("HPEXPIRETIME", "k:fttl:3", "FIELDS", 2, "goes", "keep")
    assert ttls[0] > 0 and ttls[1] == -1
    verified(source.url(), target.url())
    divergent_after_delete(cluster_client(target), b"k:fttl:4", source.url(), target.url())


def test_a_cluster_into_a_standalone_valkey(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), servers.get("valkey-8.1")
    written = fill(cluster_client(source), 300)
    result = run(run_config(source.url(), target.url, tmp_path))
    assert result.copied == written.total and target.client().dbsize() == written.total
    assert diff(cluster_client(source), target.client()) == []
    verified(source.url(), target.url)
    divergent_after_delete(target.client(), b"k:13", source.url(), target.url)


def test_a_standalone_redis_into_a_valkey_cluster(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source, target = servers.get("redis-7.0"), clusters.get("valkey-8.1", 3)
    written = fill(source.client(), 300)
    result = run(run_config(source.url, target.url(), tmp_path))
    assert result.copied == written.total and [s.slots for s in result.shards] == ["standalone"]
    per_node = {node: len(keys) for node, keys in target.keys_by_node().items()}
    assert len(per_node) == 3 and all(per_node.values())  # spread over every target shard by slot
    assert diff(source.client(), cluster_client(target)) == []
    verified(source.url, target.url())
    divergent_after_delete(cluster_client(target), b"k:17", source.url, target.url())


def test_databases_a_cluster_lacks_are_refused_or_mapped(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source, target = servers.get("redis-7.0"), clusters.get("valkey-8.1", 2)
    source.client(0).set("zero", "0")
    source.client(2).set("two", "2")
    with pytest.raises(ConfigError) as refused:
        run(run_config(source.url, target.url(), tmp_path))
    assert "no database 2" in refused.value.message and "--db-map" in refused.value.hint
    result = run(run_config(source.url, target.url(), tmp_path, selection=_db_map((2, 0), (0, 0))))
    assert result.copied == 2 and keys_of(cluster_client(target)) == {b"zero", b"two"}


def _db_map(*pairs: tuple[int, int]) -> object:
    from migrate.selection import KeySelection

    return KeySelection(db_map=pairs)


def test_read_from_replicas(clusters: ClusterFactory, tmp_path: Path) -> None:
    # Redis 8.0: its replicas hold streams exactly as their primaries (Redis 7.0's lose entries-read: facts.releases)
    source, target = clusters.get("redis-8.0.2", 3, 1), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 200, big=False)
    for primary in source.primaries:  # the replicas hold every write before the run reads them
        primary.call("WAIT", 1, 5000)
    result = run(run_config(source.url(), target.url(), tmp_path, read_from="replica"))
    replicas = {n.server.port for n in source.replicas}
    assert {int(s.node.rpartition(":")[2]) for s in result.shards} == replicas
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_unhealthy_migrating_or_identical_clusters_are_refused(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    cluster_client(source).set("a", "1")
    with pytest.raises(ConfigError) as same:
        run(run_config(source.nodes[0].url, source.nodes[2].url, tmp_path))
    assert "same cluster" in same.value.message
    slot = key_slot(b"a")
    migration = source.migration(slot, next(n for n in source.primaries if n is not source.owner_of_slot(slot)))
    migration.begin()
    try:
        with pytest.raises(ClusterUnhealthyError) as unfit:
            run(run_config(source.url(), target.url(), tmp_path))
        assert f"slot {slot} migrating" in unfit.value.message
        with pytest.raises(ClusterUnhealthyError):
            verify(VerifyConfig(run_config(source.url(), target.url(), tmp_path).common))
    finally:
        migration.finish()
    assert not keys_of(cluster_client(target))  # nothing was written


def test_several_seeds_the_first_unreachable(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 100, big=False)
    dead = "redis://127.0.0.1:1/0"
    result = run(run_config(f"{dead},{source.nodes[2].url}", f"{dead},{target.nodes[1].url}", tmp_path))
    assert result.copied == written.total


def test_identify_shows_the_cluster(clusters: ClusterFactory) -> None:
    source = clusters.get("redis-7.0", 3)
    cluster_client(source).set("x", "1")
    done = cli("identify", "--source", source.nodes[2].url, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["source"]
    assert report["mode"] == "cluster" and len(report["cluster"]["shards"]) == 3
    assert report["keyspace"] == {"0": 1}
    text = cli("identify", "--source", source.nodes[0].url).stdout
    assert "cluster" in text and "3 shards" in text and "5461-10921" in text


# ---- during the run: a source failover, a target slot migration -------------------------------------------------

def _progress(folder: Path, at_least: int, timeout: float = 60) -> int:
    """Keys the units' checkpoints report copied, once at least `at_least`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        copied = 0
        for path in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                copied += sum(int(db["tally"]["copied"]) for db in json.loads(path.read_text())["dbs"].values())
        if copied >= at_least:
            return copied
        time.sleep(0.05)
    raise AssertionError(f"the run made no progress ({folder})")


def _in_thread(fn, *args) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def body() -> None:
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def test_a_source_failover_during_the_run_is_followed(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.fresh("redis-7.0", 3, 1), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 300, big=False)
    tag = slot_tag(100).decode()  # 3000 keys in slot 100: the first unit (slots 0-5460) is still reading them
    pipe = cluster_client(source).pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"{{{tag}}}:{i}", "v")
    pipe.execute()
    config = run_config(source.url(), target.url(), tmp_path, workers=1, rate_limit=1500, batch_size=100)
    thread, out = _in_thread(run, config)
    _progress(tmp_path / "cp.json.shards", 300)
    first = source.owner_of_slot(100)
    source.failover(source.replicas_of(first)[0])
    thread.join(120)
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert isinstance(result, RunResult)
    assert any("failover" in note for note in result.notes), result.notes
    assert result.copied == written.total + 3000
    assert diff(cluster_client(source), cluster_client(target)) == []
    verified(source.url(), target.url())


def test_a_target_slot_migration_during_the_run_is_followed(clusters: ClusterFactory, tmp_path: Path) -> None:
    slot_migration_during_a_run(clusters, tmp_path, tmp_path / "cp.json.shards", workers=1)


def slot_migration_during_a_run(clusters: ClusterFactory, tmp_path: Path, folder: Path, **options: object) -> None:
    """A slot of the target migrates (SETSLOT MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE) while the run writes 300
    keys into it: the writes follow ASK, TRYAGAIN and MOVED, nothing is lost."""
    source, target = clusters.get("redis-7.0", 3), clusters.fresh("valkey-8.1", 2)
    written = fill(cluster_client(source), 2000, big=False)
    tagged = [f"{{moving}}:{i}".encode() for i in range(300)]  # one slot, written all through the run
    pipe = cluster_client(source).pipeline(transaction=False)
    for key in tagged:
        pipe.set(key, b"v" * 20)
    pipe.execute()
    slot = key_slot(tagged[0])
    config = run_config(source.url(), target.url(), tmp_path, rate_limit=2000, batch_size=50, **options)
    thread, out = _in_thread(run, config)
    _progress(folder, 100)
    migration = target.migration(slot, next(n for n in target.primaries if n is not target.owner_of_slot(slot)))
    migration.begin()
    moved_while_running = 0
    while thread.is_alive() and moved_while_running < 3:  # keys move while the run writes into the slot
        moved_while_running += migration.move_keys(20)
        time.sleep(0.3)
    while migration.move_keys(100):
        pass
    migration.finish()
    thread.join(120)
    assert "error" not in out, out.get("error")
    assert out["result"].copied == written.total + len(tagged)  # type: ignore[attr-defined]
    assert target.owner_of_slot(slot) is migration.destination
    assert diff(cluster_client(source), cluster_client(target)) == []
    verified(source.url(), target.url())


def test_kill_9_then_resume_redoes_only_unfinished_shards(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 3000, big=False)
    checkpoint = tmp_path / "cp.json"
    args = ["run", "--source", source.url(), "--target", target.url(), "--checkpoint", str(checkpoint),
            "--format", "json", "--no-progress", "--workers", "2", "--batch-size", "100"]
    proc = subprocess.Popen([sys.executable, "-m", "migrate", *args, "--rate-limit", "1200"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _progress(tmp_path / "cp.json.shards", 700)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its worker processes: a machine that died
        proc.wait(timeout=10)
    units = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "cp.json.shards").glob("*.json")}
    assert units and not all(u["dbs"]["0"]["done"] for u in units.values())
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["resumed"] is True and report["totals"]["copied"] == written.total
    assert any(s["resumed_at"] for s in report["shards"])  # unfinished shards continued from their cursor
    done_before = {name for name, u in units.items() if u["dbs"]["0"]["done"]}
    for shard in report["shards"]:
        if shard["unit"] in done_before:
            assert shard["keys"] == 0  # a shard finished before the kill is not copied again
    assert not any("copied again" in note for note in report["notes"])
    assert diff(cluster_client(source), cluster_client(target)) == []
    verified(source.url(), target.url())


def test_verify_names_extra_and_changed_keys_across_clusters(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    fill(cluster_client(source), 200, big=False)
    config = run_config(source.url(), target.url(), tmp_path)
    run(config)
    cluster_client(target).set("only-on-target", "1")
    cluster_client(target).set("k:6", "changed")
    result = verify(VerifyConfig(config.common, VerifyOptions(rounds=1, interval=0.1)))
    found = {(d.key, d.reason.value) for d in result.divergent.keys}
    assert found == {(b"only-on-target", "extra_on_target"), (b"k:6", "value_mismatch")}


def test_a_target_that_lost_keys_is_found_on_resume_and_copied_again(clusters: ClusterFactory,
                                                                     tmp_path: Path) -> None:
    """The target guard of a sharded run: counted over every target primary at the end and on --resume."""
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 1500, big=False)
    config = run_config(source.url(), target.url(), tmp_path, workers=1, rate_limit=1500, batch_size=100)
    thread, out = _in_thread(run, config)
    _progress(tmp_path / "cp.json.shards", 600)
    target.primaries[0].call("FLUSHALL")  # a target primary loses what it held (a restart without persistence)
    thread.join(120)
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert isinstance(result, RunResult) and result.copied == written.total
    assert any("copied again from the start" in note for note in result.notes), result.notes
    assert diff(cluster_client(source), cluster_client(target)) == []
