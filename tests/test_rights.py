"""Minimum rights: every strategy runs as a user holding exactly the rights README.md lists, and a user missing some
learns all of them in one error (real servers, real ACL users)."""

from __future__ import annotations

import pytest

from fixtures.dataset import populate
from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
from migrate.errors import ExitCode, PermissionDeniedError
from migrate.identity import identify
from migrate.rights import Context, needed
from migrate.run import OnIncompatible, RunConfig, RunOptions, Strategy, run
from migrate.verify import VerifyConfig, verify
from tests.run_compare import differences

PAIRS = [("redis-7.0", "valkey-8.1"), ("redis-8.0.2", "valkey-9.1"), ("redis-6.0", "valkey-8.0")]


def grant(server, user: str, commands) -> str:
    """An ACL user holding exactly these commands (every key, every channel), and its URL."""
    channels = [] if server.binary.version.startswith("6.0") else ["&*"]  # channel rules came with Redis 6.2
    rules = ["on", ">pw", "~*", *channels, "-@all", *(f"+{c}" for c in commands)]
    server.client().execute_command("ACL", "SETUSER", user, "reset", *rules)
    return server.url_for(0, user, "pw")


def context(source, target, **options) -> Context:
    return Context(identify(source.client()).capabilities, identify(target.client()).capabilities, **options)


def minimal(verb: str, source, target, **options) -> tuple[list[str], list[str]]:
    ctx = context(source, target, **options)
    # The README's minimum: the required rights, plus HELLO/AUTH/CLIENT that every connection needs (AUTH is implied).
    base = ["client|setname", "ping", "select"]
    return ([r.command for r in needed(verb, "source", ctx) if r.required] + base,
            [r.command for r in needed(verb, "target", ctx) if r.required] + base)


def config(source_url, target_url, tmp_path, **options) -> RunConfig:
    common = CommonConfig(parse_endpoint(source_url), parse_endpoint(target_url), ConnectionSettings(retries=2))
    return RunConfig(common, RunOptions(checkpoint=tmp_path / "cp.json", **options))


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_replay_runs_with_exactly_the_minimum_rights(servers, tmp_path, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    populate(source.client(), dbs=(0,), extra=True)
    source_rights, target_rights = minimal("replay", source, target)
    result = run(config(grant(source, "mig", source_rights), grant(target, "mig", target_rights), tmp_path,
                        on_incompatible=OnIncompatible.LOSSY, big_key_threshold=2000))
    assert result.copied > 0
    lossy = set() if identify(target.client()).hash_field_ttl else {
        k for k in source.client().scan_iter() if source.client().type(k) == b"hash"}
    assert differences(source.client(), target.client(), without_field_ttls=lossy, pending_tolerance_ms=2000) == []


def test_verify_runs_with_exactly_the_minimum_rights(servers, tmp_path):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-9.1")
    populate(source.client(), dbs=(0,))
    run(config(source.url, target.url, tmp_path, on_incompatible=OnIncompatible.LOSSY))
    source_rights, target_rights = minimal("verify", source, target)
    common = CommonConfig(parse_endpoint(grant(source, "ver", source_rights)),
                          parse_endpoint(grant(target, "ver", target_rights)))
    assert verify(VerifyConfig(common)).ok


def test_reload_runs_with_exactly_the_minimum_rights(servers, tmp_path):
    source, target = servers.get("redis-7.0", "--repl-diskless-sync-delay", "0"), servers.get("valkey-8.1")
    populate(source.client(), dbs=(0,))
    source_rights, target_rights = minimal("reload", source, target)
    result = run(config(grant(source, "rel", source_rights), grant(target, "rel", target_rights), tmp_path,
                        strategy=Strategy.RELOAD, yes=True, spool_dir=tmp_path))
    assert result.copied > 0
    assert differences(source.client(), target.client(), pending_tolerance_ms=2000) == []


def test_every_missing_right_is_named_at_once(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    source_rights, target_rights = minimal("replay", source, target)
    source_url = grant(source, "few", [c for c in source_rights if c not in ("dump", "scan")])
    target_url = grant(target, "few", [c for c in target_rights if c not in ("restore", "hset", "rename")])
    with pytest.raises(PermissionDeniedError) as err:
        run(config(source_url, target_url, tmp_path))
    message = err.value.message
    for name in ("DUMP", "SCAN", "RESTORE", "HSET", "RENAME"):
        assert name in message, message
    assert err.value.exit_code == ExitCode.MIGRATION and "+restore" in err.value.hint
    assert target.client().dbsize() == 0


def test_preflight_names_every_missing_right_and_an_unreadable_keyspace(servers):
    from migrate.preflight import PreflightConfig, preflight

    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    blind = grant(source, "blind", ["scan", "dump", "client|setname", "ping"])  # no INFO, no SELECT/DBSIZE
    weak = grant(target, "weak", ["info", "client|setname", "ping", "select", "dbsize", "multi", "discard"])
    result = preflight(PreflightConfig(CommonConfig(parse_endpoint(blind), parse_endpoint(weak))))
    codes = {f.code for f in result.blockers}
    assert "KEYSPACE_UNREADABLE" in codes and "RIGHTS_MISSING" in codes, codes
    replay_target = next(f for f in result.findings if f.code == "RIGHTS_MISSING"
                         and f.evidence["strategy"] == "replay" and f.evidence["role"] == "target")
    assert {"restore", "hset", "exec", "rename"} <= set(replay_target.evidence["denied"])
    assert not result.ok and result.strategy.name != "replay"


def test_preflight_says_reload_needs_sync_when_it_is_renamed(servers):
    from migrate.preflight import PreflightConfig, preflight

    source = servers.get("redis-7.0", "--rename-command", "SYNC", "", "--rename-command", "PSYNC", "")
    target = servers.get("valkey-8.1")
    source.client().set("k", "v")
    result = preflight(PreflightConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url))))
    reload = next(o for o in result.strategy.options if o.name == "reload")
    assert not reload.possible and any("SYNC" in why for why in reload.why_not), reload


def test_sync_runs_with_exactly_the_minimum_rights(servers, tmp_path):
    from tests.sync_support import FAST, compare, sync_config, under_steady_traffic

    source, target = servers.get("redis-7.0", *FAST), servers.get("valkey-8.1")
    populate(source.client(), dbs=(3,))
    source_rights, target_rights = minimal("sync", source, target)
    assert {"psync", "replconf", "client|pause", "client|unpause"} <= set(source_rights)
    assert {"@write", "multi", "exec", "set", "get", "flushall"} <= set(target_rights)
    config = sync_config(grant(source, "syn", source_rights), grant(target, "syn", target_rights), tmp_path)
    result = under_steady_traffic(config, source, tmp_path)
    assert result.sync is not None and result.sync.cutover is not None and result.sync.cutover.paused
    assert compare(source, target, dbs=(0, 3)) == {}


def test_a_sync_user_without_write_rights_learns_it_before_anything_is_written(servers, tmp_path):
    from tests.sync_support import FAST, sync_config

    source, target = servers.get("redis-7.0", *FAST), servers.get("valkey-8.1")
    source.client().set("k", "v")
    source_rights, target_rights = minimal("sync", source, target)
    target_url = grant(target, "weak", [c for c in target_rights if c not in ("@write",)] + ["restore", "get"])
    with pytest.raises(PermissionDeniedError) as err:
        run(sync_config(grant(source, "syn", source_rights), target_url, tmp_path))
    assert "@WRITE" in err.value.message and "+@write" in err.value.hint
    assert target.client().dbsize() == 0


def test_relay_runs_with_exactly_the_minimum_rights(servers, tmp_path):
    from tests.sync_support import FAST, compare, sync_config, under_steady_traffic

    source, target = servers.fresh("redis-8.0.6", *FAST), servers.fresh("valkey-9.1")
    populate(source.client(), dbs=(3,))
    source_rights, target_rights = minimal("relay", source, target)
    assert {"psync", "replconf", "client|pause", "client|unpause"} <= set(source_rights)
    assert {"replicaof", "config|get", "config|set", "info"} <= set(target_rights)
    assert "@write" not in target_rights  # the target writes what it replicates, not the user's commands
    config = sync_config(grant(source, "rel", source_rights), grant(target, "rel", target_rights), tmp_path,
                         strategy=Strategy.RELAY, on_incompatible=OnIncompatible.LOSSY)
    result = under_steady_traffic(config, source, tmp_path)
    assert result.sync is not None and result.sync.relay is not None and result.sync.relay.promoted
    assert compare(source, target, dbs=(0, 3)) == {}


def test_cluster_replay_and_verify_run_with_exactly_the_minimum_rights(clusters, tmp_path):
    """Cluster on both sides: the rights RIGHTS lists for clusters (topology reads, ASKING) and nothing more, granted
    on every node (ACL users are per node in a cluster)."""
    from tests.cluster_run_support import cluster_client, diff, fill, run_config

    source, target = clusters.get("redis-7.0", 3), clusters.get("valkey-8.1", 2)
    fill(cluster_client(source), 200)
    ctx = Context(identify(source.nodes[0].client()).capabilities, identify(target.nodes[0].client()).capabilities,
                  source_cluster=True, target_cluster=True)
    base = ["client|setname", "ping", "select"]
    granted = {}
    try:
        for verb in ("replay", "verify"):
            for side, role in ((source, "source"), (target, "target")):
                rights = [r.command for r in needed(verb, role, ctx) if r.required] + base
                urls = [grant(node.server, verb, rights) for node in side.nodes]  # the user exists on every node
                granted[(verb, role)] = urls[0]
        result = run(run_config(granted[("replay", "source")], granted[("replay", "target")], tmp_path))
        assert result.copied == 202
        assert diff(cluster_client(source), cluster_client(target)) == []
        common = run_config(granted[("verify", "source")], granted[("verify", "target")], tmp_path).common
        assert verify(VerifyConfig(common)).ok
    finally:
        for node in (*source.nodes, *target.nodes):
            node.call("ACL", "DELUSER", "replay", "verify")


@pytest.mark.parametrize("name", ["redis-6.0", "redis-7.0", "redis-8.0.6", "valkey-8.1", "valkey-9.1"])
def test_the_probe_finds_psync_denied_by_acl_without_starting_a_replica(servers, name):
    """Redis 7.0+ and Valkey refuse PSYNC and SYNC inside MULTI before checking the ACL, so the probe checks them
    outside the transaction too (behind a PING, so that nothing starts); a user denied them must be told apart from one
    granted them, and the source must not have served a single sync to the probe."""
    from migrate.rights import SYNC_SOURCE, Right, probe
    from migrate.wire import Channel

    source = servers.get(name)
    client = source.client()
    stats_before = client.info("stats")
    rights = (*SYNC_SOURCE, Right("sync", (), "take the snapshot over the replication protocol"))
    ctx = context(source, source)
    found = {}
    try:
        for user, denied in (("full", ()), ("nopsync", ("-psync", "-sync")), ("nomulti", ("-multi",)),
                             ("neither", ("-multi", "-psync", "-sync"))):
            url = grant(source, user, ["@all"])
            client.execute_command("ACL", "SETUSER", user, *denied)
            channel = Channel(parse_endpoint(url), ConnectionSettings(), "source")
            try:
                found[user] = probe(channel, "source", tuple(r for r in rights if r.needed(ctx)), b"k")
            finally:
                channel.close()
    finally:
        client.execute_command("ACL", "DELUSER", "full", "nopsync", "nomulti", "neither")
    assert found["full"].denied == () and found["full"].unknown == (), found["full"].describe()
    assert {r.command for r in found["nopsync"].denied} == {"psync", "sync"}, found["nopsync"].describe()
    # without MULTI the probe reads what it can; PSYNC and SYNC are still checked, in the way that starts nothing
    # (MULTI is among the rights only where the cutover pauses writes in one: 6.2+)
    assert {r.command for r in found["nomulti"].denied} - {"multi"} == set(), found["nomulti"].describe()
    assert {r.command for r in found["neither"].denied} - {"multi"} == {"psync", "sync"}, found["neither"].describe()
    assert not {"psync", "sync"} & {r.command for r in found["neither"].unchecked}
    stats = client.info("stats")
    assert stats["sync_full"] == stats_before["sync_full"]  # no snapshot was served to the probe
    assert client.info("replication")["connected_slaves"] == 0


def test_replicaof_runs_with_exactly_the_minimum_rights_and_a_user_without_psync_is_refused_first(servers, tmp_path):
    """The target replicates as the source URL's user (masteruser and masterauth are set from it), so PSYNC and
    REPLCONF are that user's rights: without PSYNC the run is refused before the target is touched (it used to make
    the target a replica whose link never came up, then fail after its grace period)."""
    from tests.test_run_replicaof import no_sync_delay

    source, target = servers.fresh("redis-7.0"), servers.fresh("valkey-8.1")
    populate(source.client(), dbs=(0,))
    target.client().set("theirs", "kept when refused")
    source_rights, target_rights = minimal("replicaof", source, target)
    assert {"psync", "replconf"} <= set(source_rights)
    without = [c for c in source_rights if c != "psync"]
    with pytest.raises(PermissionDeniedError) as refused:
        run(config(grant(source, "nopsync", without), grant(target, "rep", target_rights), tmp_path,
                   strategy=Strategy.REPLICAOF, yes=True))
    assert "PSYNC" in refused.value.message and refused.value.exit_code == ExitCode.MIGRATION
    assert target.client().get("theirs") == b"kept when refused"
    assert target.client().info("replication")["role"] == "master"
    with no_sync_delay(source):
        result = run(config(grant(source, "rep", source_rights), grant(target, "rep", target_rights), tmp_path,
                            strategy=Strategy.REPLICAOF, yes=True, promote=True))
    assert result.replication is not None and result.replication.promoted
    assert differences(source.client(0), target.client(0)) == []


def test_a_renamed_command_is_not_answered_with_a_grant(servers, tmp_path):
    """A command renamed away (rename-command, as managed services do) is the server's configuration: the refusal says
    so instead of hinting at an ACL grant that would change nothing."""
    source = servers.get("redis-7.0", "--rename-command", "PSYNC", "", "--rename-command", "SYNC", "")
    target = servers.get("valkey-8.1")
    source.client().set("k", "v")
    with pytest.raises(PermissionDeniedError) as refused:
        run(config(source.url, target.url, tmp_path, strategy=Strategy.RELAY))
    assert "renamed or disabled: PSYNC" in refused.value.message
    assert "no grant changes" in (refused.value.hint or "") and "+psync" not in (refused.value.hint or "")
