"""Preflight against real servers: what breaks between each source and target, and which strategy fits."""

from __future__ import annotations

import dataclasses

import pytest

from fixtures.dataset import populate
from fixtures.sandbox import free_port
from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
from migrate.preflight import PreflightConfig, PreflightOptions, PreflightResult, preflight
from migrate.preflight.findings import Severity
from migrate.preflight.profile import AclUser
from migrate.preflight.registry import all_codes, run_checks

CORE = ("string", "list", "set", "zset", "hash", "stream")


def run(source_url: str | None, target_url: str | None, **options: object) -> PreflightResult:
    common = CommonConfig(parse_endpoint(source_url) if source_url else None,
                          parse_endpoint(target_url) if target_url else None,
                          ConnectionSettings(connect_timeout=2.0, socket_timeout=10.0, retries=1))
    return preflight(PreflightConfig(common, PreflightOptions(**options)))  # type: ignore[arg-type]


def codes(result: PreflightResult, severity: Severity | None = None) -> set[str]:
    return {f.code for f in result.findings if severity is None or f.severity == severity}


def assert_no_check_errors(result: PreflightResult) -> None:
    assert "CHECK_ERROR" not in codes(result), [f.message for f in result.findings if f.code == "CHECK_ERROR"]
    assert set(codes(result)) <= set(all_codes()) | {"CHECK_ERROR"}, "every code is declared by its check"


@pytest.fixture
def redis8(servers):
    server = servers.get("redis-8.0.2")
    data = populate(server.client())
    return server, data


def test_redis8_to_valkey81_field_ttls_block_and_everything_else_is_restamped(servers, redis8):
    source, data = redis8
    result = run(source.url, servers.get("valkey-8.1").url)
    assert_no_check_errors(result)
    hfe = result.finding("HFE_UNSUPPORTED")
    assert hfe is not None and hfe.severity == Severity.BLOCKER
    assert hfe.evidence["keys"] == len(data.field_ttl_keys) == hfe.evidence["info_keyspace_subexpiry"]
    assert set(hfe.evidence["examples"]) == {k.decode() for k in data.field_ttl_keys}
    restamp = result.finding("RESTAMP_NEEDED")
    assert restamp is not None and set(restamp.evidence["keys_by_type"]) == set(CORE)
    census = result.profile.census
    assert census is not None and census.complete and census.examined == data.total
    conversion = census.conversion
    assert conversion.by_type["hash"]["rewrite"] == len(data.field_ttl_keys)
    assert sum(conversion.by_type["hash"].values()) == sum(
        1 for keys in data.keys.values() for kind in keys.values() if kind == "hash")
    assert conversion.losses["field TTLs"].count == len(data.field_ttl_keys)
    assert "as-is" not in {a for per in conversion.by_type.values() for a in per}
    assert result.finding("RDB_VERSION_REFUSED") is not None
    replication = result.strategy.options[0]
    assert replication.name == "replication" and not replication.possible
    assert "RDB 12" in replication.why_not[0]
    assert result.strategy.name == "replay"
    groups = result.finding("STREAM_CONSUMER_GROUPS")
    assert groups is not None and groups.evidence["groups"] == 2 and groups.evidence["pending"] == 7
    assert not result.ok


def test_redis8_to_valkey91_keeps_field_ttls_and_relaxed_mode_loads_as_is(servers, redis8):
    source, data = redis8
    strict = run(source.url, servers.get("valkey-9.1").url)
    assert_no_check_errors(strict)
    assert "HFE_UNSUPPORTED" not in codes(strict)
    rewritten = strict.finding("HFE_REWRITTEN")
    assert rewritten is not None and rewritten.severity == Severity.INFO
    assert "RELAXED_MODE_AVAILABLE" in codes(strict)
    assert strict.profile.census is not None and "field TTLs" not in strict.profile.census.conversion.losses

    relaxed = run(source.url, servers.get("valkey-9.1", "--rdb-version-check", "relaxed").url)
    assert_no_check_errors(relaxed)
    assert "RELAXED_MODE_ON" in codes(relaxed)
    by_type = relaxed.profile.census.conversion.by_type  # type: ignore[union-attr]
    assert all(by_type[t].get("as-is") for t in CORE), by_type
    assert by_type["hash"]["rewrite"] == len(data.field_ttl_keys)  # types 24/25: refused even when relaxed
    assert not relaxed.strategy.options[0].possible  # replication: the field-TTL hashes would abort the load
    assert relaxed.strategy.name == "replay"


def test_redisearch_module_keys_are_a_blocker_naming_the_module(servers):
    path = servers.binaries["redis-7.0"].modules["redisearch"]
    source = servers.get("redis-7.0", "--loadmodule", path)
    client = source.client()
    client.execute_command("FT.CREATE", "idx", "SCHEMA", "title", "TEXT")
    client.execute_command("FT.ADD", "idx", "doc1", "1.0", "FIELDS", "title", "hello")
    client.execute_command("FT.ADD", "idx", "doc2", "1.0", "FIELDS", "title", "world")
    result = run(source.url, servers.get("valkey-8.1").url)
    assert_no_check_errors(result)
    finding = result.finding("MODULE_KEYS_UNSUPPORTED")
    assert finding is not None and finding.severity == Severity.BLOCKER
    assert "RediSearch" in finding.message
    assert finding.evidence["keys_by_type"] == {"ft_index0": 1, "ft_invidx": 2}
    assert "ft:idx/hello" in finding.evidence["examples"]
    unsupported = result.finding("COMMANDS_UNSUPPORTED")
    assert unsupported is not None and {"ft.create", "ft.add"} <= set(unsupported.evidence["calls"])
    assert not result.strategy.options[0].possible


@pytest.mark.parametrize("source_name,target_name", [("redis-6.0", "valkey-8.0"), ("redis-7.0", "valkey-8.1")])
def test_older_redis_to_valkey8_is_compatible_and_replication_is_recommended(servers, source_name, target_name):
    source = servers.get(source_name)
    populate(source.client())
    result = run(source.url, servers.get(target_name).url)
    assert_no_check_errors(result)
    assert result.ok, [f.message for f in result.blockers]
    assert result.strategy.name == "replication"
    census = result.profile.census
    assert census is not None and set(census.conversion.by_type) == set(CORE)
    assert all(set(per) == {"as-is"} for per in census.conversion.by_type.values())


def test_target_state_problems(servers, redis8):
    source, _ = redis8
    source.client(5).set("in-db-5", "x")
    source.client().set("big", "x" * 3_000_000)
    target = servers.get("valkey-9.1", "--databases", "4", "--maxmemory", "2mb", "--maxmemory-policy",
                         "allkeys-lru", "--proto-max-bulk-len", "1mb")
    target.client().set("already-here", "1")
    result = run(source.url, target.url)
    assert_no_check_errors(result)
    assert {"DATABASES_TOO_FEW", "TARGET_MAXMEMORY_LOW", "PROTO_MAX_BULK_LEN"} <= codes(result, Severity.BLOCKER)
    assert result.finding("DATABASES_TOO_FEW").evidence["used"] == [0, 1, 2, 5]  # type: ignore[union-attr]
    assert "would evict keys" in result.finding("TARGET_MAXMEMORY_LOW").message  # type: ignore[union-attr]
    assert "big" in result.finding("PROTO_MAX_BULK_LEN").evidence["keys"]  # type: ignore[union-attr]
    assert result.finding("TARGET_NOT_EMPTY").evidence["keys_by_db"] == {0: 1}  # type: ignore[union-attr]
    assert "EVICTION_POLICY_DIFFERS" in codes(result)


def test_commands_the_target_lacks_come_from_real_traffic(servers):
    source = servers.get("redis-8.0.2")
    source.client().execute_command("CONFIG", "RESETSTAT")
    client = source.client()
    client.execute_command("HSETEX", "h", "EX", 100, "FIELDS", 1, "a", "1")
    client.execute_command("HGETDEL", "h", "FIELDS", 1, "a")
    client.hset("h2", "f", "v")
    client.execute_command("HEXPIRE", "h2", 100, "FIELDS", 1, "f")
    client.execute_command("CONFIG", "SET", "notify-keyspace-events", "KEA")
    try:
        old = run(source.url, servers.get("valkey-8.1").url)
        new = run(source.url, servers.get("valkey-9.1").url)
    finally:
        client.execute_command("CONFIG", "SET", "notify-keyspace-events", "")
    calls = old.finding("COMMANDS_UNSUPPORTED").evidence["calls"]  # type: ignore[union-attr]
    assert {"hsetex", "hgetdel", "hexpire"} <= set(calls) and "hset" not in calls
    assert "COMMANDS_UNSUPPORTED" not in codes(new)  # Valkey 9.1 has all three
    assert old.finding("KEYSPACE_NOTIFICATIONS") is not None


def test_acl_rules_naming_what_the_target_lacks(servers):
    source = servers.get("redis-8.0.2")
    client = source.client()
    client.execute_command("ACL", "SETUSER", "app", "on", ">secret-pw", "~*", "+@read", "+hgetdel", "+hsetex")
    try:
        result = run(source.url, servers.get("valkey-8.1").url)
    finally:
        client.execute_command("ACL", "DELUSER", "app")
    finding = result.finding("ACL_COMMAND_UNSUPPORTED")
    assert finding is not None and finding.evidence["users"] == {"app": ["hgetdel", "hsetex"]}
    assert "secret-pw" not in repr(result.profile)
    # No server in the matrix defines Redis 8's module categories (@json, @search: Redis built with its modules),
    # so the category rule runs on the real profile with that user's rule as such a server lists it.
    source_profile = result.profile.source
    assert source_profile is not None
    line = "user app on #5e88 ~* resetchannels -@all +@read -@json +@search"
    profile = dataclasses.replace(result.profile, source=dataclasses.replace(
        source_profile, acl_users=(AclUser("app", line, ("all", "read", "json", "search"), ()),)))
    category = next(f for f in run_checks(profile) if f.code == "ACL_CATEGORY_UNSUPPORTED")
    assert category.severity == Severity.BLOCKER and category.evidence["users"] == {"app": ["@json", "@search"]}


def test_unreachable_target_still_reports_the_source_marked_partial(servers, redis8):
    source, data = redis8
    result = run(source.url, f"redis://127.0.0.1:{free_port()}")
    assert_no_check_errors(result)
    assert result.partial and any("target unreachable" in r for r in result.profile.partial)
    assert result.finding("TARGET_UNREACHABLE").severity == Severity.BLOCKER  # type: ignore[union-attr]
    assert result.profile.census is not None and result.profile.census.examined == data.total
    assert result.profile.source is not None and result.profile.source.identity is not None
    assert result.strategy.name == "none"


def test_least_privileged_user_gets_findings_not_a_crash(servers, redis8):
    source, data = redis8
    admin = source.client()
    admin.execute_command("ACL", "SETUSER", "ro", "on", ">ro-pw", "~*", "+@read", "+@connection", "-info",
                          "-config", "-module", "-acl", "-memory")
    try:
        url = source.url_for(0, "ro", "ro-pw")
        result = run(url, servers.get("valkey-8.1").url)
    finally:
        admin.execute_command("ACL", "DELUSER", "ro")
    assert_no_check_errors(result)
    skipped = {f.evidence["command"]: f.evidence["reason"] for f in result.findings if f.code == "CHECK_SKIPPED"}
    for what in ("INFO server", "CONFIG GET", "MODULE LIST", "ACL LIST", "INFO commandstats"):
        assert skipped.get(what) == "permission denied", skipped
    assert skipped.get("MEMORY USAGE (census)") == "permission denied"
    ident = result.profile.source.identity  # type: ignore[union-attr]
    assert ident is not None and (ident.product, ident.version_text) == ("redis", "8.0.2")  # from HELLO
    assert result.profile.census is not None and result.profile.census.examined == data.total
    assert "HFE_UNSUPPORTED" in codes(result)  # still found: DUMP and TYPE are @read
    assert "ro-pw" not in repr(result.profile)


def test_sampled_census_scales_and_full_census_is_exact(servers):
    source = servers.get("redis-7.0")
    client = source.client()
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"s:{i}", "v") if i % 3 else pipe.rpush(f"l:{i}", "a")
    pipe.execute()
    target = servers.get("valkey-8.1").url
    sampled = run(source.url, target, sample=300, batch=100)
    full = run(source.url, target, full=True, batch=100)
    s_census, f_census = sampled.profile.census, full.profile.census
    assert s_census is not None and f_census is not None
    assert s_census.examined == 300 and not s_census.complete and "CENSUS_SAMPLED" in codes(sampled)
    assert f_census.examined == 3000 and f_census.complete and "CENSUS_SAMPLED" not in codes(full)
    assert f_census.type_totals() == {"string": 2000, "list": 1000}
    estimate = s_census.type_totals()
    assert sum(estimate.values()) == pytest.approx(3000, abs=2) and 1400 < estimate["string"] < 2600
    assert f_census.conversion.by_type == {"string": {"as-is": 2000}, "list": {"as-is": 1000}}


def test_rate_limit_bounds_keys_per_second(servers):
    source = servers.get("redis-7.0")
    pipe = source.client().pipeline(transaction=False)
    for i in range(600):
        pipe.set(f"k{i}", i)
    pipe.execute()
    result = run(source.url, None, full=True, rate_limit=1000, batch=100)
    census = result.profile.census
    assert census is not None and census.examined == 600
    assert census.duration_s >= 0.45  # 600 keys at <= 1000 keys/s: at least ~0.5 s, however fast the machine


def test_aof_directory_is_inspected(servers):
    server = servers.fresh("redis-7.0", "--appendonly", "yes", "--aof-use-rdb-preamble", "yes")
    client = server.client()
    client.set("a", "1")
    client.execute_command("BGREWRITEAOF")
    _wait(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0)
    client.hset("h", "f", "v")
    result = run(server.url, None, aof_dir=str(server.dir / "appendonlydir"), target_version="valkey:8.1")
    aof = result.profile.aof
    assert aof is not None and aof.error is None and aof.manifest == "appendonly.aof.manifest"
    assert aof.base_rdb_version == 10 and aof.commands.get("hset") == 1
    assert "AOF_FILES" in codes(result)


def _wait(condition, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_finding_code_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "preflight.md").read_text()
    for code in [*all_codes(), "CHECK_ERROR"]:
        assert f"| `{code}` |" in doc, f"{code} is not in docs/preflight.md"


def test_renamed_command_on_the_target_rules_out_replication(servers):
    source = servers.get("redis-7.0")
    source.client().set("k", "v")
    target = servers.get("valkey-8.1", "--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", "")
    result = run(source.url, target.url)
    renamed = [f for f in result.findings if f.code == "COMMANDS_RENAMED"]
    assert len(renamed) == 1 and renamed[0].evidence["role"] == "target"
    assert {"replicaof", "slaveof"} <= set(renamed[0].evidence["missing"])
    replication = result.strategy.options[0]
    assert not replication.possible and "REPLICAOF" in replication.why_not[0]
    assert result.strategy.name == "replay"
