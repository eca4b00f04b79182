"""Never destroy what the user did not give up, never report work that was not done (run), on real servers."""

from __future__ import annotations

import os

import pytest

from migrate.errors import ExitCode, IncompatibleDataError
from migrate.run import OnIncompatible, run
from tests.run_compare import differences
from tests.test_run_matrix import config


def test_a_database_holding_only_big_keys_is_copied(servers, tmp_path):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().hset("big", mapping={f"f{i}": f"v{i}" for i in range(50_000)})
    result = run(config(source, target, tmp_path, big_key_threshold=64 * 1024))
    assert result.copied == 1 and result.dbs[0].by_route == {"chunked": 1}
    assert differences(source.client(), target.client()) == []


@pytest.mark.parametrize("policy", [OnIncompatible.SKIP, OnIncompatible.LOSSY])
def test_a_value_longer_than_the_targets_limit_goes_to_the_policy(servers, tmp_path, policy):
    source = servers.get("redis-7.0")
    target = servers.get("valkey-8.1", "--proto-max-bulk-len", "1mb")
    source.client().set("huge", os.urandom(5 * 1024 * 1024))
    source.client().set("small", "v")
    result = run(config(source, target, tmp_path, on_incompatible=policy))
    assert [(i.key, "proto-max-bulk-len" in i.reason) for i in result.skipped] == [("huge", True)]
    assert target.client().keys() == [b"small"]
    assert not list(target.client().scan_iter(match="*migrate-tmp:*"))


def test_a_value_longer_than_the_targets_limit_fails_by_default_and_names_the_key(servers, tmp_path):
    source = servers.get("redis-7.0")
    target = servers.get("valkey-8.1", "--proto-max-bulk-len", "1mb")
    source.client().set("huge", os.urandom(3 * 1024 * 1024))
    with pytest.raises(IncompatibleDataError) as err:
        run(config(source, target, tmp_path))
    assert "huge" in err.value.message and "proto-max-bulk-len" in err.value.message
    assert err.value.exit_code == ExitCode.MIGRATION
