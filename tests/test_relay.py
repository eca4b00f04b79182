"""`migrate run --strategy relay` against real servers: the target replicates from migrate, which transcodes the
source's snapshot and forwards its write stream. Live traffic of every kind (multi-db, MULTI/EXEC, Lua, expiries,
streams, field TTLs) from another process; end states compared with `migrate verify` (the library) and read back key
by key; kill -9 of migrate, restarts of the target and of the source; the cutover; the refusals."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.dataset import populate
from migrate.config import CommonConfig, parse_endpoint
from migrate.errors import ConfigError, ExitCode, IncompatibleDataError, TargetNotEmptyError
from migrate.identity import identify
from migrate.run import run
from migrate.run.options import CutoverMode, OnIncompatible, Strategy
from migrate.run.relay.offsets import OffsetMap
from migrate.selection import KeySelection
from migrate.verify import VerifyConfig, VerifyOptions, verify
from tests.sync_support import FAST, CliRun, SyncRun, compare, finish, named, sync_config, traffic

PAIRS = [("redis-8.0.6", "valkey-8.1"), ("redis-8.0.2", "valkey-9.1"), ("redis-7.0", "valkey-8.1")]


def relay_config(source_url: str, target_url: str, tmp_path: Path, **options: Any):
    return sync_config(source_url, target_url, tmp_path, strategy=Strategy.RELAY, **options)


def verified(source, target, skipped: set[tuple[int, bytes]] = frozenset(), field_ttls: bool = True) -> None:
    """`migrate verify` finds the target equal to the source, but for the keys the relay named skipped or changed."""
    common = CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url))
    result = verify(VerifyConfig(common, VerifyOptions(reverse_scan="always", rounds=2, interval=0.3,
                                                       check_nonkey=False)))
    listed = result.divergent.keys
    assert len(listed) == result.divergent.total  # every divergent key is listed: none hides behind a count
    allowed = set(skipped)
    if not field_ttls:  # a Valkey 8 target holds no field TTL: hashes that had some differ in those only
        allowed |= {(d.source_db, d.key) for d in listed if "ttl" in f"{d.reason} {d.detail}".lower()}
    assert not result.count_mismatches or allowed, result.count_mismatches
    assert {(d.source_db, d.key) for d in listed} <= allowed, [d for d in listed if (d.source_db, d.key)
                                                                not in allowed][:10]


def replication_role(server) -> str:
    return str(server.client().info("replication")["role"])


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_relay_under_traffic_of_every_kind_ends_equal(servers, tmp_path, source_name, target_name):
    source, target = servers.fresh(source_name, *FAST), servers.fresh(target_name)
    populate(source.client(), dbs=(3,), extra=True)
    during = traffic(source.url, "every-kind", "1")
    job = SyncRun(relay_config(source.url, target.url, tmp_path, on_incompatible=OnIncompatible.LOSSY))
    status = job.streaming()
    assert status["mode"] == "relay" and status["relay"]["target"] == "online", status
    assert replication_role(target) == "slave"
    finish(during)
    finish(traffic(source.url, "every-kind", "1"))
    job.caught_up(source)
    # WAIT on the source counts migrate once the TARGET holds the writes (the ACK is the target's offset)
    assert source.client().execute_command("WAIT", 1, 5000) == 1
    result = job.cutover()
    assert result.sync is not None and result.sync.relay is not None
    assert result.sync.relay.promoted and result.sync.relay.masterauth.startswith("restored")
    assert replication_role(target) == "master"
    assert target.client().config_get("masterauth")["masterauth"] == ""
    field_ttls = identify(target.client()).hash_field_ttl
    skipped = named(result, "skipped")
    assert {key for _, key in skipped} <= {b"vec:0", b"vec:1", b"vec:2"}  # vector sets: no Valkey holds them
    verified(source, target, skipped | named(result, "changed"), field_ttls)
    assert compare(source, target, field_ttls=field_ttls, skipped=skipped, dbs=(0, 1, 2, 3)) == {}
    assert result.sync.relay.snapshot["keys_read"] > 0
    assert result.sync.cutover is not None and result.sync.cutover.cut_offset <= result.sync.applied_offset


def test_offset_map_acknowledges_the_source_offset_of_what_the_target_holds():
    offsets = OffsetMap(relay=100, source=5000)
    offsets.record(150, 5040, 0)
    offsets.record(160, 5040, 0)  # only a PING of the relay: nothing new from the source
    offsets.record(230, 5100, 2)
    assert offsets.acknowledge(149).source == 5000  # not all of the first round is on the target
    assert offsets.acknowledge(150).source == 5040
    assert offsets.acknowledge(229) == (150, 5040, 0)
    assert offsets.acknowledge(400) == (230, 5100, 2) and len(offsets) == 0
    with pytest.raises(ValueError):
        offsets.record(200, 5200, 0)


def test_kill_9_leaves_a_replica_of_a_dead_address_and_resume_syncs_it_again(servers, tmp_path):
    source, target = servers.fresh("redis-7.0", *FAST), servers.fresh("valkey-8.1")
    populate(source.client(), dbs=(3,))
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    cli = CliRun("relay", source, target, tmp_path)
    first = cli.start()
    cli.streaming(first)
    first.kill()  # kill -9: nothing undone on the way out
    first.communicate()
    info = target.client().info("replication")
    assert info["role"] == "slave" and info["master_link_status"] == "down"  # a replica of a dead address
    again = cli.start()  # a rerun without --resume does not take a replica it cannot tell is its own
    _, err = again.communicate(timeout=60)
    assert again.returncode == ExitCode.MIGRATION and "--resume" in err, err[-2000:]
    second = cli.start("--resume")
    doc = cli.streaming(second)
    assert doc["resync"] == "full" and any("resume" in n for n in doc["notes"]), doc
    stop.touch()
    finish(writes)
    report = cli.cutover(second, source)
    assert report["sync"]["relay"]["promoted"] and report["resumed"]
    assert replication_role(target) == "master"
    verified(source, target)
    assert source.client().lrange("log", 0, -1) == target.client().lrange("log", 0, -1)


def test_a_resume_that_fails_makes_the_killed_relays_replica_a_primary_again(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.6", *FAST), servers.fresh("valkey-8.1")
    source.client().set("k", 1)
    cli = CliRun("relay", source, target, tmp_path)
    first = cli.start()
    cli.wait(first, lambda d: d.get("phase") == "streaming")
    source.client().set("k", 2)
    cli.wait(first, lambda d: target.client().get("k") == b"2")  # forwarded: the target holds the write
    first.kill()
    first.communicate()
    assert replication_role(target) == "slave"
    source.client().hset("h", "f", 1)
    source.client().hexpire("h", 100, "f")  # the resume's new snapshot holds what Valkey 8.1 cannot under fail
    second = cli.start("--resume")
    _, err = second.communicate(timeout=60)
    assert second.returncode == ExitCode.MIGRATION, err[-2000:]
    assert "made a primary again" in err and "partial" in err, err[-2000:]
    assert replication_role(target) == "master" and target.client().get("k") == b"2"
    assert target.client().config_get("masterauth")["masterauth"] == ""  # it had none: restored empty


def test_target_restarts_and_reconnections_lose_nothing(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.6", *FAST), servers.fresh("valkey-9.1")
    populate(source.client(), dbs=(3,))
    stop = tmp_path / "stop"
    writes = traffic(source.url, "steady", str(stop))
    job = SyncRun(relay_config(source.url, target.url, tmp_path))
    job.streaming()
    time.sleep(0.3)
    target.client().execute_command("CLIENT", "KILL", "TYPE", "master")  # its link drops: PSYNC from the backlog
    job.wait(lambda s: s["relay"]["target_partial_syncs"] >= 1 and s["relay"]["target"] == "online",
             what="the target continuing from the relay's backlog")
    time.sleep(0.3)
    target.restart()  # no persistence: back empty, a primary (REPLICAOF is not saved): attached again, full sync
    job.wait(lambda s: s["relay"]["target_full_syncs"] >= 2 and s["phase"] == "streaming", what="a new full sync")
    time.sleep(0.3)
    stop.touch()
    finish(writes)
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None and result.sync.relay is not None
    assert result.sync.relay.target_full_syncs >= 2 and result.sync.relay.target_partial_syncs >= 1
    assert any("came back as a primary" in note for note in result.notes), result.notes
    verified(source, target)
    assert source.client().lrange("log", 0, -1) == target.client().lrange("log", 0, -1)


def test_a_restarted_source_means_a_full_sync_of_the_target_and_keys_it_lost_go(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.2", *FAST), servers.fresh("valkey-8.1")
    client = source.client()
    for i in range(300):
        client.set(f"old:{i}", i)
    job = SyncRun(relay_config(source.url, target.url, tmp_path))
    job.streaming()
    client.set("old:extra", 1)
    job.caught_up(source)
    source.restart()  # no persistence: empty, with a new replication id
    client = source.client()
    for i in range(50):
        client.set(f"new:{i}", i)
    job.wait(lambda s: s["counters"]["full_resyncs"] >= 2 and s["phase"] == "streaming", what="the full resync")
    client.set("after", 1)
    job.caught_up(source)
    result = job.cutover()
    assert result.sync is not None and result.sync.relay is not None
    assert [e.kind for e in result.sync.resyncs] == ["full", "full"]
    assert "replication history changed" in result.sync.resyncs[1].reason
    assert result.sync.relay.target_full_syncs == 2
    verified(source, target)
    assert target.client().dbsize() == 51


def test_refusals_leave_the_target_untouched(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.6", *FAST), servers.fresh("valkey-8.1")
    source.client().hset("h", mapping={"a": 1, "b": 2})
    source.client().hexpire("h", 100, "a")  # a field TTL: Valkey 8.1 cannot hold it
    with pytest.raises(IncompatibleDataError) as err:  # --on-incompatible fail (the default): refused before REPLICAOF
        run(relay_config(source.url, target.url, tmp_path))
    assert "HASH" in err.value.message and "the target was not touched" in err.value.message
    assert replication_role(target) == "master" and target.client().dbsize() == 0
    assert target.client().config_get("masterauth")["masterauth"] == ""
    target.client().set("theirs", 1)
    with pytest.raises(TargetNotEmptyError):
        run(relay_config(source.url, target.url, tmp_path, on_incompatible=OnIncompatible.LOSSY))
    assert target.client().get("theirs") == b"1" and replication_role(target) == "master"
    for refused, words in ((KeySelection(match="user:*"), "--match"), (KeySelection(dbs=(1,)), "--db")):
        with pytest.raises(ConfigError) as err:
            run(relay_config(source.url, target.url, tmp_path, selection=refused))
        assert words in err.value.message
    with pytest.raises(ConfigError) as err:
        run(relay_config(source.url, target.url, tmp_path, replace=True))
    assert "--flush-target" in err.value.hint
    assert not (tmp_path / "sync.checkpoint.json").exists()


def test_a_stream_the_target_cannot_take_returns_it_to_primary_and_says_its_data_is_partial(servers, tmp_path):
    source, target = servers.fresh("redis-8.0.6", *FAST), servers.fresh("valkey-8.1")
    source.client().set("k", 1)
    job = SyncRun(relay_config(source.url, target.url, tmp_path, cutover=CutoverMode.MANUAL))
    job.streaming()
    source.client().hset("h", "f", 1)
    source.client().hexpire("h", 100, "f")  # HPEXPIREAT in the stream: no Valkey 8.1 form under fail
    with pytest.raises(IncompatibleDataError) as err:
        job.join()
    assert "made a primary again" in err.value.message and "partial" in err.value.message
    assert "--resume" in err.value.hint
    assert replication_role(target) == "master" and target.client().get("k") == b"1"
    assert target.client().config_get("masterauth")["masterauth"] == ""
    assert job.status()["state"] == "failed"


def test_the_relay_address_is_asked_for_a_remote_target():
    from types import SimpleNamespace

    from migrate.run.relay.api import relay_address

    def at(url: str):
        return SimpleNamespace(endpoint=parse_endpoint(url))

    assert relay_address(None, at("redis://127.0.0.1:6379")) == ("127.0.0.1", 0)
    assert relay_address(None, at("redis://localhost:6379")) == ("127.0.0.1", 0)
    assert relay_address(("10.0.0.7", 16379), at("redis://10.0.0.9:6379")) == ("10.0.0.7", 16379)
    with pytest.raises(ConfigError) as err:
        relay_address(None, at("redis://10.0.0.9:6379"))
    assert "--relay-address" in err.value.hint
