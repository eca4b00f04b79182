"""The translation without a server: normalization (stage 1), fitting to a release (stage 2), the translator's state,
databases and policy. Real streams from real servers: test_stream_matrix.py."""

from __future__ import annotations

import pytest

from migrate.errors import ConfigError, IncompatibleDataError
from migrate.identity import ServerIdentity
from migrate.run.options import OnIncompatible
from migrate.run.tally import KeyIssue
from migrate.stream import DbMap, IssueLog, RespWriter, TargetProfile, Translator, Unit, argv_of
from migrate.stream.fit import Fitter
from migrate.stream.normalize import HANDLERS, Context
from migrate.stream.table import TABLE, Kind

NOW = 1_800_000_000_000


def identity(product: str, version: tuple[int, ...]) -> ServerIdentity:
    return ServerIdentity(product, version, ".".join(map(str, version)), None, "standalone", "master", 16)


VALKEY_80 = TargetProfile(identity("valkey", (8, 0, 1)))
VALKEY_90 = TargetProfile(identity("valkey", (9, 0, 0)))
VALKEY_91 = TargetProfile(identity("valkey", (9, 1, 2)))


def c(*args: object) -> tuple[bytes, ...]:
    return argv_of(args)  # type: ignore[arg-type]


def normalize(*args: object) -> tuple[tuple[bytes, ...], ...]:
    argv = c(*args)
    return HANDLERS[TABLE[argv[0].decode().lower()].handler](argv, Context(now_ms=NOW))


def translate(target: TargetProfile, commands: list[tuple[bytes, ...]],
              **kwargs: object) -> tuple[list[Unit], Translator]:
    translator = Translator(target, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]
    units = list(translator.translate((argv, i + 1) for i, argv in enumerate(commands)))
    return units, translator


def sent(units: list[Unit]) -> list[tuple[int, tuple[bytes, ...]]]:
    return [command for unit in units for command in unit.commands]


# -- stage 1: relative times become absolute, indirect commands their effect -----------------------------------------

@pytest.mark.parametrize(("command", "expected"), [
    (("SET", "k", "v", "EX", 10), [("SET", "k", "v", "PXAT", NOW + 10_000)]),
    (("SET", "k", "v", "NX", "PX", 5), [("SET", "k", "v", "NX", "PXAT", NOW + 5)]),
    (("SET", "k", "v", "EXAT", 7), [("SET", "k", "v", "EXAT", 7)]),
    (("SET", "k", "v"), [("SET", "k", "v")]),
    (("SETEX", "k", 10, "v"), [("SET", "k", "v", "PXAT", NOW + 10_000)]),
    (("PSETEX", "k", 10, "v"), [("SET", "k", "v", "PXAT", NOW + 10)]),
    (("EXPIRE", "k", 10), [("PEXPIREAT", "k", NOW + 10_000)]),
    (("EXPIRE", "k", 10, "GT"), [("PEXPIREAT", "k", NOW + 10_000, "GT")]),
    (("PEXPIRE", "k", 10), [("PEXPIREAT", "k", NOW + 10)]),
    (("GETEX", "k"), []),
    (("GETEX", "k", "PERSIST"), [("PERSIST", "k")]),
    (("GETEX", "k", "EX", 2), [("PEXPIREAT", "k", NOW + 2000)]),
    (("GETEX", "k", "EXAT", 2), [("PEXPIREAT", "k", 2000)]),
    (("GETDEL", "k"), [("DEL", "k")]),
    (("RESTORE", "k", 100, "payload"), [("RESTORE", "k", NOW + 100, "payload", "ABSTTL")]),
    (("RESTORE", "k", 100, "payload", "ABSTTL"), [("RESTORE", "k", 100, "payload", "ABSTTL")]),
    (("RESTORE", "k", 0, "payload", "REPLACE"), [("RESTORE", "k", 0, "payload", "REPLACE")]),
    (("HEXPIRE", "h", 10, "NX", "FIELDS", 1, "f"), [("HPEXPIREAT", "h", NOW + 10_000, "NX", "FIELDS", 1, "f")]),
    (("HPEXPIRE", "h", 10, "FIELDS", 1, "f"), [("HPEXPIREAT", "h", NOW + 10, "FIELDS", 1, "f")]),
    (("HEXPIREAT", "h", 10, "FIELDS", 1, "f"), [("HPEXPIREAT", "h", 10_000, "FIELDS", 1, "f")]),
    (("HGETEX", "h", "FIELDS", 1, "f"), []),
    (("HGETEX", "h", "PERSIST", "FIELDS", 1, "f"), [("HPERSIST", "h", "FIELDS", 1, "f")]),
    (("HGETEX", "h", "EX", 3, "FIELDS", 1, "f"), [("HPEXPIREAT", "h", NOW + 3000, "FIELDS", 1, "f")]),
    (("HGETDEL", "h", "FIELDS", 2, "a", "b"), [("HDEL", "h", "a", "b")]),
    (("MSETEX", 2, "a", 1, "b", 2, "NX", "EX", 5), [("MSETEX", 2, "a", 1, "b", 2, "NX", "PXAT", NOW + 5000)]),
    (("MSETEX", 1, "a", 1, "KEEPTTL"), [("MSETEX", 1, "a", 1, "KEEPTTL")]),
])
def test_stage_one(command: tuple[object, ...], expected: list[tuple[object, ...]]) -> None:
    assert list(normalize(*command)) == [c(*e) for e in expected]


def test_evalsha_becomes_eval_once_the_body_was_seen() -> None:
    ctx = Context(now_ms=NOW)
    body = b"return redis.call('incr', KEYS[1])"
    sha = b"2bab3b661081db58bd2341920e0ba7cf5dc77b25"  # SHA1 of the body (measured: Redis 6.0 SCRIPT LOAD)
    assert HANDLERS["evalsha"](c("EVALSHA", sha, 1, "k"), ctx) == (c("EVALSHA", sha, 1, "k"),)
    HANDLERS["script"](c("SCRIPT", "LOAD", body), ctx)
    assert HANDLERS["evalsha"](c("EVALSHA", sha.upper(), 1, "k"), ctx) == (c("EVAL", body, 1, "k"),)


# -- stage 2: fitting to a release ----------------------------------------------------------------------------------

def test_field_ttl_commands_on_valkey_8() -> None:
    fitter = Fitter(VALKEY_80)
    exact = fitter.fit("hsetex", c("HSETEX", "h", "KEEPTTL", "FIELDS", 1, "f", "v"))
    assert exact is not None and not exact.reason and exact.commands == (c("HSET", "h", "f", "v"),)
    lossy = fitter.fit("hsetex", c("HSETEX", "h", "FNX", "PXAT", 5, "FIELDS", 2, "a", 1, "b", 2))
    assert lossy is not None and lossy.reason and lossy.lossy == (c("HSET", "h", "a", 1, "b", 2),)
    assert lossy.losses == ("field TTLs",)
    ttl = fitter.fit("hpexpireat", c("HPEXPIREAT", "h", 5, "FIELDS", 1, "a"))
    assert ttl is not None and ttl.reason and ttl.lossy == () and ttl.losses == ("field TTLs",)
    persist = fitter.fit("hpersist", c("HPERSIST", "h", "FIELDS", 1, "a"))
    assert persist is not None and not persist.reason and persist.commands == ()


def test_field_ttl_commands_pass_on_valkey_9() -> None:
    fitter = Fitter(VALKEY_91)
    for argv in (c("HSETEX", "h", "PXAT", 5, "FIELDS", 1, "f", "v"), c("HPEXPIREAT", "h", 5, "FIELDS", 1, "a"),
                 c("HPERSIST", "h", "FIELDS", 1, "a"), c("MSETEX", 1, "a", 1, "PXAT", 5)):
        assert fitter.fit(argv[0].decode().lower(), argv) is None


def test_msetex_below_9_1_is_a_set_per_key() -> None:
    out = Fitter(VALKEY_90).fit("msetex", c("MSETEX", 2, "a", 1, "b", 2, "XX", "PXAT", 9))
    assert out is not None and not out.reason
    assert out.commands == (c("SET", "a", 1, "PXAT", 9), c("SET", "b", 2, "PXAT", 9))


def test_redis_only_stream_and_bitop_forms() -> None:
    fitter = Fitter(VALKEY_91)
    keep = fitter.fit("xdelex", c("XDELEX", "s", "IDS", 2, "1-1", "2-1"))
    assert keep is not None and keep.commands == (c("XDEL", "s", "1-1", "2-1"),)
    delref = fitter.fit("xdelex", c("XDELEX", "s", "DELREF", "IDS", 1, "1-1"))
    assert delref is not None and "DELREF" in delref.reason and delref.lossy is None
    ackdel = fitter.fit("xackdel", c("XACKDEL", "s", "g", "KEEPREF", "IDS", 1, "1-1"))
    assert ackdel is not None and ackdel.commands == (c("XACK", "s", "g", "1-1"), c("XDEL", "s", "1-1"))
    option = fitter.fit("xadd", c("XADD", "s", "KEEPREF", "MAXLEN", "=", 5, "1-1", "f", "v"))
    assert option is not None and option.commands == (c("XADD", "s", "MAXLEN", "=", 5, "1-1", "f", "v"),)
    assert fitter.fit("xadd", c("XADD", "s", "MAXLEN", "=", 5, "1-1", "status", "acked")) is None  # data, not option
    acked = fitter.fit("xtrim", c("XTRIM", "s", "MAXLEN", 5, "ACKED"))
    assert acked is not None and "ACKED" in acked.reason
    diff = fitter.fit("bitop", c("BITOP", "DIFF", "d", "a", "b"))
    assert diff is not None and "BITOP DIFF" in diff.reason
    assert fitter.fit("bitop", c("BITOP", "AND", "d", "a", "b")) is None


def test_commands_by_the_targets_command_set() -> None:
    with_json = TargetProfile(VALKEY_80.identity, frozenset({"set", "json.set"}))
    fitter = Fitter(with_json)
    assert fitter.fit("json.set", c("JSON.SET", "k", "$", "1")) is None  # a module provides it on this target
    refused = fitter.fit("get", c("GET", "k"))
    assert refused is not None and "not a command of Valkey 8.0.1" in refused.reason
    by_facts = Fitter(VALKEY_80).fit("json.set", c("JSON.SET", "k", "$", "1"))
    assert by_facts is not None and "redisjson module command" in by_facts.reason


# -- the translator: policy ------------------------------------------------------------------------------------------

STREAM = [c("SET", "a", 1), c("HSETEX", "h", "PXAT", NOW + 5000, "FIELDS", 1, "f", "v"), c("VADD", "v", "VALUES", 1,
                                                                                          1, "e"), c("INCR", "b")]


def test_fail_names_the_command_key_db_and_offset() -> None:
    translator = Translator(VALKEY_80)
    units = translator.translate((argv, i + 10) for i, argv in enumerate(STREAM))
    assert next(units).commands == ((0, c("SET", "a", 1)),)
    with pytest.raises(IncompatibleDataError) as err:
        next(units)
    message = err.value.message
    assert "HSETEX on h in db 0 (source offset 11)" in message and "Valkey 8.0.1" in message
    assert "a lossy translation would drop field TTLs" in message


def test_skip_and_lossy_name_every_key() -> None:
    units, skip = translate(VALKEY_80, STREAM, policy=OnIncompatible.SKIP)
    assert sent(units) == [(0, c("SET", "a", 1)), (0, c("INCR", "b"))]
    assert [(i.key, i.reason.split()[0].rstrip(":")) for i in skip.tally.skipped.issues] == [("h", "HSETEX"),
                                                                                        ("v", "VADD")]
    units, lossy = translate(VALKEY_80, STREAM, policy=OnIncompatible.LOSSY)
    assert sent(units) == [(0, c("SET", "a", 1)), (0, c("HSET", "h", "f", "v")), (0, c("INCR", "b"))]
    assert [i.key for i in lossy.tally.changed.issues] == ["h"]
    assert lossy.tally.changed.issues[0].reason == "HSETEX: lost: field TTLs"
    assert [i.key for i in lossy.tally.skipped.issues] == ["v"]  # no lossy form: skipped under lossy too
    assert len(units) == 4 and units[2].commands == ()  # the offset still advances


def test_a_group_is_one_unit_and_is_decided_as_a_unit() -> None:
    group = [c("MULTI"), c("SET", "a", 1), c("HSETEX", "h", "EX", 5, "FIELDS", 1, "f", "v"), c("INCR", "b"),
             c("EXEC")]
    units, skip = translate(VALKEY_80, group, policy=OnIncompatible.SKIP)
    assert len(units) == 1 and units[0].group and units[0].end_offset == 5
    assert units[0].commands == ((0, c("SET", "a", 1)), (0, c("INCR", "b")))
    assert "inside a MULTI/EXEC group" in skip.tally.skipped.issues[0].reason
    translator = Translator(VALKEY_80)
    produced = []
    with pytest.raises(IncompatibleDataError):
        produced.extend(translator.translate((argv, i + 1) for i, argv in enumerate(group)))
    assert produced == []  # nothing of the group was emitted


def test_no_effect_commands_are_dropped_and_counted() -> None:
    stream = [c("PING"), c("REPLCONF", "GETACK", "*"), c("PUBLISH", "ch", "m"), c("GETEX", "k"),
              c("SCRIPT", "EXISTS", "x"), c("DIGEST", "k")]
    units, translator = translate(VALKEY_80, stream)
    assert sent(units) == [] and [u.end_offset for u in units] == [1, 2, 3, 4, 5, 6]
    assert dict(translator.tally.dropped) == {"ping": 1, "replconf": 1, "publish": 1, "getex": 1, "script": 1,
                                              "digest": 1}
    units, _ = translate(VALKEY_80, [c("PUBLISH", "ch", "m")], forward_publish=True)
    assert sent(units) == [(0, c("PUBLISH", "ch", "m"))]


def test_unknown_commands_pass_only_when_the_target_has_them() -> None:
    target = TargetProfile(VALKEY_80.identity, frozenset({"set", "newcmd"}))
    units, translator = translate(target, [c("NEWCMD", "k"), c("OTHERCMD", "k")], policy=OnIncompatible.SKIP)
    assert sent(units) == [(0, c("NEWCMD", "k"))]
    assert translator.tally.skipped.issues == [KeyIssue(0, "k", "OTHERCMD is not a command of Valkey 8.0.1")]


def test_issue_log_counts_everything_and_keeps_the_first_distinct_keys() -> None:
    log = IssueLog(limit=2)
    for key in ("a", "a", "b", "c", "d"):
        log.add(KeyIssue(0, key, "x"))
    assert log.count == 5 and [i.key for i in log.issues] == ["a", "b"] and log.to_dict()["truncated"]


# -- the translator: databases --------------------------------------------------------------------------------------

def test_select_is_followed_and_recorded_per_unit() -> None:
    units, translator = translate(VALKEY_91, [c("SET", "a", 1), c("SELECT", 3), c("SET", "b", 1)])
    assert sent(units) == [(0, c("SET", "a", 1)), (3, c("SET", "b", 1))]
    assert [u.source_db for u in units] == [0, 3, 3] and translator.db == 3
    resumed = Translator(VALKEY_91, source_db=3)
    assert resumed.feed(c("SET", "c", 1), 9) == Unit(((3, c("SET", "c", 1)),), 9, 3)


def test_db_map_moves_filters_and_flushes() -> None:
    dbmap = DbMap(((0, 5), (1, 6)))
    stream = [c("SET", "a", 1), c("SELECT", 2), c("SET", "ignored", 1), c("SELECT", 1), c("SET", "b", 1),
              c("FLUSHALL", "ASYNC"), c("SWAPDB", 0, 1), c("MOVE", "b", 0), c("MOVE", "b", 2),
              c("COPY", "x", "y", "DB", 0, "REPLACE")]
    units, translator = translate(VALKEY_91, stream, db_map=dbmap, policy=OnIncompatible.SKIP)
    assert sent(units) == [
        (5, c("SET", "a", 1)), (6, c("SET", "b", 1)),
        (5, c("FLUSHDB", "ASYNC")), (6, c("FLUSHDB", "ASYNC")),
        (6, c("SWAPDB", 5, 6)), (6, c("MOVE", "b", 5)),
        (6, c("DEL", "b")),  # moved into a database that is not followed: gone from the followed ones
        (6, c("COPY", "x", "y", "REPLACE", "DB", 5)),
    ]
    assert translator.tally.filtered == {"set": 1}


@pytest.mark.parametrize(("dbmap", "command", "reason"), [
    (DbMap(((0, 0), (1, 0))), c("SWAPDB", 0, 1), "not one-to-one on databases 0 and 1"),
    (DbMap(((0, 0),)), c("SWAPDB", 0, 1), "swaps a followed database with one that is not followed"),
    (DbMap(((0, 0), (1, 0))), c("FLUSHDB"), "merges them"),
    (DbMap(((0, 0), (1, 0))), c("MOVE", "k", 1), "to the same target db 0"),
])
def test_db_commands_the_map_cannot_express(dbmap: DbMap, command: tuple[bytes, ...], reason: str) -> None:
    with pytest.raises(IncompatibleDataError, match=reason):
        translate(VALKEY_91, [command], db_map=dbmap)


def test_a_move_into_a_followed_db_from_one_that_is_not_is_incompatible() -> None:
    units, translator = translate(VALKEY_91, [c("SELECT", 1), c("MOVE", "k", 0)], db_map=DbMap(((0, 0),)),
                                  policy=OnIncompatible.SKIP)
    assert sent(units) == [] and "its value is not on the target" in translator.tally.skipped.issues[0].reason


def test_db_map_is_checked() -> None:
    with pytest.raises(ConfigError):
        DbMap(((0, 1), (0, 2)))
    assert DbMap().identity and not DbMap(dbs=(0,)).identity


def test_resp_writer_selects_and_keeps_groups() -> None:
    writer = RespWriter()
    data = writer.encode(Unit(((0, c("SET", "a", 1)), (2, c("INCR", "b"))), 10, 2, group=True))
    assert data == (b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
                    b"*2\r\n$4\r\nINCR\r\n$1\r\nb\r\n*1\r\n$4\r\nEXEC\r\n")
    assert writer.db == 2


def test_every_table_handler_exists() -> None:
    for name, entry in TABLE.items():
        if entry.kind is Kind.EFFECT:
            assert entry.handler in HANDLERS, name


def test_the_table_per_release() -> None:
    from migrate.stream.fit import translation_table

    rows = {row.command: row for row in translation_table(VALKEY_80)}
    assert rows["hsetex"].decision == "lossy" and rows["hpersist"].decision == "exact equivalent"
    assert rows["vadd"].decision == "incompatible" and rows["incr"].decision == "as is"
    assert rows["xadd"].detail.startswith("except XADD ... DELREF")
    assert rows["ping"].decision == "dropped" and rows["set"].decision == "effect"
    rows91 = {row.command: row for row in translation_table(VALKEY_91)}
    assert rows91["hsetex"].decision == "as is" and rows91["vadd"].decision == "incompatible"


@pytest.mark.parametrize("command", [
    c("SET", "k", "v", "EX", 60), c("set", "k", "v", "px", 1500), c("SET", "k", "v", "Ex", "0060"),
    c("SET", "k", "v", "NX", "EX", 60), c("SET", "k", "v", "GET", "XX", "PX", 5), c("SET", "k", "v", "EX", 60, "NX"),
    c("SET", "k", "v", "EX", "6e1"), c("SET", "k", "v", "EX", -5), c("SETEX", "k", 60, "v"), c("PSETEX", "k", 60, "v"),
    c("EXPIRE", "k", 60), c("SET", "k", "v", "EX", 10**13), c("SET", "k" * 200, "v" * 70_000, "EX", 1),
])
def test_a_splice_of_the_sources_bytes_is_the_rewrite(command: tuple[bytes, ...]) -> None:
    """What splice keeps of the source's canonical RESP plus what it adds is exactly the RESP of rewrite_one's
    command, the fast in-place tail (`SET ... EX n`) as the general path; counted as rewritten like it."""
    from migrate.wire import pack_argv

    fast, slow = (Translator(VALKEY_91, clock=lambda: NOW) for _ in range(2))
    for translator in (fast, slow):
        translator.quick_plan(command[0])
    rewritten = slow.rewrite_one(command, NOW)
    spliced = fast.splice(list(command), NOW)
    if rewritten is None:
        assert spliced is None
        return
    source = pack_argv(command)
    assert spliced is not None and 0 < spliced[0] <= len(source)
    assert source[:len(source) - spliced[0]] + spliced[1] == pack_argv(rewritten)
    fast.count_passed({})
    assert (fast.tally.commands, fast.tally.units, fast.tally.rewritten) == (1, 1, slow.tally.rewritten)
    fast.count_passed({})
    assert fast.tally.commands == 1


def test_no_splice_inside_a_group_or_a_database_not_followed() -> None:
    translator = Translator(VALKEY_91, clock=lambda: NOW, db_map=DbMap(dbs=(0,)))
    translator.quick_plan(b"SET")
    assert translator.splice([b"SET", b"k", b"v", b"EX", b"5"], NOW) is not None
    translator.feed(c("MULTI"), 10)
    assert translator.splice([b"SET", b"k", b"v", b"EX", b"5"], NOW) is None
    translator.feed(c("EXEC"), 20)
    translator.feed(c("SELECT", 3), 30)
    assert translator.splice([b"SET", b"k", b"v", b"EX", b"5"], NOW) is None
