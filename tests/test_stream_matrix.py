"""Real streams from real sources, translated and applied to real targets, then both sides read back and compared.

Each source of the matrix writes traffic of every kind (three databases, MULTI/EXEC, EVAL/EVALSHA and FCALL that
write, every form of expiry and keys expiring, streams with consumer groups, FLUSHALL/FLUSHDB/SWAPDB/MOVE/COPY, field
TTLs and vector sets on Redis 8) into its AOF; the AOF is the stream. Under each policy the target must equal the
source, except exactly the keys the translation named, each exactly as the policy says.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures.sandbox import LocalServer
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.errors import IncompatibleDataError, MigrationError
from migrate.facts.types import CORE_TYPES
from migrate.run.options import OnIncompatible
from migrate.stream import (
    Applier,
    ApplyOptions,
    DbMap,
    TargetErrors,
    TargetProfile,
    Translator,
    argv_of,
    marker_key,
    read_marker,
    remove_marker,
)
from migrate.stream.table import TABLE
from tests import matrix
from tests import stream_support as ss
from tests.readback import raw

SETTINGS = ConnectionSettings()
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Capture:
    name: str
    commands: list[ss.Command]
    snapshot: dict[Any, Any]
    traffic: ss.Traffic
    ended_ms: int
    dir: Path


_CAPTURES: dict[str, Capture] = {}


def capture(servers: Any, name: str) -> Capture:
    """Traffic on a fresh source writing its AOF (once per source per session), the AOF read back, the source read."""
    if name not in _CAPTURES:
        source: LocalServer = servers.fresh(name, *ss.AOF_ARGS)
        traffic = ss.generate(source.client())
        ended = int(time.time() * 1000)
        snapshot = ss.snapshot(source.client())
        _CAPTURES[name] = Capture(name, ss.read_aof(source.dir), snapshot, traffic, ended, source.dir)
        source.stop()
    return _CAPTURES[name]


def apply(commands: list[ss.Command], target: LocalServer, translator: Translator, stream_id: str = "matrix",
          options: ApplyOptions | None = None, received_ms: int | None = None) -> None:
    with Applier(parse_endpoint(target.url), SETTINGS, stream_id, options, tally=translator.tally) as applier:
        applier.apply_all(translator.translate(commands, received_ms=received_ms))


def apply_capture(cap: Capture, target: LocalServer, translator: Translator, **kwargs: Any) -> None:
    # the AOF has no timestamps: a relative TTL in it (Redis 6.0's RESTORE) counts from the end of the traffic
    apply(cap.commands, target, translator, received_ms=cap.ended_ms, **kwargs)


def named(log: Any) -> set[tuple[int, str]]:
    return {(issue.db, issue.key) for issue in log.issues}


def as_bytes(keys: set[tuple[int, str]]) -> set[tuple[int, bytes]]:
    return {(db, key.encode()) for db, key in keys}


def expected_names(cap: Capture, target: TargetProfile, policy: OnIncompatible) -> tuple[set[Any], set[Any]]:
    """(skipped, changed) the translation must name on this target under this policy."""
    field_ttls = set() if target.identity.hash_field_ttl else cap.traffic.field_ttl_keys
    if policy is OnIncompatible.SKIP:
        return cap.traffic.vector_keys | field_ttls, set()
    return set(cap.traffic.vector_keys), field_ttls


def loose(cap: Capture) -> set[tuple[int, bytes]]:
    return {(db, b"ttl:restored") for db in (0, 1, 2)} if cap.name == "redis-6.0" else set()


@pytest.mark.parametrize("policy", list(OnIncompatible))
@pytest.mark.parametrize(("source", "target"), matrix.pairs())
def test_stream_to_target(servers: Any, source: str, target: str, policy: OnIncompatible) -> None:
    cap = capture(servers, source)
    server = servers.get(target)
    profile = TargetProfile.of(server.client())
    translator = Translator(profile, policy=policy)
    skipped, changed = expected_names(cap, profile, OnIncompatible.LOSSY if policy is OnIncompatible.FAIL else policy)
    if policy is OnIncompatible.FAIL and (skipped or changed):
        check_fail(cap, server, translator)
        return
    apply_capture(cap, server, translator)
    assert named(translator.tally.skipped) == skipped
    assert named(translator.tally.changed) == changed
    assert translator.tally.failed.count == 0
    field_ttl_keys = as_bytes(skipped | changed) - as_bytes(cap.traffic.vector_keys)
    diffs = ss.differences(cap.snapshot, ss.snapshot(server.client()), ttl_tolerance_ms=_tolerance(cap),
                           ignore_field_ttls=field_ttl_keys, loose_ttls=loose(cap))
    gone = as_bytes(cap.traffic.vector_keys)
    if policy is OnIncompatible.SKIP:
        gone |= as_bytes(cap.traffic.field_ttl_only) & field_ttl_keys
    assert diffs == dict.fromkeys(sorted(gone), "missing on the target")
    marker = read_marker(server.client(), "matrix")
    assert marker is not None and (marker.offset, marker.source_db) == (cap.commands[-1][1], translator.db)


def _tolerance(cap: Capture) -> int:
    return 100 if cap.name == "redis-6.0" else 0  # 6.0 has no PEXPIRETIME: its expiries are read as now + PTTL


def check_fail(cap: Capture, server: LocalServer, translator: Translator) -> None:
    """fail: the first incompatible command stops the stream; everything before it is applied, nothing after."""
    with pytest.raises(IncompatibleDataError) as err:
        apply_capture(cap, server, translator)
    offset = int(err.value.message.split("source offset ")[1].split(")")[0])
    first = next(i for i, (_, end) in enumerate(cap.commands) if end == offset)
    argv = cap.commands[first][0]
    assert err.value.message.startswith(f"{_normalized_name(argv)} on ")
    marker = read_marker(server.client(), "matrix")
    assert marker is not None and marker.offset < offset
    assert marker.offset == max(end for _, end in cap.commands[:first]) or cap.commands[first - 1][0][0] == b"MULTI"
    assert server.client().exists("once:cnt") == 0  # written after the refused command: not applied


def _normalized_name(argv: tuple[bytes, ...]) -> str:
    return {"HEXPIRE": "HPEXPIREAT"}.get(argv[0].decode().upper(), argv[0].decode().upper())


def test_fail_inside_a_group_refuses_the_group_and_resumes_lossy(servers: Any) -> None:
    """A MULTI/EXEC holding an incompatible command: under fail nothing of it is applied and the marker stops before
    it; resumed from the marker under lossy, the whole group is applied together."""
    source = servers.fresh("redis-8.0.6", *ss.AOF_ARGS)
    c = source.client()
    c.set("before", 1)
    pipe = c.pipeline(transaction=True)
    pipe.set("grp:a", 1)
    pipe.execute_command("HSETEX", "fttl:grp", "EX", 3600, "FIELDS", 1, "f", "v")
    pipe.incr("grp:c")
    pipe.execute()
    c.incr("after")
    commands = ss.read_aof(source.dir)
    snapshot = ss.snapshot(source.client(), (0,))
    source.stop()
    target = servers.get("valkey-8.1")
    profile = TargetProfile.of(target.client())
    with pytest.raises(IncompatibleDataError, match="HSETEX on fttl:grp in db 0"):
        apply(commands, target, Translator(profile))
    assert sorted(target.client().keys()) == sorted([b"before", marker_key("matrix")])
    marker = read_marker(target.client(), "matrix")
    assert marker is not None
    rest = [(argv, end) for argv, end in commands if end > marker.offset]
    assert rest[0][0] == (b"MULTI",)
    resumed = Translator(profile, policy=OnIncompatible.LOSSY, source_db=marker.source_db)
    apply(rest, target, resumed)
    assert ss.differences(snapshot, ss.snapshot(target.client(), (0,)),
                          ignore_field_ttls={(0, b"fttl:grp")}) == {}
    assert named(resumed.tally.changed) == {(0, "fttl:grp")}


def test_replication_stream_with_relative_expiries(servers: Any) -> None:
    """Redis 6.0's replication stream (not its AOF) carries EXPIRE, SETEX, SET EX relative to when it is applied:
    the translation makes them absolute from the time each command was received, so the target's expiries equal the
    source's. PINGs are dropped and counted, PUBLISH is dropped unless forwarded."""
    source = servers.fresh("redis-6.0", "--repl-diskless-sync", "no", "--repl-ping-replica-period", "1")
    tap = ss.ReplicaTap("127.0.0.1", source.port)
    c = source.client()
    c.execute_command("SET", "ex", "v", "EX", 3600)
    c.execute_command("SET", "px", "v", "PX", 3_600_000, "NX")
    c.execute_command("SETEX", "setex", 3600, "v")
    c.execute_command("PSETEX", "psetex", 3_600_000, "v")
    c.set("expire", "v")
    c.execute_command("EXPIRE", "expire", 3600)
    c.set("pexpire", "v")
    c.execute_command("PEXPIRE", "pexpire", 3_600_000)
    c.execute_command("RESTORE", "restored", 3_600_000, c.dump("ex"))
    c.publish("channel", "message")
    c.incr("counter")
    time.sleep(2.5)  # a few PINGs (repl-ping-replica-period 1)
    recorded = tap.stop()
    snapshot = ss.snapshot(source.client(), (0,))
    assert {argv[0] for argv, _, _ in recorded} >= {b"SET", b"SETEX", b"EXPIRE", b"PUBLISH", b"PING"}
    target = servers.get("valkey-8.0")
    translator = Translator(TargetProfile.of(target.client()))
    with Applier(parse_endpoint(target.url), SETTINGS, "repl", tally=translator.tally) as applier:
        for argv, end, received in recorded:
            unit = translator.feed(argv, end, received)
            if unit is not None:
                applier.apply(unit)
        applier.flush()
    assert ss.differences(snapshot, ss.snapshot(target.client(), (0,)), ttl_tolerance_ms=50) == {}
    assert translator.tally.dropped["ping"] >= 1 and translator.tally.dropped["publish"] == 1
    assert translator.tally.rewritten.keys() >= {"set", "setex", "psetex", "expire", "pexpire", "restore"}
    marker = read_marker(target.client(), "repl")
    assert marker is not None and marker.offset == recorded[-1][1]


def test_module_commands_are_incompatible_and_named(servers: Any) -> None:
    """RediSearch 1.2 on Redis 7.0 (a real module): FT.CREATE and FT.ADD (propagated as FT.SAFEADD) have no
    counterpart on Valkey; under skip the index and the document are named, everything else is applied."""
    module = servers.binaries["redis-7.0"].modules.get("redisearch")
    if module is None:
        pytest.skip("RediSearch is not provisioned for redis-7.0")
    # RediSearch refuses to load with an AOF unless the AOF has an RDB preamble: the commands are in the incr file
    source = servers.fresh("redis-7.0", "--appendonly", "yes", "--aof-use-rdb-preamble", "yes", "--appendfsync",
                           "always", "--loadmodule", module)
    c = source.client()
    c.set("plain", 1)
    c.execute_command("FT.CREATE", "idx", "SCHEMA", "title", "TEXT")
    c.execute_command("FT.ADD", "idx", "doc1", "1.0", "FIELDS", "title", "hello world")
    c.incr("after")
    commands = ss.read_aof(source.dir)
    assert [argv[0] for argv, _ in commands if argv[0].startswith(b"FT.")] == [b"FT.CREATE", b"FT.SAFEADD"]
    snapshot = ss.snapshot(source.client(), (0,))
    source.stop()
    target = servers.get("valkey-9.1")
    profile = TargetProfile.of(target.client())
    with pytest.raises(IncompatibleDataError, match=r"FT\.CREATE on idx in db 0.*search module command"):
        Translator(profile).feed(next(argv for argv, _ in commands if argv[0] == b"FT.CREATE"), 1)
    translator = Translator(profile, policy=OnIncompatible.SKIP)
    apply(commands, target, translator)
    assert named(translator.tally.skipped) == {(0, "idx"), (0, "doc1")}
    core = {k: v for k, v in snapshot.items() if v[0] in CORE_TYPES and k != (0, b"doc1")}
    assert ss.differences(core, ss.snapshot(target.client(), (0,))) == {}


def test_db_map_bijection(servers: Any) -> None:
    """Databases 0, 1, 2 mapped to 5, 6, 7: FLUSHALL becomes FLUSHDB of each, SWAPDB 1 2 becomes SWAPDB 6 7, MOVE and
    COPY ... DB follow the map; each source database equals its target database."""
    cap = capture(servers, "redis-8.0.6")
    target = servers.get("valkey-9.1")
    translator = Translator(TargetProfile.of(target.client()), policy=OnIncompatible.SKIP,
                            db_map=DbMap(((0, 5), (1, 6), (2, 7))))
    apply_capture(cap, target, translator)
    mapped = {(db + 5, key): value for (db, key), value in cap.snapshot.items()}
    diffs = ss.differences(mapped, ss.snapshot(target.client(), (0, 5, 6, 7)))
    assert diffs == dict.fromkeys(sorted((db + 5, k) for db, k in as_bytes(cap.traffic.vector_keys)),
                                  "missing on the target")
    assert translator.tally.rewritten.keys() >= {"flushall", "swapdb", "move", "copy"}


def test_without_the_marker_groups_stay_transactions(servers: Any) -> None:
    """marker=False: plain pipelining, source MULTI/EXEC groups sent as MULTI/EXEC; same result, no marker."""
    cap = capture(servers, "redis-7.0")
    target = servers.get("valkey-8.0")
    translator = Translator(TargetProfile.of(target.client()))
    apply_capture(cap, target, translator, options=ApplyOptions(marker=False, batch_commands=64))
    assert ss.differences(cap.snapshot, ss.snapshot(target.client())) == {}
    assert read_marker(target.client(), "matrix") is None


def test_applying_a_batch_twice_shows(servers: Any) -> None:
    """The comparison the exactly-once tests rely on sees a double apply (INCR, LPUSH are not idempotent)."""
    cap = capture(servers, "redis-8.0.2")
    target = servers.get("valkey-9.1")
    profile = TargetProfile.of(target.client())
    apply_capture(cap, target, Translator(profile, policy=OnIncompatible.SKIP))
    tail = [(argv, end) for argv, end in cap.commands if argv[0] in (b"INCR", b"LPUSH")][-20:]
    apply(tail, target, Translator(profile, policy=OnIncompatible.SKIP), stream_id="again")
    diffs = ss.differences(cap.snapshot, ss.snapshot(target.client()))
    assert (0, b"once:cnt") in diffs and (0, b"once:list") in diffs


def test_marker_survives_flushall_and_swapdb(servers: Any) -> None:
    target = servers.get("valkey-8.1")
    translator = Translator(TargetProfile.of(target.client()))
    stream = [argv_of(a) for a in (("SET", "a", 1), ("FLUSHALL",), ("SET", "b", 1), ("SWAPDB", 0, 1),
                                   ("SET", "c", 1), ("SWAPDB", 1, 2))]
    options = ApplyOptions(batch_commands=1)  # a batch per command: the marker exists before each SWAPDB
    with Applier(parse_endpoint(target.url), SETTINGS, "swap", options, tally=translator.tally) as applier:
        applier.apply_all(translator.translate((argv, i + 1) for i, argv in enumerate(stream)))
    for db in (1, 2):
        assert target.client(db=db).exists(marker_key("swap")) == 0, f"a stale marker in db {db}"
    assert read_marker(target.client(), "swap") is not None
    assert target.client(db=2).get("b") == b"1" and target.client().get("c") == b"1"
    assert remove_marker(target.client(), "swap") and read_marker(target.client(), "swap") is None


def test_target_errors_inside_a_batch(servers: Any) -> None:
    """A command the target refuses at run time (here INCR on a value the target holds differently): the rest of
    the batch and the marker are applied; stop raises naming the command and key, record names it and goes on."""
    target = servers.get("valkey-8.1")
    target.client().set("diverged", "not-a-number")
    stream = [argv_of(a) for a in (("SET", "a", 1), ("INCR", "diverged"), ("SET", "b", 1))]
    profile = TargetProfile.of(target.client())
    translator = Translator(profile)
    refused = r"refused 1 command\(s\).*first INCR diverged in db 0: ERR value is not"
    with pytest.raises(MigrationError, match=refused), \
            Applier(parse_endpoint(target.url), SETTINGS, "err", tally=translator.tally) as applier:
        applier.apply_all(translator.translate((argv, i + 1) for i, argv in enumerate(stream)))
    assert target.client().get("b") == b"1"
    marker = read_marker(target.client(), "err")
    assert marker is not None and marker.offset == 3
    recorded = Translator(profile)
    options = ApplyOptions(on_error=TargetErrors.RECORD)
    with Applier(parse_endpoint(target.url), SETTINGS, "err2", options, tally=recorded.tally) as applier:
        applier.apply_all(recorded.translate((argv, i + 1) for i, argv in enumerate(stream)))
    assert [(i.key, i.reason.split(":")[0]) for i in recorded.tally.failed.issues] == [("diverged", "INCR")]


def test_a_command_refused_when_queued_applies_nothing(servers: Any) -> None:
    """An error when queuing (here a command the target does not have, forced through a wrong command set) aborts
    the whole transaction: nothing of the batch is applied and the marker does not move."""
    target = servers.get("valkey-8.0")
    profile = TargetProfile.of(target.client())
    assert profile.commands is not None
    wrong = TargetProfile(profile.identity, profile.commands | {"hsetex"})
    translator = Translator(wrong)
    stream = [argv_of(a) for a in (("SET", "a", 1), ("HSETEX", "h", "FIELDS", 1, "f", "v"), ("SET", "b", 1))]
    with pytest.raises(MigrationError, match=r"refused HSETEX h in db 0: ERR unknown command.*nothing of the batch"), \
            Applier(parse_endpoint(target.url), SETTINGS, "abort", tally=translator.tally) as applier:
        applier.apply_all(translator.translate((argv, i + 1) for i, argv in enumerate(stream)))
    assert target.client().keys() == []


def test_lost_connections_are_recovered_by_the_marker(servers: Any) -> None:
    """The target drops the applier's connection again and again (CLIENT KILL) while batches are in flight: the
    applier reconnects, acknowledges what the marker covers, resends the rest; nothing is applied twice."""
    cap = capture(servers, "redis-8.0.6")
    target = servers.get("valkey-9.1")
    killer = target.client()
    batches = 0

    def kill(offset: int, db: int) -> None:
        nonlocal batches
        batches += 1
        if batches % 5 == 0:
            killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    translator = Translator(TargetProfile.of(target.client()), policy=OnIncompatible.LOSSY)
    options = ApplyOptions(batch_commands=20, window=3)
    with Applier(parse_endpoint(target.url), ConnectionSettings(retries=10), "kill", options, tally=translator.tally,
                 on_applied=kill) as applier:
        applier.apply_all(translator.translate(cap.commands, received_ms=cap.ended_ms))
    assert batches >= 50 and applier.reconnects >= 5
    field_ttls = set() if translator.target.identity.hash_field_ttl else as_bytes(cap.traffic.field_ttl_keys)
    diffs = ss.differences(cap.snapshot, ss.snapshot(target.client()), ignore_field_ttls=field_ttls)
    assert diffs == dict.fromkeys(sorted(as_bytes(cap.traffic.vector_keys)), "missing on the target")


@pytest.mark.parametrize("name", matrix.SOURCES)
def test_the_table_covers_every_write_command_of_the_source(servers: Any, name: str) -> None:
    """Every command the source flags `write` (COMMAND) has a row: a new release's writes show up here."""
    client = servers.get(name).client()
    writes = set()
    for entry in raw(client, "COMMAND"):
        flags = {bytes(f).decode() for f in entry[2]}
        if "write" in flags:
            writes.add(bytes(entry[0]).decode().lower().split("|")[0])
    assert writes - set(TABLE) == set()


def test_exactly_once_across_kill_9(servers: Any, tmp_path: Path) -> None:
    """The applier runs in its own process and is killed with SIGKILL at random points, again and again; each run
    resumes from the target's marker. INCR/LPUSH-heavy traffic: a batch applied twice or lost would show."""
    source = servers.fresh("redis-8.0.6", *ss.AOF_ARGS)
    traffic = ss.generate(source.client(), counters=1500)
    snapshot = ss.snapshot(source.client())
    commands = ss.read_aof(source.dir)
    source.stop()
    stream = tmp_path / "stream.resp"
    ss.write_commands(commands, stream)
    target = servers.get("valkey-8.1")
    rng = random.Random(20261201)
    offsets: list[int] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tests.stream_worker", target.url, str(stream), "once", "lossy", "15"]
    for run in range(40):
        # bufsize=0: readline() must not read ahead into "done", which communicate() would then never see
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready"), proc.stderr.read() if proc.stderr else b""
        if run < 8:  # kill the first runs while they apply; then let one finish
            time.sleep(rng.uniform(0.02, 0.4))
            proc.kill()
        out, err = proc.communicate(timeout=120)
        if run >= 8 or proc.returncode == 0:
            assert proc.returncode == 0, err.decode()[-2000:]
            assert out.startswith(b"done"), (run, proc.returncode, out, err[-500:])
            break
        marker = read_marker(target.client(), "once")
        offsets.append(marker.offset if marker else 0)
    assert len({o for o in offsets if 0 < o < commands[-1][1]}) >= 4, f"not killed mid-stream: {offsets}"
    field_ttls = as_bytes(traffic.field_ttl_keys)
    diffs = ss.differences(snapshot, ss.snapshot(target.client()), ignore_field_ttls=field_ttls)
    assert diffs == dict.fromkeys(sorted(as_bytes(traffic.vector_keys)), "missing on the target")
    marker = read_marker(target.client(), "once")
    assert marker is not None and marker.offset == commands[-1][1]


def test_verbatim_scripts_evalsha_becomes_eval(servers: Any) -> None:
    """Redis 6.0 with lua-replicate-commands no propagates EVAL and EVALSHA themselves. The target loses its script
    cache mid-stream (as a restarted target would): EVALSHA, sent as EVAL with the body seen earlier, still works."""
    source = servers.fresh("redis-6.0", *ss.AOF_ARGS, "--lua-replicate-commands", "no")
    c = source.client()
    sha = c.execute_command("SCRIPT", "LOAD", "redis.call('lpush', KEYS[1], ARGV[1]); return redis.call('incr', "
                                              "KEYS[2])")
    for i in range(4):
        c.execute_command("EVALSHA", sha, 2, "lua:list", "lua:cnt", i)
    commands = ss.read_aof(source.dir)
    snapshot = ss.snapshot(source.client(), (0,))
    source.stop()
    assert [argv[0] for argv, _ in commands].count(b"EVALSHA") == 3  # the first one went out as EVAL
    target = servers.get("valkey-8.1")
    translator = Translator(TargetProfile.of(target.client()))
    with Applier(parse_endpoint(target.url), SETTINGS, "lua", tally=translator.tally) as applier:
        for argv, end in commands:
            unit = translator.feed(argv, end)
            if unit is not None:
                applier.apply(unit)
            if argv[0] == b"EVAL":
                applier.flush()
                target.client().execute_command("SCRIPT", "FLUSH")
    assert ss.differences(snapshot, ss.snapshot(target.client(), (0,))) == {}
    assert translator.tally.rewritten["evalsha"] == 3
