"""Every real persistence file loads (issue 11): refused payloads rebuilt, empty keys skipped, old formats read.

The hand-built RDB corpus (fixtures/rdb_corpus.py, fixtures/rdb/handbuilt/) covers what no server of the matrix
writes: RDB 1-8, zipmaps, intsets, ziplists, quicklists, streams whose counters disagree with their entries, empty
collections. Each file is loaded by its oracle (a matrix server started on it: the ground truth) and reloaded
through `migrate run --strategy reload --from-rdb` into Valkey 8.1 and 9.1: the targets must hold what the oracle
holds, except what the corpus documents (empty keys Redis 6.0 keeps; the stale length of a rebuilt stream).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fixtures.aof_state import canonical_state, same_state
from fixtures.rdb_corpus import CORPUS, CorpusFile
from migrate.cli import run_cli
from migrate.errors import ExitCode
from migrate.rdb.reader import RdbReader
from migrate.rdb.records import KeyRecord
from migrate.rdb.summary import summarize
from migrate.run import OnIncompatible, RunConfig, RunOptions, Strategy, run
from tests.conftest import ServerFactory
from tests.rdb_builders import dump_payload
from tests.readback import read_stream
from tests.run_compare import differences
from tests.test_run_matrix import config

ROOT = Path(__file__).resolve().parent.parent
HANDBUILT = ROOT / "fixtures" / "rdb" / "handbuilt"
TARGETS = ("valkey-8.1", "valkey-9.1")
BY_NAME = {f.name: f for f in CORPUS}


def path_of(corpus_file: CorpusFile) -> Path:
    return HANDBUILT / f"{corpus_file.name}.rdb"


def oracle_state(servers: ServerFactory, corpus_file: CorpusFile, tmp_path: Path) -> dict[str, Any]:
    folder = tmp_path / "oracle"
    folder.mkdir()
    shutil.copy(path_of(corpus_file), folder / "dump.rdb")
    oracle = servers.fresh(corpus_file.oracle, "--dir", str(folder), "--dbfilename", "dump.rdb")
    try:
        return canonical_state(oracle.client())
    finally:
        oracle.stop()


def reload_file(target: Any, path: Path, tmp_path: Path, **options: Any) -> Any:
    common = config(target, target, tmp_path).common
    return run(RunConfig(common.__class__(None, common.target, common.connection),
                         RunOptions(strategy=Strategy.RELOAD, from_rdb=path, yes=True, progress=False, **options)))


def without(state: dict[str, Any], keys: set[str], fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """The state without some keys, or (with `fields`) without some fields of their stream values."""
    dbs = {}
    for db, entries in state["dbs"].items():
        kept = {}
        for key, entry in entries.items():
            if key in keys and not fields:
                continue
            if key in keys:
                value = {k: v for k, v in entry["value"].items() if k not in fields}
                value["groups"] = [{k: v for k, v in g.items() if k != "entries_read"} for g in value["groups"]]
                entry = {**entry, "value": value}
            kept[key] = entry
        dbs[db] = kept
    return {**state, "dbs": dbs}


def test_the_committed_files_are_what_the_corpus_writes() -> None:
    for corpus_file in CORPUS:
        assert path_of(corpus_file).read_bytes() == corpus_file.data(), corpus_file.name
        assert RdbReader(path_of(corpus_file)).rdb_version == corpus_file.version


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("name", [f.name for f in CORPUS])
def test_each_file_loads_as_its_oracle_holds_it(servers: ServerFactory, tmp_path: Path, name: str,
                                                target_name: str) -> None:
    corpus_file = BY_NAME[name]
    truth = oracle_state(servers, corpus_file, tmp_path)
    target = servers.get(target_name)
    lossy = bool(corpus_file.rebuilt) and target_name == "valkey-9.1"  # a rebuilt stream loses consumer times
    result = reload_file(target, path_of(corpus_file), tmp_path,
                         on_incompatible=OnIncompatible.LOSSY if lossy else OnIncompatible.FAIL)
    assert sorted(i.key for i in result.empty) == sorted(corpus_file.empty)
    assert all(i.reason.startswith("empty, skipped") for i in result.empty)
    rebuilt = set(corpus_file.rebuilt) if target_name == "valkey-9.1" else set()
    assert {i.key for d in result.dbs for i in d.rebuilt} == rebuilt
    assert result.rebuilt == len(rebuilt)
    assert all(i.reason == "rewritten: the target refused the payload (ERR Bad data format)"
               for d in result.dbs for i in d.rebuilt)
    got = canonical_state(target.client())
    gone = {k for k in corpus_file.differs if k in corpus_file.empty}
    counters = ("length", "entries_added", "max_deleted_id")
    expected = without(without(truth, gone), rebuilt, counters)
    assert same_state(without(got, rebuilt, counters), expected) == []
    for key in rebuilt:  # rebuilt, a stream's length is its entries
        stream = read_stream(target.client(), key.encode())
        assert stream.length == len(stream.entries)


def test_a_stream_the_target_refuses_and_cannot_rebuild_whole_stops_before_the_flush(servers: ServerFactory,
                                                                                      capsys: Any) -> None:
    """x:rc1-with-group: Valkey 9.1 refuses its payload (length 10, 8 entries); rebuilt with commands, its
    consumers' seen/active times cannot be kept: under the default --on-incompatible fail the check pass names it
    and nothing is flushed."""
    target = servers.get("valkey-9.1")
    target.client().set("keep", "me")
    code = run_cli(["run", "--strategy", "reload", "--from-rdb", str(HANDBUILT / "rdb9-trimmed-streams.rdb"),
                    "--target", target.url, "--yes", "--no-progress"])
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert code == ExitCode.PROBLEMS and "x:rc1-with-group" in line and "nothing was flushed" in line, err
    assert "its length is 10 but it holds 8 entries" in line and "x:xdel-rc1" not in line
    assert target.client().keys() == [b"keep"]


def test_replay_rebuilds_a_payload_the_target_refuses(servers: ServerFactory, tmp_path: Path) -> None:
    """A Redis 7.0 that loaded a Redis 5.0-rc1 stream (its length above its entries) DUMPs it as it holds it;
    Valkey 9.1 refuses that payload; replay decodes it and rebuilds it with commands."""
    source, target = servers.get("redis-7.0"), servers.get("valkey-9.1")
    with RdbReader(HANDBUILT / "rdb9-trimmed-streams.rdb") as reader:
        records = {r.key: r for r in reader.records() if isinstance(r, KeyRecord)}
    for key in (b"x:xdel-rc1", b"x:header-stale", b"x:consistent"):
        source.client().restore(key, 0, dump_payload(15, records[key].payload, 9))
    source.client().set("plain", "v")
    result = run(config(source, target, tmp_path, on_incompatible=OnIncompatible.LOSSY))
    rebuilt = {i.key for d in result.dbs for i in d.rebuilt}
    assert rebuilt == {"x:xdel-rc1", "x:header-stale"} and result.rebuilt == 2
    assert result.dbs[0].by_route.get("rewrite-refused") == 2
    assert result.copied == 4 and not result.skipped and not result.changed
    for key in (b"x:xdel-rc1", b"x:header-stale"):
        src, dst = read_stream(source.client(), key), read_stream(target.client(), key)
        assert dst.entries == src.entries and dst.last_id == src.last_id and dst.length == len(dst.entries)
    assert differences(source.client(), target.client(), ignore=[b"x:xdel-rc1", b"x:header-stale"]) == []


def test_replay_from_redis_6_skips_the_empty_keys_it_holds(servers: ServerFactory, tmp_path: Path,
                                                           capsys: Any) -> None:
    """Redis 6.0 keeps the empty collections of a file it loads (7.0+ skip them) and DUMPs them; every target
    refuses those payloads: replay counts and names them, as a server loading the file would skip them.

    Redis 6.0 also dies on MEMORY USAGE of an empty list (objectComputeSize follows the quicklist's NULL head;
    measured on 6.0.16): preflight's census, the replay's size probe (default --big-key-threshold) and verify at
    --level full run against it here, and the source must still answer after each (migrate.sizes guards them)."""
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(HANDBUILT / "rdb9-empty-keys.rdb", folder / "dump.rdb")
    source = servers.fresh("redis-6.0", "--dir", str(folder), "--dbfilename", "dump.rdb")
    target = servers.get("valkey-8.1")
    empties = BY_NAME["rdb9-empty-keys"].empty
    assert all(source.client().exists(k) for k in empties)  # Redis 6.0 holds them
    urls = ["--source", source.url, "--target", target.url]
    assert run_cli(["preflight", *urls, "--full", "--format", "json"]) in (0, 5)
    census = json.loads(capsys.readouterr().out)["census"]
    assert source.client().ping()
    lists = [db["types"]["list"] for db in census["dbs"].values() if "list" in db["types"]]
    assert census["complete"] and lists and all(t["memory"] for t in lists)  # non-empty lists were still sized
    code = run_cli(["run", *urls, "--no-progress", "--format", "json", "--checkpoint", str(tmp_path / "cp.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert source.client().ping()
    report = json.loads(out)
    named = sorted(i["key"] for db in report["dbs"] for i in db["empty"])
    assert named == sorted(empties) and report["totals"]["empty"] == len(empties)
    assert report["totals"]["skipped"] == 0 and report["totals"]["copied"] == 3
    assert differences(source.client(), target.client(), ignore=[k.encode() for k in empties]) == []
    code = run_cli(["verify", *urls, "--level", "full", "--format", "json", "--rounds", "0"])
    verdict = json.loads(capsys.readouterr().out)
    assert source.client().ping()  # alive after every verb
    missing = sorted(d["key"] for d in verdict["divergent_keys"])
    # empty on the source, absent on the target
    assert code == 5 and missing == sorted(empties), verdict["divergent_keys"]


def test_the_summary_and_preflight_count_empty_keys(capsys: Any) -> None:
    summary = summarize(HANDBUILT / "rdb9-empty-keys.rdb")
    assert summary.empty is not None and summary.empty.skipped == 10 and summary.empty.refused == 0
    refused = summarize(HANDBUILT / "rdb9-empty-intset-zipmap.rdb").empty
    assert refused is not None and (refused.skipped, refused.refused) == (0, 2)
    for name, severity, keys in (("rdb9-empty-keys", "info", 10), ("rdb9-empty-intset-zipmap", "warning", 2)):
        code = run_cli(["preflight", "--rdb-file", str(HANDBUILT / f"{name}.rdb"), "--target-version", "valkey:9.1",
                        "--format", "json"])
        finding = next(f for f in json.loads(capsys.readouterr().out)["findings"] if f["code"] == "RDB_EMPTY_KEYS")
        assert code == 0 and finding["severity"] == severity and finding["evidence"]["keys"] == keys
