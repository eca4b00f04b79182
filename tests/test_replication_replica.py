"""ReplicaLink against real primaries: full sync, offsets equal to the primary's, ACK/WAIT, spooling, partial resync
after dropped connections, full resync after restarts and an outrun backlog, refusals and lost links."""

from __future__ import annotations

import itertools
import os
import time

import pytest

from fixtures.tcpproxy import TcpProxy
from migrate.errors import AuthError, MigrationError, PermissionDeniedError
from migrate.replication import LinkLostError, LinkOptions, ReplicaLink, SyncKind
from tests.matrix import params
from tests.replication_support import (
    ALL_PRIMARIES,
    FAST,
    data_commands,
    drain,
    endpoint,
    fill,
    master_offset,
    rdb_keys,
    wait_for,
    write,
)
from tests.test_tls import pki  # noqa: F401  (the fixture)

GETACK_BYTES = len(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n")


def replica_line(client) -> dict:
    return client.info("replication").get("slave0") or {}


@pytest.mark.parametrize("name", params(ALL_PRIMARIES))
def test_full_sync_stream_offsets_acks(servers, name):
    server = servers.fresh(name, *FAST)
    client = server.client()
    fill(server, 500)
    with ReplicaLink(endpoint(server)) as link:
        assert link.sync.kind is SyncKind.FULL and len(link.sync.replid or "") == 40
        with link.snapshot() as rdb:
            assert rdb_keys(rdb) == 500
        written = write(server, 0, 200)
        commands = drain(link, master_offset(client))
        assert data_commands(commands) == written
        assert link.position.offset == commands[-1].offset == master_offset(client)
        assert all(a.offset < b.offset for a, b in itertools.pairwise(commands))
        line = replica_line(client)
        assert line["state"] == "online" and line["port"] == 0  # listening-port 0 is accepted and shown as is
        # Nothing applied yet: the ACKs say 0, and WAIT does not count us; the primary asks with GETACK.
        client.set("probe", "1")  # WAIT waits for the offset of this client's last write
        before = master_offset(client)
        assert client.execute_command("WAIT", 1, 300) == 0
        assert master_offset(client) - before >= GETACK_BYTES  # WAIT asked with REPLCONF GETACK *
        tail = drain(link, master_offset(client))
        assert not any(c.argv[0].upper() == b"REPLCONF" for c in tail)  # GETACK answered, not yielded
        assert link.position.offset == master_offset(client)
        assert replica_line(client)["offset"] == 0
        link.ack(link.position.offset, flush=True)
        wait_for(lambda: replica_line(client)["offset"] == link.position.offset, what="ACK")
        assert client.execute_command("WAIT", 1, 5000) == 1


@pytest.mark.parametrize("name", params(("redis-6.0", "redis-8.0.6", "valkey-9.1")))
def test_getack_is_answered_with_the_applied_offset(servers, name):
    server = servers.fresh(name, *FAST)
    client = server.client()
    with ReplicaLink(endpoint(server), options=LinkOptions(ack_interval=3600)) as link:  # only GETACK makes ACKs
        with link.snapshot() as rdb:
            rdb.read()
        write(server, 0, 10)
        client.set("probe", "1")  # WAIT waits for the offset of this client's last write
        commands = drain(link, master_offset(client))
        applied = commands[-1].offset
        link.ack(applied)
        # WAIT sends REPLCONF GETACK * (counted in the offset); our answer carries the applied offset.
        assert client.execute_command("WAIT", 1, 5000) == 1
        assert master_offset(client) == applied + GETACK_BYTES
        assert replica_line(client)["offset"] == applied
        drain(link, master_offset(client))
        assert link.position.offset == applied + GETACK_BYTES


def test_disk_based_snapshot_without_capa_eof(servers):
    server = servers.fresh("valkey-8.1")  # default: diskless with a 5 s delay
    fill(server, 300)
    with ReplicaLink(endpoint(server), options=LinkOptions(diskless=False)) as link:
        with link.snapshot() as rdb:
            assert rdb_keys(rdb) == 300
        info = link.wait_snapshot(5)
        assert not info.diskless and info.size > 0  # $<length>: the source saved to its disk first


def test_spooled_snapshot_and_stream(servers, tmp_path):
    server = servers.fresh("redis-7.0", *FAST)
    client = server.client()
    fill(server, 2000)
    options = LinkOptions(snapshot_path=tmp_path / "snap.rdb", spool_dir=tmp_path / "spool", segment_bytes=4096)
    with ReplicaLink(endpoint(server), options=options) as link:
        info = link.wait_snapshot(30)
        assert info.path == tmp_path / "snap.rdb" and info.size == info.path.stat().st_size
        written = write(server, 0, 3000)
        wait_for(lambda: link.received == master_offset(client), what="spooling")
        status = link.status()
        assert status.spool_files > 5 and status.spooled_bytes == status.lag_bytes == link.received
        with link.snapshot() as rdb:  # read only now: the stream was spooled meanwhile
            assert rdb_keys(rdb) == 2000
        commands = drain(link, master_offset(client))
        assert data_commands(commands) == written
        assert len(list((tmp_path / "spool").iterdir())) <= 1  # read segments are deleted
        link.ack(link.position.offset)
        assert link.status().lag_bytes == 0
    assert not list((tmp_path / "spool").iterdir())


def test_spool_keeps_the_link_when_the_primary_would_drop_a_slow_replica(servers, tmp_path):
    limit = ("--client-output-buffer-limit", "replica 1mb 512kb 1")
    server = servers.fresh("valkey-8.1", *FAST, *limit)
    client = server.client()
    slow = LinkOptions(memory_bytes=64 << 10)
    with ReplicaLink(endpoint(server), options=slow) as link:
        stream_started(link, client)
        write_bulk(client, 32 << 20)  # the caller reads nothing: past the kernel's buffers, the primary's overflows
        with pytest.raises(LinkLostError) as lost:
            drain(link, master_offset(client))
        assert lost.value.snapshot_complete is True
    spooled = LinkOptions(spool_dir=tmp_path / "spool", snapshot_path=tmp_path / "s.rdb")
    with ReplicaLink(endpoint(server), options=spooled) as link:
        stream_started(link, client)
        write_bulk(client, 32 << 20)
        wait_for(lambda: link.received == master_offset(client), what="spooling")
        assert link.error is None and link.status().spooled_bytes > 32 << 20
        drain(link, master_offset(client))


def stream_started(link: ReplicaLink, client) -> None:
    link.snapshot().read()
    client.set("started", "1")
    drain(link, master_offset(client))


def write_bulk(client, total: int) -> None:
    """1000-byte values in pipelines of 100 (the primary writes each round to its replicas before the next)."""
    for start in range(0, total // 1000, 100):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 100):
            pipe.set(f"bulk:{i}", b"b" * 1000)
        pipe.execute()


def test_snapshot_file_survives_a_loader_slower_than_repl_timeout(servers, tmp_path):
    server = servers.fresh("valkey-8.1", *FAST, "--repl-timeout", "2")
    client = server.client()
    for i in range(1000):  # 50 MB that LZF cannot shrink: more than every kernel buffer between the two ends
        client.set(f"big:{i}", os.urandom(50_000))
    with ReplicaLink(endpoint(server), options=LinkOptions(memory_bytes=64 << 10)) as link:
        rdb = link.snapshot()
        rdb.read(1000)
        time.sleep(5)  # a loader that stalls: the primary's transfer to us stops for longer than repl-timeout
        with pytest.raises(LinkLostError) as lost:
            while rdb.read(1 << 20):
                pass
        assert lost.value.snapshot_complete is False
    with ReplicaLink(endpoint(server), options=LinkOptions(snapshot_path=tmp_path / "snap.rdb")) as link:
        time.sleep(5)  # the same stall: the file is written at socket speed meanwhile
        assert link.wait_snapshot(60).size == (tmp_path / "snap.rdb").stat().st_size
        assert rdb_keys(link.snapshot()) == 1000
        assert link.error is None


def test_acks_keep_an_idle_link_alive(servers):
    server = servers.fresh("redis-7.0", *FAST, "--repl-timeout", "2")
    client = server.client()
    with ReplicaLink(endpoint(server)) as link:
        link.snapshot().read()
        time.sleep(5)  # more than twice repl-timeout without reading: ACKs are the liveness the primary checks
        assert link.error is None and replica_line(client)["state"] == "online"
        written = write(server, 0, 20)
        assert data_commands(drain(link, master_offset(client))) == written
        assert int(client.info("stats")["sync_full"]) == 1


@pytest.mark.parametrize("name", params(("redis-6.0", "redis-7.0", "redis-8.0.6", "valkey-8.0", "valkey-9.1")))
def test_partial_resync_after_close(servers, name):
    server = servers.fresh(name, *FAST)
    client = server.client()
    link = ReplicaLink(endpoint(server))
    link.snapshot().read()
    written = write(server, 0, 100)
    wait_for(lambda: link.received == master_offset(client), what="stream")
    got = []
    while len(data_commands(got)) < 61:
        got += link.read_commands(7, timeout=2)  # stop mid-way: part of the stream is received and not consumed
    position = link.position
    link.close()
    written += write(server, 100, 100)
    with ReplicaLink(endpoint(server), replid=position.replid, offset=position.offset, db=position.db) as again:
        assert again.sync.kind is SyncKind.PARTIAL and again.sync.offset == position.offset
        got += drain(again, master_offset(client))
    assert data_commands(got) == written  # nothing lost, nothing twice
    assert int(client.info("stats")["sync_partial_ok"]) == 1


def test_partial_resync_after_a_reset_connection(servers):
    server = servers.fresh("valkey-8.1", *FAST)
    client = server.client()
    with TcpProxy("127.0.0.1", server.port) as proxy:
        via = endpoint(server, port=proxy.port)
        link = ReplicaLink(via)
        link.snapshot().read()
        written = write(server, 0, 150)
        wait_for(lambda: link.received == master_offset(client), what="stream")
        got = link.read_commands(40, timeout=2)
        assert proxy.reset() == 1
        with pytest.raises(LinkLostError) as lost:
            while True:
                got += link.read_commands(1000, timeout=5)
        assert lost.value.snapshot_complete is True and lost.value.offset == link.received
        assert "after the complete snapshot" in lost.value.message
        position = link.position
        assert position.offset == link.received  # every received command was handed out before the error
        link.close()
        written += write(server, 150, 50)
        with ReplicaLink(via, replid=position.replid, offset=position.offset, db=position.db) as again:
            assert again.sync.partial
            got += drain(again, master_offset(client))
    assert data_commands(got) == written


def test_restarted_primary_means_full_resync(servers):
    server = servers.fresh("redis-8.0.6", *FAST)
    link = ReplicaLink(endpoint(server))
    link.snapshot().read()
    write(server, 0, 10)
    drain(link, master_offset(server.client()))
    position = link.position
    link.close()
    server.restart()  # no persistence: a new replication id and an empty dataset
    with ReplicaLink(endpoint(server), replid=position.replid, offset=position.offset, db=position.db) as again:
        assert again.sync.kind is SyncKind.FULL and again.sync.replid != position.replid
        assert "history changed" in again.sync.reason
        assert rdb_keys(again.snapshot()) == 0


def test_outrun_backlog_means_full_resync(servers):
    server = servers.fresh("valkey-9.1", *FAST, "--repl-backlog-size", "16kb")
    client = server.client()
    link = ReplicaLink(endpoint(server))
    link.snapshot().read()
    drain(link, master_offset(client))
    position = link.position
    link.close()
    write_bulk(client, 200_000)
    with ReplicaLink(endpoint(server), replid=position.replid, offset=position.offset, db=position.db) as again:
        assert again.sync.kind is SyncKind.FULL and again.sync.replid == position.replid
        assert "no longer covers" in again.sync.reason
        assert rdb_keys(again.snapshot()) == 200


def test_plain_sync_when_psync_is_renamed(servers):
    server = servers.fresh("redis-7.0", *FAST, "--rename-command", "PSYNC", "")
    fill(server, 50)
    with pytest.raises(MigrationError) as refused:
        ReplicaLink(endpoint(server))
    assert "PSYNC" in refused.value.message and "use_sync=True" in refused.value.hint
    with ReplicaLink(endpoint(server), options=LinkOptions(use_sync=True)) as link:
        assert link.sync.kind is SyncKind.SYNC
        assert rdb_keys(link.snapshot()) == 50
        written = write(server, 0, 30)
        got = []
        wait_for(lambda: (got.extend(link.read_commands(100, timeout=0.2)) or True)
                 and len(data_commands(got)) >= 30, what="stream over SYNC")
        assert data_commands(got) == written


def test_refused_by_acl_names_the_missing_commands_and_hides_the_password(servers):
    server = servers.fresh("valkey-8.1", *FAST)
    client = server.client()
    client.execute_command("ACL", "SETUSER", "nopsync", "on", ">s3cret-pw", "~*", "+@all", "-psync", "-sync")
    client.execute_command("ACL", "SETUSER", "noreplconf", "on", ">s3cret-pw", "~*", "+@all", "-replconf")
    for user, command in (("nopsync", "PSYNC"), ("noreplconf", "REPLCONF")):
        with pytest.raises(PermissionDeniedError) as refused:
            ReplicaLink(endpoint(server, username=user, password="s3cret-pw"))
        text = refused.value.one_line()
        assert command in text and "+psync" in text and "s3cret-pw" not in text
    with pytest.raises(AuthError) as wrong:
        ReplicaLink(endpoint(server, username="nopsync", password="wrong-s3cret"))
    assert "wrong-s3cret" not in wrong.value.one_line()


def test_replica_without_its_primary_refuses(servers):
    from fixtures.sandbox import free_port

    server = servers.fresh("redis-7.0", *FAST, "--replicaof", "127.0.0.1", str(free_port()))
    with pytest.raises(MigrationError) as refused:
        ReplicaLink(endpoint(server))
    assert "NOMASTERLINK" in refused.value.message and "primary" in refused.value.hint


def test_reset_during_the_snapshot_says_it_is_incomplete(servers):
    server = servers.fresh("valkey-8.1", *FAST)
    client = server.client()
    for i in range(1000):  # 50 MB that LZF cannot shrink: more than every kernel buffer between the two ends
        client.set(f"big:{i}", os.urandom(50_000))
    with TcpProxy("127.0.0.1", server.port) as proxy:
        link = ReplicaLink(endpoint(server, port=proxy.port), options=LinkOptions(memory_bytes=64 << 10))
        rdb = link.snapshot()
        assert len(rdb.read(1000)) == 1000
        proxy.reset()
        with pytest.raises(LinkLostError) as lost:
            while rdb.read(1 << 16):
                pass
        assert lost.value.snapshot_complete is False and "snapshot incomplete" in lost.value.message
        link.close()


def test_primary_that_disappears(servers):
    server = servers.fresh("redis-6.0", *FAST)
    with ReplicaLink(endpoint(server)) as link:
        link.snapshot().read()
        server.kill()
        with pytest.raises(LinkLostError) as lost:
            link.read_commands(10, timeout=10)
            link.read_commands(10, timeout=10)
        assert lost.value.snapshot_complete is True
        assert link.status().phase == "failed"


def test_over_tls(servers, pki):  # noqa: F811
    from migrate.config import TlsOptions, parse_endpoint
    from tests.test_tls import Stunnel

    server = servers.fresh("valkey-8.1", *FAST)
    client = server.client()
    fill(server, 100)
    tunnel = Stunnel(pki, server.port, mutual=False)
    try:
        source = parse_endpoint(f"rediss://127.0.0.1:{tunnel.port}", TlsOptions(ca_file=str(pki / "ca.crt")))
        with ReplicaLink(source) as link:
            assert rdb_keys(link.snapshot()) == 100
            written = write(server, 0, 500)
            commands = drain(link, master_offset(client))
            assert data_commands(commands) == written
            link.ack(link.position.offset, flush=True)
            client.set("probe", "1")
            drain(link, master_offset(client))
            link.ack(link.position.offset)
            assert client.execute_command("WAIT", 1, 5000) == 1  # ACKs sent by the reader thread over TLS
    finally:
        tunnel.stop()


def test_over_a_unix_socket(servers, tmp_path):
    from migrate.config import parse_endpoint

    path = tmp_path / "primary.sock"
    server = servers.fresh("redis-7.0", *FAST, "--unixsocket", str(path))
    with ReplicaLink(parse_endpoint(f"unix://{path}")) as link:
        link.snapshot().read()
        written = write(server, 0, 20)
        assert data_commands(drain(link, master_offset(server.client()))) == written
