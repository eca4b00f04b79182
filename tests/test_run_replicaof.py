"""Strategy 3, native replication: used when the target can read the source's RDB, refused (before anything is sent
to the target) when a full sync would flush the target and then fail."""

from __future__ import annotations

import json
from contextlib import contextmanager

from fixtures.dataset import populate
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.run_compare import differences
from tests.test_run_bad_input import error_line
from tests.test_run_resume import fill

PASSWORD = "replica-pa55"


@contextmanager
def no_sync_delay(server):
    """Redis 7.0+ waits repl-diskless-sync-delay (5 s) for more replicas before a diskless sync: not in tests."""
    client = server.client()
    delay = client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    client.config_set("repl-diskless-sync-delay", 0)
    try:
        yield
    finally:
        client.config_set("repl-diskless-sync-delay", delay)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["run", "--strategy", "replicaof", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_replicaof_syncs_catches_up_and_promotes(servers, capsys):
    source = servers.get("redis-7.0", password=PASSWORD)
    target = servers.fresh("valkey-8.1")
    data = populate(source.client())
    target.client().set("replaced", "by the sync")
    with no_sync_delay(source):
        code, out, err = cli(capsys, "--source", source.url, "--target", target.url, "--yes", "--promote",
                             "--format", "json")
    assert code == 0, err
    assert "plan:" in err and "REPLICAOF 127.0.0.1" in err  # the plan is printed before it runs
    report = json.loads(out)
    rep = report["replication"]
    assert rep["promoted"] is True and rep["keys"] == data.total and rep["lag_bytes"] == 0
    assert rep["target_offset"] >= rep["source_offset"] >= 0
    assert target.client().info("replication")["role"] == "master"
    assert target.client().config_get("masterauth")["masterauth"] == ""  # the source's password is not left there
    for db in data.keys:
        assert differences(source.client(db), target.client(db)) == [], f"db {db}"
    assert PASSWORD not in out + err


def test_replicaof_is_refused_when_the_target_cannot_read_the_rdb(servers, capsys):
    source, target = servers.get("redis-8.0.2"), servers.get("valkey-8.1")
    fill(source.client(), 10)
    target.client().set("precious", "must survive")
    code, _, err = cli(capsys, "--source", source.url, "--target", target.url, "--yes")
    assert code == ExitCode.MIGRATION
    line = error_line(err)
    assert "cannot load RDB 12 written by Redis 8.0.2" in line and "--strategy replay" in line
    assert target.client().info("replication")["role"] == "master"
    assert target.client().get("precious") == b"must survive"


def test_relaxed_valkey_9_takes_a_redis_8_sync_unless_field_ttls_are_in_it(servers, capsys):
    source, target = servers.get("redis-8.0.6"), servers.fresh("valkey-9.1")
    target.client().config_set("rdb-version-check", "relaxed")
    source.client().hset("hfe", mapping={"a": "1"})
    source.client().execute_command("HEXPIRE", "hfe", 3600, "FIELDS", 1, "a")
    code, _, err = cli(capsys, "--source", source.url, "--target", target.url, "--yes")
    assert code == ExitCode.MIGRATION and "field TTLs" in error_line(err)

    source.client().delete("hfe")
    fill(source.client(), 100)
    with no_sync_delay(source):
        code, _out, err = cli(capsys, "--source", source.url, "--target", target.url, "--yes", "--promote")
    assert code == 0, err
    assert differences(source.client(), target.client()) == []


def test_replicaof_without_yes_only_shows_the_plan(servers, capsys):
    source, target = servers.get("redis-6.0"), servers.get("valkey-9.1")
    fill(source.client(), 3)
    code, out, err = cli(capsys, "--source", source.url, "--target", target.url)
    assert code == 0 and "replicate: REPLICAOF" in out and "rerun with --yes" in err
    assert target.client().info("replication")["role"] == "master" and target.client().dbsize() == 0


def test_replicaof_takes_no_key_selection(capsys):
    code, _, err = cli(capsys, "--source", "redis://127.0.0.1:1", "--target", "redis://127.0.0.1:2", "--match", "a*")
    assert code == ExitCode.CONFIG and "copies the whole dataset" in error_line(err)


def test_replicaof_is_refused_when_the_source_has_module_data(servers, capsys):
    module = servers.binaries["redis-7.0"].modules["redisearch"]
    source, target = servers.get("redis-7.0", "--loadmodule", module), servers.get("valkey-8.0")
    code, _, err = cli(capsys, "--source", source.url, "--target", target.url, "--yes")
    assert code == ExitCode.MIGRATION and "module(s) ft that the target lacks" in error_line(err)
