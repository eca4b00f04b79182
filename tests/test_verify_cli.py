"""`migrate verify` through the real CLI: exit codes, JSON that parses (schema v1), markdown, config errors."""

from __future__ import annotations

import json

import pytest

from fixtures.dataset import populate
from migrate.cli import run_cli
from tests.verify_support import copy_server

FAST = ["--rounds", "1", "--interval", "0.05"]


@pytest.fixture
def migrated(servers):
    source, target = servers.get("redis-7.0"), servers.get("valkey-8.1")
    populate(source.client())
    copy_server(source, target)
    return source, target


def verify_cli(source, target, *args: str) -> list[str]:
    return ["verify", "--source", source.url, "--target", target.url, *FAST, *args]


def test_parity_exits_0_and_json_parses(migrated, capsys):
    source, target = migrated
    assert run_cli(verify_cli(source, target, "--format", "json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "migrate.verify/1" and report["ok"] is True
    assert report["level"] == "full" and report["divergent_keys"] == [] and report["divergent_keys_omitted"] == 0
    assert report["totals"]["compared"] == report["totals"]["source_keys"] > 0
    assert report["sample"]["mode"] == "all" and report["sample"]["fraction"] == 1.0
    assert [db["source_db"] for db in report["databases"]] == [0, 1, 2]


def test_divergence_exits_5_with_every_reason_in_json(migrated, capsys):
    source, target = migrated
    client = target.client()
    client.delete("str:ascii")
    client.set(b"bin:\x00extra", "x")
    assert run_cli(verify_cli(source, target, "--format", "json")) == 5
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False
    reasons = {(k["key"], k["reason"]) for k in report["divergent_keys"]}
    assert reasons == {("str:ascii", "missing_on_target"), ("bin:\\x00extra", "extra_on_target")}
    assert {k["key_base64"] for k in report["divergent_keys"]} >= {"YmluOgBleHRyYQ=="}
    assert report["by_reason"] == {"extra_on_target": 1, "missing_on_target": 1}
    assert "DIVERGENT" in captured.err


def test_human_and_markdown_reports(migrated, capsys, tmp_path):
    source, target = migrated
    target.client().persist("ttl:list")
    assert run_cli(verify_cli(source, target)) == 5
    human = capsys.readouterr().out
    assert "ttl:list" in human and "ttl_mismatch" in human and "DIVERGENT: 1 divergent keys" in human
    out = tmp_path / "report.md"
    assert run_cli(verify_cli(source, target, "--format", "markdown", "--output", str(out))) == 5
    markdown = out.read_text()
    assert markdown.startswith("## migrate verify --level full: DIVERGENT")
    assert "| 0 | 0 | ttl:list | ttl_mismatch |" in markdown


def test_levels_sampling_and_filters_from_flags_and_env(migrated, capsys, monkeypatch):
    source, target = migrated
    target.client().hset("hash:small", "f1", "changed")
    assert run_cli(verify_cli(source, target, "--level", "keys")) == 0
    assert run_cli(verify_cli(source, target, "--type", "string", "--exclude", "str:*")) == 0
    capsys.readouterr()
    monkeypatch.setenv("MIGRATE_SAMPLE", "5")
    assert run_cli(verify_cli(source, target, "--level", "keys", "--format", "json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sample"]["mode"] == "count" and report["sample"]["keys_sampled"] == 5


@pytest.mark.parametrize("args", [
    ["--sample", "5", "--sample-percent", "10"],
    ["--level", "count", "--match", "str:*"],
    ["--type", "bogus"],
    ["--db-map", "0-3"],
])
def test_bad_options_exit_1(migrated, capsys, args):
    source, target = migrated
    assert run_cli(verify_cli(source, target, *args)) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_unreachable_target_exits_3(migrated, capsys):
    source, _ = migrated
    code = run_cli(["verify", "--source", source.url, "--target", "redis://127.0.0.1:1/0", "--retries", "1",
                    "--connect-timeout", "1"])
    assert code == 3
    assert "target" in capsys.readouterr().err


def test_passwords_never_reach_reports_or_errors(servers, capsys):
    source = servers.get("redis-8.0.2", password="s3cret-source")
    target = servers.get("valkey-8.1", password="s3cret-target")
    populate(source.client())
    copy_server(source, target)
    target.client().delete("str:ascii")
    assert run_cli(["verify", "--source", source.url, "--target", target.url, *FAST, "--format", "json"]) == 5
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["source"]["endpoint"].startswith("redis://:***@127.0.0.1:")
    assert "s3cret" not in captured.out + captured.err
    wrong = source.url.replace("s3cret-source", "wrong-pass")
    assert run_cli(["verify", "--source", wrong, "--target", target.url, "--retries", "1"]) == 3
    assert "wrong-pass" not in capsys.readouterr().err


@pytest.mark.parametrize(("level", "denied"), [("keys", ("-pexpiretime", "-pttl")), ("full", ("-hscan",))])
def test_a_refused_command_is_an_error_not_parity(servers, capsys, level, denied):
    """Both servers refusing the same command answer the same bytes (same product, same error text): that must not
    pass for equal keys."""
    source, target = servers.get("valkey-8.0"), servers.get("valkey-8.1")
    populate(source.client())
    copy_server(source, target)
    for server in (source, target):
        server.client().execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", *denied)
    try:
        urls = [server.url_for(0, "limited", "pw") for server in (source, target)]
        assert run_cli(["verify", "--source", urls[0], "--target", urls[1], *FAST, "--level", level]) == 4
        assert "permission denied" in capsys.readouterr().err
    finally:
        for server in (source, target):
            server.client().execute_command("ACL", "DELUSER", "limited")
