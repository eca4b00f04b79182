"""`migrate run --strategy reload --from-aof PATH` (issue 11) on real AOFs and bad inputs.

The corpus (fixtures/aof/, scripts/make-aof-fixtures) was written under live traffic (four databases, MULTI/EXEC, a
Lua script, every expiry form, streams with consumer groups, FLUSHDB, RESTORE, field TTLs where the writer has them,
a BGREWRITEAOF between two rounds) by Redis 6.0, 7.0, 8.0.6 and Valkey 8.1, 9.1; the writer's state is stored beside
each. A reload into Valkey 8.1 and 9.1 must give that state (field TTLs kept on 9.1; on 8.1 they cannot be: refused
before the flush by default, dropped and named under --on-incompatible lossy).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fixtures.aof_state import canonical_state, same_state
from migrate.aof import AofReader
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.aof_support import BAD, CORPUS, expected_state, server_on_aof, tolerance
from tests.conftest import ServerFactory
from tests.rdb_builders import dump_payload, rdb_file, string
from tests.test_persistence_files import HANDBUILT

WRITERS = ["redis-6.0-aof", "redis-6.0-preamble", "redis-7.0-aof-base", "redis-7.0-rdb-base", "redis-7.0-split-incr",
           "redis-8.0.6-aof-base", "redis-8.0.6-rdb-base", "valkey-8.1-rdb-base", "valkey-9.1-aof-base",
           "valkey-9.1-rdb-base"]
TARGETS = ("valkey-8.1", "valkey-9.1")


def reload_aof(capsys: Any, target: Any, path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    code = run_cli(["run", "--strategy", "reload", "--from-aof", str(path), "--target", target.url, "--yes",
                    "--no-progress", "--format", "json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def field_ttl_keys(state: dict[str, Any]) -> set[tuple[str, str]]:
    return {(db, key) for db, keys in state["dbs"].items() for key, entry in keys.items()
            if entry.get("field_expire_ms")}


def without_field_ttls(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "dbs": {db: {k: {**e, "field_expire_ms": {}} if "field_expire_ms" in e else e
                                  for k, e in keys.items()} for db, keys in state["dbs"].items()}}


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("fixture", WRITERS)
def test_an_aof_written_under_traffic_reloads_as_its_writer_held_it(servers: ServerFactory, capsys: Any,
                                                                    fixture: str, target_name: str) -> None:
    state = expected_state(fixture)
    target = servers.get(target_name)
    target.client().set("old", "flushed by the reload")
    hfe = field_ttl_keys(state)
    lossy = bool(hfe) and target_name == "valkey-8.1"
    code, report, err = reload_aof(capsys, target, CORPUS / fixture, *(("--on-incompatible", "lossy") if lossy
                                                                      else ()))
    assert code == 0, err
    assert report["totals"]["skipped"] == 0 and report["totals"]["busy"] == 0
    assert report["commands"]["read"] > 200 and report["commands"]["truncation"] == ""
    changed = {(str(i["db"]), i["key"]) for db in report["dbs"] for i in db["changed"]}
    assert changed == (hfe if lossy else set())
    got = canonical_state(target.client())
    if lossy:  # Valkey 8.1 has no field TTLs: the fields are there, their TTLs are not
        got, state = without_field_ttls(got), without_field_ttls(state)
    assert same_state(got, state, tolerance(state)) == []


def test_commands_the_target_lacks_stop_the_reload_before_the_flush(servers: ServerFactory, capsys: Any) -> None:
    """Redis 8.0.6's AOF holds hash field TTLs (HPEXPIREAT, HSETEX) and its RDB base hashes that carry them: Valkey
    8.1 cannot keep them; under the default --on-incompatible fail nothing is flushed and they are named."""
    target = servers.get("valkey-8.1")
    target.client().set("keep", "me")
    for fixture in ("redis-8.0.6-aof-base", "redis-8.0.6-rdb-base"):
        code, _, err = reload_aof(capsys, target, CORPUS / fixture)
        line = error_line(err)
        assert code == ExitCode.PROBLEMS and "nothing was flushed" in line and ":hfe" in line, line
        assert "and " in line and "more" in line  # first ones named, then a count
        assert target.client().keys() == [b"keep"]


BAD_INPUTS = [  # (input, what the one error line says)
    ("truncated-not-last", "not the last file"),
    ("missing-file", "which does not exist"),
    ("no-manifest", "no AOF manifest"),
    ("binary.aof", "not an AOF file"),
    ("bad-manifest", "invalid AOF manifest"),
    ("corrupt-middle", "corrupt AOF command"),
]


@pytest.mark.parametrize(("name", "says"), BAD_INPUTS, ids=[n for n, _ in BAD_INPUTS])
def test_a_bad_aof_is_one_error_line_and_the_target_is_untouched(servers: ServerFactory, capsys: Any, name: str,
                                                                  says: str) -> None:
    target = servers.get("valkey-9.1")
    target.client().set("keep", "me")
    code, _, err = reload_aof(capsys, target, BAD / name)
    line = error_line(err)
    assert code == ExitCode.BAD_INPUT and says in line, line
    assert target.client().keys() == [b"keep"]


def test_a_path_that_does_not_exist_is_a_usage_error(servers: ServerFactory, capsys: Any, tmp_path: Path) -> None:
    target = servers.get("valkey-9.1")
    code, _, err = reload_aof(capsys, target, tmp_path / "nowhere")
    assert code == ExitCode.CONFIG and "--from-aof: not found" in error_line(err)
    code, _, err = reload_aof(capsys, target, CORPUS / "redis-7.0-rdb-base", "--match", "one:*")
    assert code == ExitCode.CONFIG and "--match, --type and --exclude" in error_line(err)


TORN = [("truncated-last", "redis-7.0", "ends inside a command"),
        ("truncated-single", "redis-6.0", "ends inside a command"),
        ("open-transaction", "redis-8.0.6", "ends inside a MULTI/EXEC block (its 3 commands are reverted)")]


@pytest.mark.parametrize(("name", "writer", "says"), TORN, ids=[n for n, _, _ in TORN])
def test_a_torn_tail_loads_up_to_the_last_complete_command_as_the_server_does(
        servers: ServerFactory, capsys: Any, tmp_path: Path, name: str, writer: str, says: str) -> None:
    target = servers.get("valkey-9.1")
    code, report, err = reload_aof(capsys, target, BAD / name)
    assert code == 0, err
    assert says in report["commands"]["truncation"] and "as a server does" in report["commands"]["truncation"]
    ground = server_on_aof(writer, BAD / name, tmp_path)  # the writer's release loading the same torn files
    try:
        truth = canonical_state(ground.client())
    finally:
        ground.stop()
    assert truth["dbs"] and same_state(canonical_state(target.client()), truth, tolerance(truth)) == []


def _write_aof(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "appendonly.aof").write_bytes(data)
    return folder


def _resp(*argv: bytes) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in argv)


def test_keys_expired_at_load_are_not_created(servers: ServerFactory, capsys: Any, tmp_path: Path) -> None:
    """An RDB preamble key whose expiry passed, SET ... PXAT in the past, PEXPIREAT in the past: none of these keys
    exist after the load, as after a server loads the same file (Redis 7.0, the ground truth)."""
    preamble = rdb_file(9, {0: [(b"pre:gone", 0, string(b"v"), 1_000), (b"pre:kept", 0, string(b"v"), None)]})
    commands = (_resp(b"SELECT", b"0") + _resp(b"SET", b"set:gone", b"v", b"PXAT", b"1000") +
                _resp(b"SET", b"expire:gone", b"v") + _resp(b"PEXPIREAT", b"expire:gone", b"1000") +
                _resp(b"SET", b"far", b"v", b"PXAT", b"4102444800000") + _resp(b"INCR", b"counter"))
    aof = _write_aof(tmp_path / "aof", preamble + commands)
    target = servers.get("valkey-9.1")
    code, report, err = reload_aof(capsys, target, aof)
    assert code == 0, err
    assert report["totals"]["expired"] == 1  # the preamble's key, counted and not created
    ground = server_on_aof("redis-7.0", aof, tmp_path / "server")
    try:
        truth = canonical_state(ground.client())
    finally:
        ground.stop()
    assert sorted(truth["dbs"]["0"]) == ["counter", "far", "pre:kept"]
    assert same_state(canonical_state(target.client()), truth) == []


def test_a_restore_the_target_refuses_is_rebuilt(servers: ServerFactory, capsys: Any, tmp_path: Path) -> None:
    """A RESTORE in the AOF of a stream Valkey 9.1 refuses (its length above its entries, Redis 5.0-rc1): loaded
    through the per-key path, so rebuilt with commands; the commands after it see it."""
    from migrate.rdb.reader import RdbReader
    from migrate.rdb.records import KeyRecord

    with RdbReader(HANDBUILT / "rdb9-trimmed-streams.rdb") as reader:
        body = next(r.payload for r in reader.records() if isinstance(r, KeyRecord) and r.key == b"x:xdel-rc1")
    commands = (_resp(b"SELECT", b"2") + _resp(b"RESTORE", b"x", b"0", dump_payload(15, body, 9)) +
                _resp(b"XADD", b"x", b"11-1", b"n", b"11") + _resp(b"SET", b"after", b"1"))
    aof = _write_aof(tmp_path / "aof", commands)
    target = servers.get("valkey-9.1")
    code, report, err = reload_aof(capsys, target, aof)
    assert code == 0, err
    assert report["totals"]["rebuilt"] == 1 and report["commands"]["restored"] == 1
    assert [i["key"] for db in report["dbs"] for i in db["rebuilt"]] == ["x"]
    entries = target.client(2).xrange("x")
    assert [e[0] for e in entries] == [b"%d-1" % i for i in range(3, 12)]  # 8 from the payload, then XADD's
    assert target.client(2).xlen("x") == 9 and target.client(2).get("after") == b"1"


def test_db_selection_and_map_apply_to_the_rdb_part_and_the_commands(servers: ServerFactory, capsys: Any) -> None:
    state = expected_state("redis-7.0-rdb-base")
    target = servers.get("valkey-9.1")
    code, report, err = reload_aof(capsys, target, CORPUS / "redis-7.0-rdb-base", "--db-map", "1:5")
    assert code == 0, err
    got = canonical_state(target.client())
    assert set(got["dbs"]) == {"5"}
    assert same_state({**got, "dbs": {"1": got["dbs"]["5"]}}, {**state, "dbs": {"1": state["dbs"]["1"]}}) == []
    assert report["commands"]["filtered"]  # commands of databases 0, 2, 3 were not applied


def test_the_plan_comes_first_and_nothing_is_done_without_yes(servers: ServerFactory, capsys: Any) -> None:
    target = servers.get("valkey-9.1")
    target.client().set("keep", "me")
    code = run_cli(["run", "--strategy", "reload", "--from-aof", str(CORPUS / "redis-7.0-rdb-base"), "--target",
                    target.url, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and "rerun with --yes" in err
    for needle in ("snapshot: AOF", "multi-part", "appendonly.aof.2.base.rdb (base, rdb RDB 10", "check: before",
                   "then the AOF's commands", "estimate: about", "rollback:"):
        assert needle in out, needle
    assert target.client().keys() == [b"keep"]


def test_field_ttls_are_kept_on_valkey_9_1(servers: ServerFactory, capsys: Any) -> None:
    target = servers.get("valkey-9.1")
    code, _, err = reload_aof(capsys, target, CORPUS / "redis-8.0.6-aof-base")
    assert code == 0, err
    hfe = target.client().execute_command("HPEXPIRETIME", "two:hfe", "FIELDS", 2, "f0", "f6")
    assert hfe[0] > 3_000_000_000_000 and hfe[1] == -2  # f0 keeps its TTL; f6 expired before the state was taken


def test_a_copy_of_a_live_aof_directory_loads(servers: ServerFactory, capsys: Any, tmp_path: Path) -> None:
    """The directory given as the server's data dir (appendonlydir/ inside): found and loaded."""
    data = tmp_path / "data"
    shutil.copytree(CORPUS / "valkey-9.1-rdb-base", data / "appendonlydir")
    target = servers.get("valkey-9.1")
    code, _, err = reload_aof(capsys, target, data)
    state = expected_state("valkey-9.1-rdb-base")
    assert code == 0, err
    assert same_state(canonical_state(target.client()), state, tolerance(state)) == []


# -- preflight --aof-dir: offline, like --rdb-file ------------------------------------------------------------------

def preflight_aof(capsys: Any, path: Path, target: str) -> tuple[int, dict[str, Any], str]:
    code = run_cli(["preflight", "--aof-dir", str(path), "--target-version", target, "--format", "json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in report["findings"]}


@pytest.mark.parametrize("fixture", ["redis-6.0-preamble", "redis-7.0-aof-base", "redis-8.0.6-rdb-base"])
def test_preflight_reads_an_aof_offline(capsys: Any, fixture: str) -> None:
    from migrate.aof import summarize_aof

    summary = summarize_aof(CORPUS / fixture)
    code, report, err = preflight_aof(capsys, CORPUS / fixture, "valkey:8.1")
    found = findings(report)
    hfe = fixture.startswith("redis-8")  # its RDB base holds hashes with field TTLs: Valkey 8.1 cannot keep them
    assert code == (ExitCode.PROBLEMS if hfe else 0), err
    assert ("HFE_UNSUPPORTED" in found) == hfe
    aof = report["aof"]
    assert aof["error"] is None and sum(aof["commands"].values()) == summary.commands
    assert aof["rdb_keys"] == summary.keys_in_rdb and aof["transactions"] == summary.transactions >= 2
    assert "AOF_FILES" in found and report["strategy"]["recommended"] == "reload"
    lacking = found.get("AOF_COMMANDS_UNSUPPORTED", {}).get("evidence", {}).get("commands", {})
    assert set(lacking) == ({"hpexpireat", "hpersist", "hsetex"} if hfe else set())
    if summary.keys_in_rdb:  # the RDB part's census, classified for the target
        assert report["aof"]["census"]["dbs"] and report["strategy"]["keys"] == summary.keys_in_rdb


def test_preflight_names_a_torn_tail_and_refuses_what_a_server_refuses(capsys: Any) -> None:
    code, report, err = preflight_aof(capsys, BAD / "open-transaction", "valkey:9.1")
    truncated = findings(report)["AOF_TRUNCATED"]
    assert code == 0 and truncated["severity"] == "warning" and truncated["evidence"]["dropped_commands"] == 3
    for name, says in BAD_INPUTS:
        code, _, err = preflight_aof(capsys, BAD / name, "valkey:9.1")
        assert code == ExitCode.BAD_INPUT and says in error_line(err), (name, err)


def test_preflight_flags_module_commands(capsys: Any, tmp_path: Path) -> None:
    aof = _write_aof(tmp_path / "aof", _resp(b"SELECT", b"0") + _resp(b"JSON.SET", b"doc", b"$", b"{}") +
                     _resp(b"SET", b"plain", b"v"))
    code, report, _ = preflight_aof(capsys, aof, "valkey:9.1")
    module = findings(report)["AOF_MODULE_COMMANDS"]
    assert code == ExitCode.PROBLEMS and module["severity"] == "blocker" and module["evidence"]["commands"] == {
        "json.set": 1}


def test_a_plan_over_its_memory_budget_goes_on_parsing(servers: ServerFactory, capsys: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The check pass keeps at most PLAN_ENTRIES entries of the load plan (memory bounded by that, not by the
    file): past them, the load parses the rest of the file; the result is the same."""
    from migrate.run import aofload

    monkeypatch.setattr(aofload, "PLAN_ENTRIES", 7)
    state = expected_state("redis-8.0.6-aof-base")
    target = servers.get("valkey-9.1")
    code, report, err = reload_aof(capsys, target, CORPUS / "redis-8.0.6-aof-base")
    assert code == 0, err
    assert same_state(canonical_state(target.client()), state, tolerance(state)) == []
    assert report["commands"]["read"] == sum(1 for _ in AofReader(CORPUS / "redis-8.0.6-aof-base").commands_only())


def test_a_command_the_target_refuses_inside_a_forwarded_run_is_named(servers: ServerFactory, capsys: Any,
                                                                      tmp_path: Path) -> None:
    """Commands the target takes as they are go out as the bytes the file holds; a refusal among them (the target
    already differs: here a key of another type) still names the command and key, and says the target was
    flushed."""
    commands = (_resp(b"SET", b"a", b"1") + _resp(b"SET", b"k", b"v") + _resp(b"LPUSH", b"k", b"x") +
                _resp(b"SET", b"b", b"2"))
    aof = _write_aof(tmp_path / "aof", commands)
    target = servers.get("valkey-9.1")
    code, _, err = reload_aof(capsys, target, aof)
    line = error_line(err)
    assert code == ExitCode.MIGRATION and "LPUSH k" in line and "WRONGTYPE" in line, line
    assert line.startswith("error: the target was flushed and holds a partial load")


@pytest.mark.parametrize("where", ["middle", "last"])
def test_commands_that_are_not_canonical_resp_load_as_the_server_reads_them(servers: ServerFactory, capsys: Any,
                                                                           tmp_path: Path, where: str) -> None:
    """A length written `$03` (a server's loader reads it with strtol, a target's protocol parser refuses it): such a
    command is parsed by the server's rules and sent re-encoded, never forwarded as its bytes."""
    odd = b"*3\r\n$3\r\nSET\r\n$03\r\nodd\r\n$1\r\nv\r\n"
    plain = b"".join(_resp(b"SET", b"k%d" % i, b"v") for i in range(50))
    aof = _write_aof(tmp_path / "aof", plain + odd + plain.replace(b"$2\r\nk", b"$2\r\nj") if where == "middle"
                     else plain + odd)
    target = servers.get("valkey-9.1")
    code, _, err = reload_aof(capsys, target, aof)
    assert code == 0, err
    ground = server_on_aof("redis-7.0", aof, tmp_path / "server")
    try:
        truth = canonical_state(ground.client())
    finally:
        ground.stop()
    assert "odd" in truth["dbs"]["0"] and same_state(canonical_state(target.client()), truth) == []
