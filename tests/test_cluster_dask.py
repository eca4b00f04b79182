"""The per-shard tasks on a Dask distributed cluster (a local cluster of worker processes, as `dask scheduler` and
`dask worker` would run on other hosts): the same copy, progress from the shared checkpoint folder, a worker killed
mid-task (the task runs again and continues from its checkpoint), and a source failover followed inside a task."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from migrate.errors import ConfigError
from migrate.rdb.rewrite import slot_tag
from migrate.run import RunResult, Strategy, run
from migrate.run.options import RunOptions
from tests.cluster_run_support import cluster_client, diff, fill, run_config
from tests.cluster_support import ClusterFactory
from tests.test_cluster_run import _in_thread, _progress, slot_migration_during_a_run, verified


@pytest.fixture(scope="module")
def dask() -> Iterator[LocalCluster]:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    try:
        yield cluster
    finally:
        cluster.close()


def finished(thread: threading.Thread, timeout: float, cluster: LocalCluster) -> None:
    """Wait for the run's thread; when it does not end, fail with what every side was doing (the run's own stack,
    the scheduler's task states, the workers' stacks), so that a run that stops moving can be diagnosed."""
    thread.join(timeout)
    if not thread.is_alive():
        return
    stack = "".join(traceback.format_stack(sys._current_frames()[thread.ident or 0]))
    with Client(cluster.scheduler_address) as client:
        states = client.run_on_scheduler(lambda dask_scheduler: {str(k): (t.state, str(t.processing_on))
                                                                 for k, t in dask_scheduler.tasks.items()})
        stacks = client.call_stack()
    raise AssertionError(f"the run did not end within {timeout:g} s\nrun thread:\n{stack}\ntasks: {states}\n"
                         f"worker stacks: {stacks}")


def test_shards_run_on_dask_workers(clusters: ClusterFactory, dask: LocalCluster, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 400)
    shared = tmp_path / "shared"  # the folder every worker reads and writes (a network share across hosts)
    result = run(run_config(source.url(), target.url(), tmp_path, scheduler=dask.scheduler_address,
                            checkpoint_dir=shared))
    assert result.copied == written.total and len(result.shards) == 3
    with Client(dask.scheduler_address) as client:
        worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids  # the tasks ran in the workers, not here
    assert diff(cluster_client(source), cluster_client(target)) == []
    assert not shared.exists()  # finished: the shards' checkpoints are gone
    verified(source.url(), target.url())


def test_a_worker_killed_mid_task_is_retried_from_the_checkpoint(clusters: ClusterFactory, dask: LocalCluster,
                                                                tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 3000, big=False)
    shared = tmp_path / "shared"
    config = run_config(source.url(), target.url(), tmp_path, scheduler=dask.scheduler_address, checkpoint_dir=shared,
                        rate_limit=900, batch_size=50, checkpoint_interval=0.2)
    thread, out = _in_thread(run, config)
    _progress(shared, 600)
    with Client(dask.scheduler_address) as client:
        busy = [w for w, tasks in client.processing().items() if tasks]
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)  # the worker process dies mid-task; its nanny starts a new one
    finished(thread, 180, dask)
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert isinstance(result, RunResult) and result.copied == written.total
    assert any(s.resumed_at for s in result.shards), result.shards  # continued from a saved cursor
    assert diff(cluster_client(source), cluster_client(target)) == []
    verified(source.url(), target.url())


def test_a_source_failover_inside_a_dask_task(clusters: ClusterFactory, dask: LocalCluster, tmp_path: Path) -> None:
    source, target = clusters.fresh("redis-8.0.2", 3, 1), clusters.get("valkey-9.1", 2)
    tag = slot_tag(100).decode()
    pipe = cluster_client(source).pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"{{{tag}}}:{i}", "v")
    pipe.execute()
    shared = tmp_path / "shared"
    config = run_config(source.url(), target.url(), tmp_path, scheduler=dask.scheduler_address, checkpoint_dir=shared,
                        rate_limit=1500, batch_size=100)
    thread, out = _in_thread(run, config)
    _progress(shared, 300)
    source.failover(source.replicas_of(source.owner_of_slot(100))[0])
    finished(thread, 120, dask)
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert isinstance(result, RunResult) and result.copied == 3000
    assert any("failover" in note for note in result.notes), result.notes
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_a_target_slot_migration_under_dask_tasks(clusters: ClusterFactory, dask: LocalCluster, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    slot_migration_during_a_run(clusters, tmp_path, shared, scheduler=dask.scheduler_address, checkpoint_dir=shared)


def test_no_scheduler_at_the_address_is_a_clear_error(clusters: ClusterFactory, tmp_path: Path) -> None:
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    cluster_client(source).set("a", "1")
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        run(run_config(source.url(), target.url(), tmp_path, scheduler="tcp://127.0.0.1:1"))
    assert "no Dask scheduler answered" in refused.value.message and time.monotonic() - started < 60


def test_reload_checks_and_loads_the_snapshots_as_dask_tasks(clusters: ClusterFactory, dask: LocalCluster,
                                                              tmp_path: Path) -> None:
    """--strategy reload --scheduler: each primary's snapshot spooled into a folder every worker reads, checked and
    loaded by Dask tasks; the tallies merge into one report that says where the loads ran."""
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 300)
    cluster_client(target).set("stale", "x")
    shared = tmp_path / "shared"
    shared.mkdir()
    plan: list[str] = []
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True,
                            spool_dir=shared, scheduler=dask.scheduler_address), on_plan=plan.extend)
    assert any(f"as tasks on the Dask scheduler {dask.scheduler_address}" in line for line in plan), plan
    assert f"3 snapshots checked and loaded at once by 2 Dask workers ({dask.scheduler_address})" in result.notes
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []
    assert not list(shared.iterdir())  # the spooled snapshots removed
    verified(source.url(), target.url())


def test_a_dask_worker_killed_mid_load_is_loaded_again_with_replace(clusters: ClusterFactory, dask: LocalCluster,
                                                                     tmp_path: Path) -> None:
    """The worker loading a snapshot dies: the scheduler runs the load again on another worker, which knows it is a
    second attempt and overwrites what the first wrote (no key reported busy); nothing is lost, and the report says
    which snapshot was loaded again."""
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    written = fill(cluster_client(source), 12_000, big=False)
    shared = tmp_path / "shared"
    shared.mkdir()
    config = run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True, spool_dir=shared,
                        scheduler=dask.scheduler_address, batch_size=5)
    thread, out = _in_thread(run, config)
    with Client(dask.scheduler_address) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            loading = [w for w, tasks in client.processing().items() if any("-load-" in str(t) for t in tasks)]
            if loading and cluster_client(target).dbsize() > 500:
                break
            time.sleep(0.05)
        assert loading, "no load task seen running"
        pid = client.run(os.getpid, workers=loading[:1])[loading[0]]
    os.kill(pid, signal.SIGKILL)
    finished(thread, 300, dask)
    assert "error" not in out, out.get("error")
    result = out["result"]
    assert isinstance(result, RunResult) and result.copied == written.total and not result.busy
    assert any("was loaded again on another Dask worker" in note for note in result.notes), result.notes
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_reload_refuses_the_scheduler_where_loads_must_run_in_order(tmp_path: Path) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(b"*1\r\n$4\r\nPING\r\n")
    with pytest.raises(ConfigError, match="does not apply to --from-aof"):
        RunOptions(strategy=Strategy.RELOAD, from_aof=aof, scheduler="tcp://127.0.0.1:1").validate()
    with pytest.raises(ConfigError, match="load one after the other"):
        RunOptions(strategy=Strategy.RELOAD, from_rdb=(aof, aof), replace=True,
                   scheduler="tcp://127.0.0.1:1").validate()
    with pytest.raises(ConfigError, match="runs here"):
        RunOptions(strategy=Strategy.SYNC, scheduler="tcp://127.0.0.1:1").validate()


def test_streamed_snapshots_load_inside_their_dask_tasks(clusters: ClusterFactory, dask: LocalCluster,
                                                         tmp_path: Path) -> None:
    """--no-spool: each task takes its primary's snapshot over the replication protocol itself (no shared folder)."""
    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-9.1", 2)
    written = fill(cluster_client(source), 200, big=False)
    result = run(run_config(source.url(), target.url(), tmp_path, strategy=Strategy.RELOAD, yes=True, spool=False,
                            scheduler=dask.scheduler_address))
    assert f"3 snapshots loaded at once by 2 Dask workers ({dask.scheduler_address})" in result.notes
    assert result.copied == written.total
    assert diff(cluster_client(source), cluster_client(target)) == []


def test_a_snapshot_a_worker_cannot_read_is_a_clear_error(dask: LocalCluster, tmp_path: Path) -> None:
    """A Dask worker on a host without the spool folder: refused before the flush, naming the folder to share."""
    from migrate.facts.capabilities import Capabilities
    from migrate.run.parallel_load import SnapshotPool

    pool = SnapshotPool(0, dask.scheduler_address)
    try:
        with pytest.raises(ConfigError) as refused:
            pool.check([tmp_path / "not-here.rdb"], run_config("redis://127.0.0.1:1", "redis://127.0.0.1:2", tmp_path),
                       Capabilities("valkey", (9, 1, 2)))
    finally:
        pool.close()
    assert "not readable on the worker host" in refused.value.message and "--spool-dir" in refused.value.hint
