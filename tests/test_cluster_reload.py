"""`--strategy reload` with clusters: each source primary's snapshot (spooled and checked before the flush, or
streamed), RDB files per shard (--from-rdb repeated), loading routed by slot into a cluster target."""

from __future__ import annotations

import shutil
from pathlib import Path

from migrate.run import Strategy, run
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
    assert "each of the 3 primaries" in plan[0] and "each of the 2 primaries" in plan[2]
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
