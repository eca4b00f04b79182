"""`migrate run` (live replay) over every source x target pair: the target ends equal to the source, read on both sides,
except the keys the policy reports by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.dataset import populate
from fixtures.sandbox import LocalServer
from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
from migrate.errors import IncompatibleDataError
from migrate.identity import identify
from migrate.render import display_key
from migrate.run import OnIncompatible, RunConfig, RunOptions, run
from tests.matrix import pairs
from tests.run_compare import differences, function_names


def config(source: LocalServer, target: LocalServer, tmp_path: Path, **options: object) -> RunConfig:
    common = CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url), ConnectionSettings(retries=5))
    return RunConfig(common, RunOptions(checkpoint=tmp_path / "checkpoint.json", **options))  # type: ignore[arg-type]


@pytest.mark.parametrize(("source_name", "target_name"), pairs())
def test_replay_makes_the_target_equal_to_the_source(servers, tmp_path, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    data = populate(source.client(), extra=True)
    result = run(config(source, target, tmp_path, on_incompatible=OnIncompatible.LOSSY))

    keeps_field_ttls = identify(target.client()).hash_field_ttl
    lossy = set() if keeps_field_ttls else set(data.field_ttl_keys)
    assert {(i.db, i.key) for i in result.changed} == {(0, display_key(k)) for k in lossy}
    assert all(i.reason == "lost: field TTLs" for i in result.changed)
    assert not result.skipped and not result.busy
    assert result.copied == data.total and result.expired == 0
    for db in data.keys:
        assert differences(source.client(db), target.client(db), without_field_ttls=lossy) == [], f"db {db}"
    assert function_names(target.client()) == function_names(source.client())
    paths = {path for d in result.dbs for path in d.by_route}
    foreign = identify(source.client()).rdb_version == 12  # Redis 7.4+: every Valkey refuses the version as is
    assert paths == ({"restamp"} if foreign else {"as-is"}) | ({"rewrite"} if data.field_ttl_keys else set())
    assert not (tmp_path / "checkpoint.json").exists()  # finished: nothing to resume


def test_policy_fail_stops_before_writing_the_incompatible_key(servers, tmp_path):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1")
    data = populate(source.client())
    with pytest.raises(IncompatibleDataError) as raised:
        run(config(source, target, tmp_path))
    assert "field TTLs" in raised.value.message
    named = [k for k in data.field_ttl_keys if display_key(k) in raised.value.message]
    assert named and not target.client().exists(named[0])
    assert (tmp_path / "checkpoint.json").exists()  # kept for a --resume with another policy


def test_policy_skip_lists_the_keys_and_copies_the_rest(servers, tmp_path):
    source, target = servers.get("redis-8.0.6"), servers.get("valkey-8.0")
    data = populate(source.client())
    result = run(config(source, target, tmp_path, on_incompatible=OnIncompatible.SKIP))
    skipped = set(data.field_ttl_keys)
    assert {i.key for i in result.skipped} == {display_key(k) for k in skipped}
    assert all("field TTLs" in i.reason for i in result.skipped)
    assert not any(target.client().exists(k) for k in skipped)
    assert differences(source.client(0), target.client(0), ignore=skipped) == []
    assert result.copied == data.total - len(skipped)
