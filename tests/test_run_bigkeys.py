"""Big keys: above the threshold, copied in chunks with type-native reads and writes, never one payload over the
target's proto-max-bulk-len; the target ends equal to the source."""

from __future__ import annotations

import os

import pytest

from fixtures.dataset import populate
from migrate.identity import identify
from migrate.render import display_key
from migrate.run import OnIncompatible, run
from tests.run_compare import differences
from tests.test_run_matrix import config

PAIRS = [("redis-6.0", "valkey-8.0"), ("redis-7.0", "valkey-8.1"), ("redis-8.0.2", "valkey-9.1"),
         ("redis-8.0.6", "valkey-8.1")]


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_keys_over_the_threshold_are_copied_in_chunks(servers, tmp_path, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    data = populate(source.client(), dbs=(0,), extra=True)
    result = run(config(source, target, tmp_path, big_key_threshold=2000, on_incompatible=OnIncompatible.LOSSY))

    client = source.client()
    big = [k for k in client.scan_iter() if client.memory_usage(k) > 2000]
    assert len(big) >= 10
    assert result.dbs[0].by_route.get("chunked") == len(big), result.dbs[0].by_route
    lossy = set() if identify(target.client()).hash_field_ttl else set(data.field_ttl_keys)
    changed = {i.key: i.reason for i in result.changed}
    assert {k for k, why in changed.items() if "field TTLs" in why} == {display_key(k) for k in lossy}
    assert differences(source.client(), target.client(), without_field_ttls=lossy, pending_tolerance_ms=2000) == []
    assert not [k for k in target.client().scan_iter(match="*migrate-tmp:*")]  # no temporary key left


def test_payloads_over_proto_max_bulk_len_are_never_sent_whole(servers, tmp_path):
    """No size probe (threshold 0): 2-3 MB values DUMP whole, but the target takes at most 1 MB per argument."""
    source = servers.get("redis-7.0")
    target = servers.get("valkey-8.1", "--proto-max-bulk-len", "1mb")
    client = source.client()
    client.set("string", os.urandom(900 * 1024))  # a string is limited to proto-max-bulk-len anyway
    client.hset("big:hash", mapping={f"f{i}": os.urandom(1000) for i in range(2500)})
    client.rpush("big:list", *[os.urandom(2000) for _ in range(1000)])
    client.pexpire("big:hash", 600_000)
    client.set("small", "v")
    result = run(config(source, target, tmp_path, big_key_threshold=0))
    assert result.dbs[0].by_route == {"as-is": 2, "chunked": 2}
    assert differences(source.client(), target.client()) == []
