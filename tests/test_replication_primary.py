"""ReplicaServer with real replicas: a target told REPLICAOF <our address> loads an RDB we stream, applies the commands
we forward, acknowledges offsets, continues after a dropped link, and asks again for a full sync when our backlog no
longer covers it."""

from __future__ import annotations

import pytest

from fixtures.sandbox import LocalServer
from fixtures.tcpproxy import TcpProxy
from migrate.replication import PrimaryOptions, PrimaryState, ReplicaServer, file_chunks
from tests.matrix import params
from tests.replication_support import wait_for

DBS = (0, 2)


def populate(server: LocalServer) -> None:
    for db in DBS:
        client = server.client(db=db)
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"s:{i}", f"value {i}")
            pipe.rpush(f"l:{i % 10}", i)
            pipe.hset(f"h:{i % 7}", f"f{i}", i)
            pipe.zadd(f"z:{i % 5}", {f"m{i}": i / 3})
            pipe.sadd(f"set:{i % 3}", i)
        pipe.set("ttl", "x", ex=3600)
        pipe.execute()


def saved_rdb(server: LocalServer):
    server.client().execute_command("SAVE")
    return server.dir / "dump.rdb"


def forward(primary: ReplicaServer, source: LocalServer, commands) -> None:
    """Send each command to the replica through `primary` and apply it to `source`, the reference."""
    for argv, db in commands:
        primary.send(argv, db=db)
        source.client(db=db).execute_command(*argv)


def assert_same_data(source: LocalServer, target: LocalServer) -> None:
    for db in (0, 1, 2, 3):
        a, b = source.client(db=db), target.client(db=db)
        keys = sorted(a.keys())
        assert keys == sorted(b.keys()), f"db {db}"
        for key in keys:
            assert a.dump(key) == b.dump(key), key
            assert (a.pttl(key) > 0) == (b.pttl(key) > 0), key


def start_replication(target: LocalServer, address: tuple[str, int]) -> None:
    target.client().execute_command("REPLICAOF", *address)


COMMANDS = [((b"SET", b"after", b"1"), 0), ((b"RPUSH", b"l:1", b"new"), 2), ((b"DEL", b"s:1"), 0),
            ((b"HSET", b"h:1", b"extra", b"v"), 2), ((b"INCRBY", b"counter", b"5"), 3)]


@pytest.mark.parametrize("name", params(("valkey-8.0", "valkey-8.1", "valkey-9.1", "redis-7.0")))
def test_a_real_replica_loads_our_rdb_and_applies_our_stream(servers, name):
    source, target = servers.fresh(name), servers.fresh(name)
    populate(source)
    with ReplicaServer() as primary:
        start_replication(target, primary.address)
        hello = primary.wait_psync(30)
        names = [request[0].upper() for request in hello.requests]
        assert names[0] == b"PING" and names[-1] == b"PSYNC" and b"REPLCONF" in names
        assert hello.listening_port == target.port and "eof" in hello.capabilities
        assert hello.psync is not None and hello.psync[0] != primary.replid
        result = primary.full_sync(file_chunks(saved_rdb(source)), timeout=30)
        assert result.offset == 0 and result.rdb_bytes == (source.dir / "dump.rdb").stat().st_size
        primary.wait_online(60)
        forward(primary, source, COMMANDS)
        before = primary.request_ack()
        assert primary.wait_ack(before, 30) >= before  # the answer to GETACK does not count the GETACK
        info = target.client().info("replication")
        assert info["master_link_status"] == "up"
        wait_for(lambda: int(target.client().info("replication")["master_repl_offset"]) == primary.offset,
                 what="the replica's offset")
        target.client().execute_command("REPLICAOF", "NO", "ONE")
        assert_same_data(source, target)


def test_a_replica_that_reconnects_continues_from_our_backlog(servers):
    source, target = servers.fresh("valkey-8.1"), servers.fresh("valkey-8.1")
    populate(source)
    target.client().config_set("masterauth", "s3cret-pw")
    with ReplicaServer(PrimaryOptions(password="s3cret-pw", ping_period=1)) as primary:
        start_replication(target, primary.address)
        primary.full_sync(file_chunks(saved_rdb(source)), timeout=30)
        primary.wait_online(60)
        assert b"AUTH" in [r[0].upper() for r in primary.hello.requests]
        assert not any(b"s3cret-pw" in arg for r in primary.hello.requests for arg in r)
        forward(primary, source, COMMANDS[:2])
        target.client().execute_command("CLIENT", "KILL", "TYPE", "master")
        forward(primary, source, COMMANDS[2:])  # sent while the link is down: kept in the backlog
        wait_for(lambda: primary.status().partial_syncs == 1, what="a partial resync")
        primary.wait_ack(primary.request_ack(), 30)
        assert primary.status().full_syncs == 1
        target.client().execute_command("REPLICAOF", "NO", "ONE")
        assert_same_data(source, target)


def test_a_replica_beyond_our_backlog_waits_for_a_new_full_sync(servers):
    source, target = servers.fresh("valkey-9.1"), servers.fresh("valkey-9.1")
    populate(source)
    with ReplicaServer(PrimaryOptions(backlog_bytes=64 << 10)) as primary, \
            TcpProxy("127.0.0.1", primary.address[1]) as proxy:
        start_replication(target, ("127.0.0.1", proxy.port))
        primary.full_sync(file_chunks(saved_rdb(source)), timeout=30)
        primary.wait_online(60)
        proxy.refuse_new = True
        proxy.reset()
        wait_for(lambda: primary.status().state is PrimaryState.WAITING, what="the drop")
        lost_at = primary.offset
        forward(primary, source, [((b"SET", b"bulk:%d" % i, b"b" * 1000), 0) for i in range(2500)])
        proxy.refuse_new = False
        hello = primary.wait_psync(30)
        assert hello.psync is not None and hello.psync[0] == primary.replid
        assert hello.psync[1] <= lost_at + 1  # what it had processed when the link broke
        result = primary.full_sync(file_chunks(saved_rdb(source)), timeout=30)
        assert result.offset == primary.offset
        primary.wait_online(60)
        forward(primary, source, COMMANDS)
        primary.wait_ack(primary.request_ack(), 30)
        assert primary.status().full_syncs == 2
        target.client().execute_command("REPLICAOF", "NO", "ONE")
        assert_same_data(source, target)
