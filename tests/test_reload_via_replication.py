"""`migrate run --strategy reload --load-via replication` (issue 11): the target loads as migrate's replica (an RDB
snapshot, or an AOF's RDB part, as its full sync; an AOF's commands as the stream), on the real AOF corpus, the
hand-built RDB corpus, live sources and bad inputs.

After every run, refused or not, the target must be a primary again with its own settings (masterauth,
repl-diskless-load, repl-timeout); a refusal before the sync's last chunk must leave its data as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures.aof_state import canonical_state, same_state
from fixtures.rdb_corpus import CORPUS as RDB_CORPUS
from fixtures.sandbox import LocalServer
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.aof_support import BAD, CORPUS, expected_state, server_on_aof, tolerance
from tests.cluster_run_support import diff, fill
from tests.conftest import ServerFactory
from tests.rdb_builders import dump_payload
from tests.readback import read_stream
from tests.test_persistence_files import BY_NAME, HANDBUILT, oracle_state, path_of, without
from tests.test_run_aof import (
    BAD_INPUTS,
    TARGETS,
    WRITERS,
    _resp,
    _write_aof,
    error_line,
    field_ttl_keys,
    without_field_ttls,
)
from tests.test_run_aof import reload_aof as _reload_aof

OWN = ("--repl-diskless-load", "disabled", "--repl-timeout", "60")  # its own settings, stated (and a server apart)


def target_of(servers: ServerFactory, name: str) -> LocalServer:
    target = servers.get(name, *OWN)
    target.client().config_set("masterauth", "its-own-secret")
    return target


def reload_aof(capsys: Any, target: Any, path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    return _reload_aof(capsys, target, path, "--load-via", "replication", *extra)


def _reload(capsys: Any, target: Any, *extra: str) -> tuple[int, dict[str, Any], str]:
    code = run_cli(["run", "--strategy", "reload", "--target", target.url, "--yes", "--no-progress", "--format",
                    "json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def assert_primary_as_before(target: LocalServer) -> None:
    client = target.client()
    assert client.info("replication")["role"] == "master"
    settings = client.config_get("repl-diskless-load") | client.config_get("repl-timeout")
    assert settings == {"repl-diskless-load": "disabled", "repl-timeout": "60"}
    assert client.config_get("masterauth") == {"masterauth": "its-own-secret"}


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("fixture", WRITERS)
def test_an_aof_written_under_traffic_loads_through_replication_as_its_writer_held_it(
        servers: ServerFactory, capsys: Any, fixture: str, target_name: str) -> None:
    state = expected_state(fixture)
    target = target_of(servers, target_name)
    hfe = field_ttl_keys(state)
    lossy = bool(hfe) and target_name == "valkey-8.1"
    code, report, err = reload_aof(capsys, target, CORPUS / fixture, *(("--on-incompatible", "lossy") if lossy
                                                                      else ()))
    assert code == 0, err
    assert report["totals"]["skipped"] == 0 and report["commands"]["read"] > 200
    assert report["commands"]["applied"] > 200 and report["commands"]["restored"] == 0  # RESTOREs go in the stream
    got = canonical_state(target.client())
    if lossy:  # Valkey 8.1 has no field TTLs: the fields are there, their TTLs are not (named as changed)
        changed = {(str(i["db"]), i["key"]) for db in report["dbs"] for i in db["changed"]}
        assert changed and changed <= hfe
        got, state = without_field_ttls(got), without_field_ttls(state)
    assert same_state(got, state, tolerance(state)) == []
    assert_primary_as_before(target)


@pytest.mark.parametrize("empty", [True, False], ids=["empty-target", "target-with-keys"])
def test_keys_the_target_cannot_hold_are_refused_before_the_sync_ends(servers: ServerFactory, capsys: Any,
                                                                       empty: bool) -> None:
    """Redis 8.0.6's RDB base holds hashes with field TTLs, which Valkey 8.1 cannot keep: under --on-incompatible
    fail they are named (first ones, then a count) and the target keeps what it held: an empty target loading while
    the sync arrives (repl-diskless-load on-empty-db) empties itself again, one with keys never saw the sync end."""
    target = target_of(servers, "valkey-8.1")
    if not empty:
        target.client().set("keep", "me")
    code, _, err = reload_aof(capsys, target, CORPUS / "redis-8.0.6-rdb-base")
    line = error_line(err)
    assert code == ExitCode.PROBLEMS and "nothing was flushed" in line and ":hfe" in line, line
    assert target.client().keys() == ([] if empty else [b"keep"])
    assert_primary_as_before(target)


@pytest.mark.parametrize(("name", "says"), BAD_INPUTS, ids=[n for n, _ in BAD_INPUTS])
def test_a_bad_aof_is_one_error_line_and_the_target_is_untouched(servers: ServerFactory, capsys: Any, name: str,
                                                                  says: str) -> None:
    target = target_of(servers, "valkey-9.1")
    target.client().set("keep", "me")
    code, _, err = reload_aof(capsys, target, BAD / name)
    line = error_line(err)
    assert code == ExitCode.BAD_INPUT and says in line, line
    assert target.client().keys() == [b"keep"]
    assert_primary_as_before(target)


def test_a_corrupt_rdb_base_is_refused_and_the_empty_target_stays_empty(servers: ServerFactory, capsys: Any,
                                                                        tmp_path: Path) -> None:
    """A base RDB cut short (its checksum and half its keys missing): the transcoder stops on it while the target
    loads the keys it was sent (on-empty-db); the sync breaks, and the target empties itself again."""
    folder = tmp_path / "aof"
    folder.mkdir()
    for file in (CORPUS / "redis-7.0-rdb-base").iterdir():
        data = file.read_bytes()
        (folder / file.name).write_bytes(data[:len(data) // 2] if file.name.endswith(".base.rdb") else data)
    target = target_of(servers, "valkey-9.1")
    code, _, err = reload_aof(capsys, target, folder)
    line = error_line(err)
    assert code == ExitCode.BAD_INPUT and "RDB part" in line and "not touched" in line, line
    assert target.client().dbsize() == 0
    assert_primary_as_before(target)


def test_a_torn_tail_loads_up_to_the_last_complete_command_as_the_server_does(servers: ServerFactory, capsys: Any,
                                                                              tmp_path: Path) -> None:
    target = target_of(servers, "valkey-9.1")
    code, report, err = reload_aof(capsys, target, BAD / "truncated-single")
    assert code == 0, err
    assert "ends inside a command" in report["commands"]["truncation"]
    ground = server_on_aof("redis-6.0", BAD / "truncated-single", tmp_path)
    try:
        truth = canonical_state(ground.client())
    finally:
        ground.stop()
    assert truth["dbs"] and same_state(canonical_state(target.client()), truth, tolerance(truth)) == []
    assert_primary_as_before(target)


def test_a_command_the_replica_refuses_fails_the_run_by_its_error_counter(servers: ServerFactory, capsys: Any,
                                                                          tmp_path: Path) -> None:
    """A replica answers nothing to its primary: a RESTORE of a stream Valkey 9.1 refuses (its length above its
    entries) is found by the target's error counter, the run fails (exit 4) and says the data was replaced and how to
    get each refused command named (--load-via commands rebuilds this one)."""
    from migrate.rdb.reader import RdbReader
    from migrate.rdb.records import KeyRecord

    with RdbReader(HANDBUILT / "rdb9-trimmed-streams.rdb") as reader:
        body = next(r.payload for r in reader.records() if isinstance(r, KeyRecord) and r.key == b"x:xdel-rc1")
    aof = _write_aof(tmp_path / "aof", _resp(b"SELECT", b"2") + _resp(b"RESTORE", b"x", b"0", dump_payload(15, body, 9))
                     + _resp(b"SET", b"after", b"1"))
    target = target_of(servers, "valkey-9.1")
    code, _, err = reload_aof(capsys, target, aof)
    line = error_line(err)
    assert code == ExitCode.MIGRATION and "error counter" in line and "--load-via commands" in line, line
    assert target.client(2).get("after") == b"1" and not target.client(2).exists("x")
    assert_primary_as_before(target)


def test_a_target_over_its_maxmemory_after_the_load_is_an_error(servers: ServerFactory, capsys: Any) -> None:
    """A replica ignores maxmemory: the load completes, and the run fails naming the used memory and the limit."""
    target = target_of(servers, "valkey-9.1")
    client = target.client()
    # Below what the target uses already: whatever the load adds (a server used by earlier tests may hold a
    # replication backlog from them, so the load can add as little as its keys, measured here ~30 KB), the target ends
    # over its limit. A primary under noeviction still takes what migrate sends before the load (no write).
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    try:
        code, _, err = reload_aof(capsys, target, CORPUS / "valkey-9.1-rdb-base")
    finally:
        client.config_set("maxmemory", 0)
    line = error_line(err)
    assert code == ExitCode.MIGRATION and "over its maxmemory" in line, line
    assert_primary_as_before(target)


def test_load_via_replication_is_refused_where_it_does_not_apply(servers: ServerFactory, capsys: Any) -> None:
    target = target_of(servers, "valkey-9.1")
    code, _, err = reload_aof(capsys, target, CORPUS / "redis-7.0-rdb-base", "--db-map", "1:5")
    assert code == ExitCode.CONFIG and "--db or --db-map" in error_line(err)
    from migrate.cli import run_cli

    code = run_cli(["run", "--strategy", "replay", "--source", target.url, "--target", target.url, "--load-via",
                    "replication"])
    assert code == ExitCode.CONFIG and "--load-via replication needs" in error_line(capsys.readouterr().err)


# -- one RDB snapshot: --from-rdb FILE, or a live standalone source ----------------------------------------------------


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("name", [f.name for f in RDB_CORPUS])
def test_each_rdb_file_loads_through_replication_as_its_oracle_holds_it(servers: ServerFactory, capsys: Any,
                                                                         tmp_path: Path, name: str,
                                                                         target_name: str) -> None:
    """The hand-built corpus (RDB 1-9: zipmaps, ziplists, intsets, streams whose counters disagree with their
    entries, empty collections) through the target's own loader: what the oracle holds, but the empty keys (skipped
    as servers skip them) and, on Valkey 9.1, the stale length of the streams it refuses (written again from their
    entries: groups and consumers kept)."""
    corpus_file = BY_NAME[name]
    truth = oracle_state(servers, corpus_file, tmp_path)
    target = target_of(servers, target_name)
    code, report, err = _reload_rdb(capsys, target, path_of(corpus_file))
    assert code == 0, err
    assert sorted(i["key"] for db in report["dbs"] for i in db["empty"]) == sorted(corpus_file.empty)
    fixed = set(corpus_file.rebuilt) if target_name == "valkey-9.1" else set()
    gone = {k for k in corpus_file.differs if k in corpus_file.empty}
    counters = ("length", "entries_added", "max_deleted_id")
    got = canonical_state(target.client())
    assert same_state(without(got, fixed, counters), without(without(truth, gone), fixed, counters)) == []
    for key in fixed:
        stream = read_stream(target.client(), key.encode())
        assert stream.length == len(stream.entries)
    assert_primary_as_before(target)


@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "streamed"])
def test_a_live_standalone_source_loads_through_replication(servers: ServerFactory, capsys: Any,
                                                            spool: bool) -> None:
    source = servers.get("redis-7.0", "--repl-diskless-sync-delay", "0")
    written = fill(source.client(), 2000)
    target = target_of(servers, "valkey-9.1")
    target.client().set("stale", "replaced by the full sync")
    code, report, err = _reload(capsys, target, "--source", source.url, "--load-via", "replication",
                                *(() if spool else ("--no-spool",)))
    assert code == 0, err
    assert report["totals"]["copied"] == written.total
    assert diff(source.client(), target.client()) == []
    assert_primary_as_before(target)


def test_keys_the_target_cannot_hold_stop_a_snapshot_before_its_sync_ends(servers: ServerFactory, capsys: Any,
                                                                         tmp_path: Path) -> None:
    """Hashes with field TTLs (Redis 8.0) into Valkey 8.1: named under fail, the target keeps its data; loaded
    without their TTLs under lossy, named as changed."""
    source = servers.get("redis-8.0.6")
    written = fill(source.client(), 300, field_ttls=True)
    source.client().save()
    rdb = Path(source.dir) / "dump.rdb"
    target = target_of(servers, "valkey-8.1")
    target.client().set("keep", "me")
    code, _, err = _reload_rdb(capsys, target, rdb)
    line = error_line(err)
    assert code == ExitCode.PROBLEMS and "keys of the snapshot cannot be loaded" in line, line
    assert "nothing was flushed" in line and target.client().keys() == [b"keep"]
    assert_primary_as_before(target)
    code, report, err = _reload_rdb(capsys, target, rdb, "--on-incompatible", "lossy")
    assert code == 0, err
    changed = {i["key"].encode() for db in report["dbs"] for i in db["changed"]}
    assert changed == written.field_ttl_keys and target.client().dbsize() == written.total
    assert_primary_as_before(target)


def test_a_corrupt_rdb_file_is_refused_and_the_target_keeps_its_data(servers: ServerFactory, capsys: Any,
                                                                     tmp_path: Path) -> None:
    whole = (HANDBUILT / "rdb9-trimmed-streams.rdb").read_bytes()
    cut = tmp_path / "cut.rdb"
    cut.write_bytes(whole[:-20])
    target = target_of(servers, "valkey-9.1")
    target.client().set("keep", "me")
    code, _, err = _reload_rdb(capsys, target, cut)
    line = error_line(err)
    assert code == ExitCode.BAD_INPUT and "not touched" in line, line
    assert target.client().keys() == [b"keep"]
    assert_primary_as_before(target)


def test_several_files_and_clusters_are_refused(servers: ServerFactory, capsys: Any) -> None:
    target = target_of(servers, "valkey-9.1")
    rdb = HANDBUILT / "rdb9-trimmed-streams.rdb"
    code, _, err = _reload_rdb(capsys, target, rdb, "--from-rdb", str(rdb))
    assert code == ExitCode.CONFIG and "one snapshot" in error_line(err)


def _reload_rdb(capsys: Any, target: Any, path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    return _reload(capsys, target, "--from-rdb", str(path), "--load-via", "replication", *extra)


def test_a_kill_before_the_sync_ends_leaves_the_targets_data(servers: ServerFactory, tmp_path: Path) -> None:
    """migrate killed (SIGKILL) while the target waits for the end of its sync (the check pass of a long AOF): the
    target keeps its data; it is left a replica of an address that is gone, as the plan says, and REPLICAOF NO ONE
    gives it back as it was."""
    import signal
    import subprocess
    import sys
    import time

    from hiredis import pack_command

    aof = _write_aof(tmp_path / "aof", b"".join(pack_command((b"SET", b"k%d" % i, b"v")) for i in range(600_000)))
    target = servers.fresh("valkey-9.1")
    target.client().set("keep", "me")
    process = subprocess.Popen([sys.executable, "-m", "migrate", "run", "--strategy", "reload", "--from-aof", str(aof),
                                "--target", target.url, "--yes", "--no-progress", "--load-via", "replication"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if target.client().info("replication").get("master_sync_in_progress") == 1:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before the sync was seen in progress"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    client = target.client()
    assert client.info("replication")["role"] == "slave" and client.keys() == [b"keep"]
    client.execute_command("REPLICAOF", "NO", "ONE")
    assert client.info("replication")["role"] == "master" and client.get("keep") == b"me"


def test_a_target_that_dies_mid_stream_fails_the_load_soon(servers: ServerFactory, tmp_path: Path) -> None:
    """The target killed while it applies the AOF's commands: one error line (its link to migrate went down, the
    data may be a partial load), exit 4, within seconds of LOST_SECONDS, not at --sync-timeout."""
    import signal
    import subprocess
    import sys
    import time

    from hiredis import pack_command

    from migrate.run.replicaload import LOST_SECONDS

    aof = _write_aof(tmp_path / "aof", b"".join(pack_command((b"SET", b"k%d" % i, b"v")) for i in range(600_000)))
    target = servers.fresh("valkey-9.1")
    process = subprocess.Popen([sys.executable, "-m", "migrate", "run", "--strategy", "reload", "--from-aof", str(aof),
                                "--target", target.url, "--yes", "--no-progress", "--load-via", "replication"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if target.client().info("replication").get("master_link_status") == "up" and target.client().dbsize():
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before the stream was seen"
        assert target.process is not None
        target.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - killed < LOST_SECONDS + 20
    line = error_line(err)
    assert process.returncode == ExitCode.MIGRATION and "link to migrate went down" in line, line
    assert "partial load" in line, line
