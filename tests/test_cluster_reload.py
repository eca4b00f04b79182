"""`--strategy reload` with clusters: each source primary's snapshot (spooled and checked before the flush, or
streamed), RDB files per shard (--from-rdb repeated), loading routed by slot into a cluster target."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from migrate.errors import BadInputError, MigrateError, MigrationError, TargetOutOfMemoryError
from migrate.rdb.rewrite import key_slot
from migrate.run import Strategy, run
from migrate.run.options import OnIncompatible
from tests.cluster_run_support import cluster_client, diff, fill, keys_of, run_config
from tests.cluster_support import ClusterFactory
from tests.test_cluster_run import verified


def test_reload_a_cluster_into_a_cluster_shard_by_shard(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 300)
    cluster_client(target).set("stale", "x")  # the flush empties every target primary
    plan: list[str] = []
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                            spool_dir=tmp_path), on_plan=lambda lines: plan.extend(lines))
    assert "each of the 3 primaries" in plan[0] and "all at once" in plan[0] and "each of the 2 primaries" in plan[2]
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []
    assert not list(tmp_path.glob("migrate-snapshot-*"))  # spooled snapshots removed
    verified(source.url(), target.url())


def test_reload_a_standalone_streamed_into_a_cluster(clusters: ClusterFactory, servers, tmp_path: Path) -> None:
    source = servers.get("redis-7.0", "--repl-diskless-sync-delay", "0")
    target = clusters.get("valkey-8.1", 3)
    written = fill(source.client(), 300)
    result = run(run_config(source.url, target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True, spool=False))
    assert result.copied == written.total
    assert all(keys for keys in target.keys_by_node().values())
    assert diff(source.client(), cluster_client(target)) == []


def test_reload_rdb_files_of_each_shard(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-8.0.2", 3), clusters.get("valkey-9.1", 4)
    written = fill(cluster_client(source), 300, field_ttls=True)
    files = []
    for i, node in enumerate(source.primaries):
        node.call("SAVE")
        files.append(shutil.copy(node.server.dir / "dump.rdb", tmp_path / f"shard-{i}.rdb"))
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                            from_rdb=tuple(Path(f) for f in files)))
    assert result.copied == written.total and keys_of(cluster_client(target)) == written.keys
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_snapshots_load_in_worker_processes_and_their_tallies_merge(clusters: ClusterFactory,
                                                                   tmp_path: Path) -> None:
    """Each primary's snapshot in its own worker: every key copied, and the keys each worker changed (field TTLs
    into Valkey 8.1 under lossy) named together in one report."""
    source, target = clusters.get("redis-8.0.2", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 300, field_ttls=True)
    plan: list[str] = []
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                            spool_dir=tmp_path, workers=3, on_incompatible=OnIncompatible.LOSSY),
                 on_plan=lambda lines: plan.extend(lines))
    assert any("the 3 snapshots checked and loaded at once by 3 worker processes" in line for line in plan)
    assert "3 snapshots checked and loaded at once by 3 worker processes" in result.notes
    assert result.copied == written.total and keys_of(cluster_client(target)) == written.keys
    changed = {issue.key for issue in result.changed}
    assert changed == {k.decode() for k in written.field_ttl_keys} and len(changed) > 3
    owners = {source.owner_of_slot(key_slot(key.encode())).node_id for key in changed}
    assert len(owners) == 3  # named by every worker


def test_one_worker_loads_one_snapshot_after_the_other(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 200)
    plan: list[str] = []
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                            spool_dir=tmp_path, workers=1), on_plan=lambda lines: plan.extend(lines))
    assert not any("worker processes" in note for note in result.notes)
    assert "one snapshot after the other" in plan[3]
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_a_failing_worker_stops_the_reload_and_says_the_target_was_flushed(clusters: ClusterFactory,
                                                                          tmp_path: Path) -> None:
    """The target runs out of memory in the middle of the load: one line naming the snapshot, the flush and the
    cause, the documented exit code, and no worker process left behind."""
    source, target = clusters.get("redis-7.0", 3), clusters.fresh("valkey-8.1", 2)
    fill(cluster_client(source), 3000)
    for node in target.primaries:
        used = node.client().info("memory")["used_memory"]
        node.call("CONFIG", "SET", "maxmemory", str(used + 200_000))
        node.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    with pytest.raises(MigrateError) as caught:
        run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True, spool_dir=tmp_path,
                       workers=2))
    error = caught.value
    assert error.message.startswith("the target was flushed and holds a partial load: ")
    assert "migrate-snapshot-" in error.message and "memory" in error.message.lower()
    assert isinstance(error, TargetOutOfMemoryError) and error.exit_code == 4
    assert not multiprocessing.active_children()


def test_a_bad_snapshot_among_several_is_refused_before_the_flush(clusters: ClusterFactory, servers,
                                                                  tmp_path: Path) -> None:
    """The files are checked in the worker processes, at once; a truncated one stops the run with the target
    untouched, naming the file."""
    source, target = clusters.get("redis-7.0", 3), servers.get("valkey-9.1")
    fill(cluster_client(source), 300)
    files = []
    for i, node in enumerate(source.primaries):
        node.call("SAVE")
        files.append(Path(shutil.copy(node.server.dir / "dump.rdb", tmp_path / f"shard-{i}.rdb")))
    files[1].write_bytes(files[1].read_bytes()[:-300])
    target.client().set("kept", "1")
    with pytest.raises(BadInputError, match=r"shard-1\.rdb is unusable: .*the target was not touched"):
        run(run_config(source.url(), target.url, tmp_path, strategy=Strategy.RELOAD, yes=True, from_rdb=tuple(files),
                       workers=2))
    assert target.client().dbsize() == 1 and target.client().get("kept") == b"1"
    assert not multiprocessing.active_children()


def test_a_killed_worker_is_a_clear_error(clusters: ClusterFactory, tmp_path: Path) -> None:
    """A worker process killed (the OOM killer, an operator) ends the run with one clear error, not a traceback,
    and no worker left behind."""
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    fill(cluster_client(source), 3000, big=False)
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.pid is not None and "Process" in type(child).__name__:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        with pytest.raises(MigrationError, match=r"a worker process died while (checking|loading) ") as caught:
            run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                           spool_dir=tmp_path, workers=2))
    finally:
        killer.join()
    assert killed and "OOM killer" in caught.value.hint
    assert not multiprocessing.active_children()


def test_streamed_snapshots_load_at_once_too(clusters: ClusterFactory, tmp_path: Path) -> None:
    """--no-spool: each worker streams its primary's snapshot straight into the target."""
    source, target = clusters.get("redis-8.0.2", 3), clusters.get("valkey-9.1", 2)
    written = fill(cluster_client(source), 300, field_ttls=True)
    plan: list[str] = []
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True, spool=False,
                            workers=3), on_plan=lambda lines: plan.extend(lines))
    assert any("the 3 snapshots streamed and loaded at once by 3 worker processes" in line for line in plan)
    assert "3 snapshots loaded at once by 3 worker processes" in result.notes
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []
