"""Strategy 2, flush-and-reload: from an RDB file of each source version (Redis 8 into Valkey 8.1 included), from a
replication-protocol snapshot of a live source, and the plan that comes first."""

from __future__ import annotations

import shutil

import pytest

from fixtures.dataset import populate
from migrate.cli import run_cli
from migrate.errors import ExitCode
from migrate.identity import identify
from migrate.render import display_key
from migrate.run import OnIncompatible, Strategy, run
from migrate.selection import KeySelection
from tests.run_compare import databases, differences, function_names
from tests.test_run_matrix import config
from tests.test_run_resume import ROOT

PAIRS = [("redis-6.0", "valkey-8.0"), ("redis-7.0", "valkey-9.1"), ("redis-8.0.2", "valkey-8.1"),
         ("redis-8.0.6", "valkey-8.1"), ("redis-8.0.6", "valkey-9.1")]


def saved_rdb(server, tmp_path):
    """SAVE the server and take a copy of its RDB file (what a backup is)."""
    server.client().save()
    path = tmp_path / f"{server.name}.rdb"
    shutil.copy(server.dir / "dump.rdb", path)
    return path


@pytest.mark.parametrize(("source_name", "target_name"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_reload_from_an_rdb_file(servers, tmp_path, source_name, target_name):
    source, target = servers.get(source_name), servers.get(target_name)
    data = populate(source.client(), extra=True)
    rdb = saved_rdb(source, tmp_path)
    target.client(7).set("old", "flushed by the reload")
    result = run(config(source, target, tmp_path, strategy=Strategy.RELOAD, from_rdb=rdb, yes=True,
                        on_incompatible=OnIncompatible.LOSSY))
    assert result.executed and result.plan[0].startswith("snapshot: RDB file")
    lossy = set() if identify(target.client()).hash_field_ttl else set(data.field_ttl_keys)
    assert {i.key for i in result.changed} == {display_key(k) for k in lossy}
    assert result.copied == data.total and not result.skipped and not result.busy
    assert databases(target.client()) == set(data.keys)  # db 7 was flushed
    for db in data.keys:
        assert differences(source.client(db), target.client(db), without_field_ttls=lossy) == [], f"db {db}"
    assert function_names(target.client()) == function_names(source.client())


@pytest.mark.parametrize("source_name", ["redis-6.0", "redis-7.0"])  # disk-based and diskless snapshots
def test_reload_from_a_replication_snapshot(servers, tmp_path, source_name):
    source, target = servers.get(source_name), servers.get("valkey-8.1")
    data = populate(source.client(), extra=True)
    delay = source.client().config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    source.client().config_set("repl-diskless-sync-delay", 0)  # the default waits 5 s for more replicas
    try:
        result = run(config(source, target, tmp_path, strategy=Strategy.RELOAD, yes=True))
    finally:
        source.client().config_set("repl-diskless-sync-delay", delay)
    assert result.copied == data.total
    assert "replication download" in result.plan[0]
    assert ("streamed diskless" if source_name == "redis-7.0" else "own disk") in result.plan[0]
    for db in data.keys:
        assert differences(source.client(db), target.client(db)) == [], f"db {db}"
    assert source.client().info("replication")["connected_slaves"] == 0  # we left, the source is as it was


def test_reload_shows_the_plan_and_does_nothing_without_yes(servers, capsys, tmp_path):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1")
    source.client().set("k", "v")
    target.client().set("mine", "untouched")
    code = run_cli(["run", "--strategy", "reload", "--source", source.url, "--target", target.url,
                    "--checkpoint", str(tmp_path / "cp.json")])
    out, err = capsys.readouterr()
    assert code == 0
    for needle in ("snapshot: replication download", "flush: FLUSHALL", "estimate: about 1 keys", "rollback:"):
        assert needle in out
    assert "rerun with --yes" in err
    assert target.client().keys() == [b"mine"]


def test_reload_of_a_file_with_module_data_skips_and_names_the_module_keys(servers, tmp_path):
    """fixtures/rdb/redis-7.0.rdb holds RediSearch 1.2 keys (module types ft_index0, ft_invidx) and module aux data.

    The oracle is a Redis 7.0 with the module, started on the same file."""
    module = servers.binaries["redis-7.0"].modules["redisearch"]
    folder = tmp_path / "oracle"
    folder.mkdir()
    shutil.copy(ROOT / "fixtures" / "rdb" / "redis-7.0.rdb", folder / "dump.rdb")
    oracle = servers.fresh("redis-7.0", "--loadmodule", module, "--dir", str(folder))
    target = servers.get("valkey-9.1")
    result = run(config(oracle, target, tmp_path, strategy=Strategy.RELOAD, yes=True,
                        from_rdb=ROOT / "fixtures" / "rdb" / "redis-7.0.rdb", on_incompatible=OnIncompatible.SKIP))
    module_keys = {k for db in databases(oracle.client()) for k in oracle.client(db).scan_iter()
                   if oracle.client(db).type(k) not in (b"string", b"list", b"set", b"zset", b"hash", b"stream")}
    assert module_keys and {i.key for i in result.skipped} == {display_key(k) for k in module_keys}
    assert all("module" in i.reason for i in result.skipped)
    for db in databases(oracle.client()):
        assert differences(oracle.client(db), target.client(db), ignore=module_keys) == [], f"db {db}"

    # Not selected, module keys are not judged: the default policy (fail) does not stop a strings-only reload.
    only_strings = run(config(oracle, target, tmp_path, strategy=Strategy.RELOAD, yes=True,
                              from_rdb=ROOT / "fixtures" / "rdb" / "redis-7.0.rdb",
                              selection=KeySelection(types=("string",))))
    assert not only_strings.skipped and set(only_strings.dbs[0].by_type) == {"string"}


def test_a_refused_snapshot_leaves_the_target_untouched(servers, capsys):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    source.client().execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+@all", "-sync", "-psync")
    source.client().set("k", "v")
    target.client().set("mine", "kept")
    try:
        code = run_cli(["run", "--strategy", "reload", "--yes", "--no-progress", "--target", target.url,
                        "--source", source.url_for(0, "reader", "reader-pw")])
        _, err = capsys.readouterr()
    finally:
        source.client().execute_command("ACL", "DELUSER", "reader")
    assert code == ExitCode.MIGRATION
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    # found by the rights probe before anything is sent to the target (PSYNC and SYNC are probed outside MULTI)
    assert "permission denied" in line and "no permission for SYNC" in line and "reader-pw" not in err
    assert target.client().keys() == [b"mine"]
