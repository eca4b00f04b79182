"""The local cluster launcher (fixtures/cluster.py): shape, ports, folders, failover, and nothing left running."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.cluster import MAX_PORT, ClusterSpec, even_ranges, running_cluster
from fixtures.sandbox import load_manifest
from tests.cluster_support import ClusterFactory


def test_a_cluster_has_its_shape_ports_and_folders(clusters: ClusterFactory) -> None:
    cluster = clusters.get("valkey-8.1", shards=3, replicas=1)
    assert len(cluster.nodes) == 6 and len(cluster.primaries) == 3
    assert all(n.port <= MAX_PORT for n in cluster.nodes)
    folders = {n.server.dir for n in cluster.nodes}
    assert len(folders) == 6 and all((Path(d) / "nodes.conf").is_file() for d in folders)
    assert [cluster.slot_ranges(n) for n in cluster.primaries] == [[r] for r in even_ranges(3)]
    for primary in cluster.primaries:
        (replica,) = cluster.replicas_of(primary)
        assert replica.info("replication")["master_port"] == str(primary.port)
    assert cluster.converged() and cluster.intact()


def test_every_process_is_stopped_even_when_the_block_fails(tmp_path: Path) -> None:
    if "valkey-8.1" not in load_manifest():
        pytest.skip("valkey-8.1 is not provisioned")
    processes = []
    with pytest.raises(RuntimeError, match="test failure"), \
            running_cluster(ClusterSpec("valkey-8.1", shards=2, replicas=1), tmp_path) as cluster:
        processes = [n.server.process for n in cluster.nodes]
        assert all(p is not None and p.poll() is None for p in processes)
        raise RuntimeError("test failure")
    assert len(processes) == 4 and all(p is not None and p.poll() is not None for p in processes)


def test_failover_swaps_roles_and_the_map_converges(clusters: ClusterFactory) -> None:
    cluster = clusters.fresh("redis-7.0", shards=2, replicas=1)
    old = cluster.nodes[0]
    (replica,) = cluster.replicas_of(old)
    ranges = cluster.slot_ranges(old)
    new = cluster.failover(replica)
    assert new.is_primary and not old.is_primary and old.primary_id == new.node_id
    assert cluster.slot_ranges(new) == ranges and cluster.slot_ranges(old) == []
    assert cluster.converged() and not cluster.intact()


@pytest.mark.parametrize("name", ["redis-6.0", "valkey-8.0"])
def test_clusters_start_on_the_oldest_servers(clusters: ClusterFactory, name: str) -> None:
    """Redis 6.0 has no ADDSLOTSRANGE (7.0+): its slots are added one by one."""
    cluster = clusters.get(name, shards=2)
    assert [cluster.slot_ranges(n) for n in cluster.primaries] == [[r] for r in even_ranges(2)]
