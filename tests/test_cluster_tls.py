"""TLS carried to every cluster node: each node of a real cluster behind its own stunnel (Debian builds servers without
TLS), announcing the tunnel's port (cluster-announce-port), so CLUSTER NODES/SHARDS and MOVED name TLS ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.cluster import LocalCluster
from migrate.cluster.router import SlotRouter
from migrate.cluster.topology import read_topology
from migrate.config import ConnectionSettings, TlsOptions, parse_endpoint
from migrate.errors import TlsError
from migrate.rdb.rewrite import key_slot
from migrate.wire import pack
from tests.cluster_support import ClusterFactory
from tests.test_tls import Stunnel, pki  # noqa: F401  (pki: the test CA and certificates, a module fixture)

FAST = ConnectionSettings(connect_timeout=3, socket_timeout=10, retries=1)


@pytest.fixture
def tls_cluster(clusters: ClusterFactory, pki: Path) -> Iterator[tuple[LocalCluster, list[Stunnel]]]:  # noqa: F811
    cluster = clusters.fresh("valkey-8.1", shards=3)
    tunnels = [Stunnel(pki, node.port, mutual=False) for node in cluster.nodes]
    try:
        for node, tunnel in zip(cluster.nodes, tunnels, strict=True):
            node.call("CONFIG", "SET", "cluster-announce-port", tunnel.port)
        wanted = {t.port for t in tunnels}
        deadline = time.monotonic() + 30
        while not all({int(p[1].split(":")[1].split("@")[0]) for p in n.nodes_lines()} == wanted
                      for n in cluster.nodes):
            assert time.monotonic() < deadline, "the announced ports did not spread"
            time.sleep(0.1)
        yield cluster, tunnels
    finally:
        for tunnel in tunnels:
            tunnel.stop()


def test_tls_and_its_options_reach_every_node(tls_cluster: tuple[LocalCluster, list[Stunnel]],
                                              pki: Path) -> None:  # noqa: F811
    cluster, tunnels = tls_cluster
    tls = TlsOptions(ca_file=str(pki / "ca.crt"))
    seed = parse_endpoint(f"rediss://127.0.0.1:{tunnels[1].port}/0", tls)
    topology = read_topology(seed, FAST)
    assert sorted(n.endpoint.port for n in topology.nodes) == sorted(t.port for t in tunnels)
    assert all(n.endpoint.uses_tls and n.endpoint.tls == tls for n in topology.nodes)

    keys = [b"tls:%d" % i for i in range(3000)]
    with SlotRouter(topology, FAST) as router:
        result = router.execute([key_slot(k) for k in keys], [pack((b"SET", k, b"x")) for k in keys],
                                expect_ok=True)
        assert result.replies is None
    counts = []
    for node in cluster.nodes:  # read back over the plain ports
        with node.client() as client:
            counts.append(client.dbsize())
    assert sum(counts) == 3000 and min(counts) > 0

    untrusted = parse_endpoint(f"rediss://127.0.0.1:{tunnels[0].port}/0", TlsOptions(ca_file=str(pki / "other.crt")))
    with pytest.raises(TlsError):
        read_topology(untrusted, FAST)
