"""ReplicaLink.read_split against real primaries: runs of the commands a plan passes come as the primary's own bytes,
in order, with exact offsets, never inside a MULTI/EXEC, across feeds of any size and arguments of any length; the
others come one by one. And the offset accounting refuses a stream whose sizes do not add up."""

from __future__ import annotations

import time

import hiredis
import pytest

from migrate.errors import MigrationError
from migrate.replication import RawRun, ReplicaLink, StreamCommand
from migrate.replication.replica import _CommandParser
from migrate.wire import resp_total
from tests.matrix import params
from tests.replication_support import FAST, NOT_DATA, endpoint, master_offset, rdb_keys, write

HELD = {b"SELECT", b"MULTI", b"EXEC", b"PING", b"REPLCONF"}  # never in a run: the caller handles them


def plan(name: bytes) -> tuple[bool, int, None]:
    return name.upper() not in HELD, -1, None


def commands_of(data: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (reply := reader.gets()) is not False:
        out.append(reply)
    assert not reader.has_data()
    return out


class Consumer:
    """What a caller of read_split does: follows MULTI/EXEC (no run inside a transaction), checks every part."""

    def __init__(self, start: int) -> None:
        self.in_group = False
        self.offset = start
        self.commands: list[tuple[bytes, ...]] = []
        self.runs = 0

    def hot(self) -> bool:
        return not self.in_group

    def take(self, part: RawRun | StreamCommand) -> None:
        if type(part) is RawRun:
            assert not self.in_group
            start = part.offset - len(part.data)
            assert start >= self.offset  # only GETACKs (answered by the link) may lie between two parts
            run = commands_of(part.data)
            assert len(run) == part.commands > 0 and resp_total(run) == len(part.data)
            assert all(plan(c[0])[0] for c in run)
            assert part.parsed == run
            self.commands += [tuple(c) for c in run]
            self.runs += 1
        else:
            assert type(part) is StreamCommand
            name = part.argv[0].upper()
            self.in_group = name == b"MULTI" or (self.in_group and name != b"EXEC")
            self.commands.append(part.argv)
        assert part.offset > self.offset
        self.offset = part.offset


@pytest.mark.parametrize("name", params(("redis-6.0", "redis-7.0", "redis-8.0.6", "valkey-8.1", "valkey-9.1")))
def test_runs_are_the_primarys_bytes_with_exact_offsets(servers, name):
    server = servers.fresh(name, *FAST)
    client = server.client()
    with ReplicaLink(endpoint(server)) as link:
        with link.snapshot() as rdb:
            rdb_keys(rdb)
        consumer = Consumer(link.position.offset)
        written = write(server, 0, 300)  # over dbs 0 and 2: SELECTs between runs
        big = b"x" * 300_000  # longer than a hiredis feed, and than the size table
        client.set("big", big)
        with client.pipeline(transaction=True) as pipe:
            pipe.incr("a").incr("b").execute()
        client.execute_command("WAIT", 1, 50)  # a REPLCONF GETACK in the stream
        client.execute_command("SET", "wide", "1")
        client.execute_command("RPUSH", "many", *[b"%d" % i for i in range(12_000)])  # 10,000 arguments or more
        written += write(server, 300, 300)
        goal = master_offset(client)
        deadline = time.monotonic() + 30
        while consumer.offset < goal:
            assert time.monotonic() < deadline, f"stuck at {consumer.offset} of {goal}"
            for part in link.read_split(97, 0.5, plan, consumer.hot):  # an odd limit: runs cut anywhere
                consumer.take(part)
        assert consumer.offset == link.position.offset == goal
        assert consumer.runs > 1
    many = (b"RPUSH", b"many", *[b"%d" % i for i in range(12_000)])
    middle = [(b"SET", b"big", big), (b"INCRBY", b"a", b"1"), (b"INCRBY", b"b", b"1"), (b"SET", b"wide", b"1"), many]
    expected = [argv for _, argv in written[:300]] + middle + [argv for _, argv in written[300:]]
    assert [c for c in consumer.commands if c[0].upper() not in NOT_DATA] == expected
    names = [c[0].upper() for c in consumer.commands]
    at = names.index(b"MULTI")
    assert names[at:at + 4] == [b"MULTI", b"INCRBY", b"INCRBY", b"EXEC"]


def test_without_hot_every_command_comes_alone(servers):
    server = servers.fresh("valkey-9.1", *FAST)
    client = server.client()
    with ReplicaLink(endpoint(server)) as link:
        with link.snapshot() as rdb:
            rdb_keys(rdb)
        written = write(server, 0, 50)
        goal = master_offset(client)
        parts: list[RawRun | StreamCommand] = []
        while not parts or parts[-1].offset < goal:
            parts += link.read_split(1000, 0.5, plan, lambda: False)
    assert all(type(p) is StreamCommand for p in parts)
    data = [p for p in parts if isinstance(p, StreamCommand) and p.argv[0].upper() not in NOT_DATA]  # a primary's
    assert [(p.db, p.argv) for p in data] == written  # PING comes as `ping` from some releases


def test_bytes_that_are_not_a_primarys_resp_are_refused():
    """hiredis is stricter than the lengths a primary could write (a leading zero is refused): a clear error, never
    a guess at the offsets."""
    for way in ("split", "parse"):
        parser = _CommandParser(0, 0, lambda: None)
        parser.feed(b"*1\r\n$4\r\nPING\r\n*1\r\n$04\r\nPING\r\n")
        with pytest.raises(MigrationError, match="not valid RESP after offset 14"):
            list(parser.split(10, plan, lambda: True)) if way == "split" else parser.parse([], 10)


def test_relative_expiries_of_a_redis_6_stream_are_rewritten_inside_the_runs(servers):
    """Redis 6 sends `SET k v EX n` as it was written: each one becomes `SET k v PXAT <arrival + n s>` in place, in
    its run, counted as rewritten; the commands around it stay the source's bytes."""
    from migrate.run.sync.follow import translated
    from migrate.stream import TargetProfile, Translator

    source, target = servers.fresh("redis-6.0", *FAST), servers.fresh("valkey-9.1")
    client = source.client()
    translator = Translator(TargetProfile.of(target.client()))
    with ReplicaLink(endpoint(source)) as link:
        with link.snapshot() as rdb:
            rdb_keys(rdb)
        before = int(time.time() * 1000)
        with client.pipeline(transaction=False) as pipe:
            for i in range(300):
                pipe.set(f"plain:{i}", i)
                pipe.set(f"ttl:{i}", i, ex=100)
                pipe.rpush("list", i)
            pipe.execute()
        goal = master_offset(client)
        parts: list = []
        deadline = time.monotonic() + 30
        while link.position.offset < goal:
            assert time.monotonic() < deadline
            parts += translated(link, translator, 1000, 0.5)
        after = int(time.time() * 1000)
    runs = [p for p in parts if isinstance(p, RawRun)]
    sent = [c for run in runs for c in commands_of(run.data)]
    ttl = [c for c in sent if c[1].startswith(b"ttl:")]
    assert len(ttl) == 300 and len(runs) < 10  # the rewrites did not cut the runs
    assert all(c[3] == b"PXAT" and before + 100_000 <= int(c[4]) <= after + 100_000 for c in ttl)
    assert [c for c in sent if not c[1].startswith(b"ttl:")] == [
        c for i in range(300) for c in ([b"SET", b"plain:%d" % i, b"%d" % i], [b"RPUSH", b"list", b"%d" % i])]
    assert sum(run.commands for run in runs) == len(sent) == 900
    assert translator.tally.rewritten["set"] == 300
    assert translator.tally.passed["set"] == 300 and translator.tally.passed["rpush"] == 300
