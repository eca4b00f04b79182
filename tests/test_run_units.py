"""The pure parts of `migrate run`: RESP encoding of RESTORE, glob patterns, sizes, the rate limiter, checkpoints."""

from __future__ import annotations

import json

import hiredis
import pytest

from migrate.errors import BadInputError, ConfigError
from migrate.rdb.dump import build_dump, parse_dump, restamp
from migrate.rdb.errors import RdbFormatError
from migrate.run.checkpoint import Checkpoint, DbState
from migrate.run.convert import CachedPlan, Route
from migrate.run.options import RunOptions, Strategy
from migrate.run.ratelimit import RateLimiter
from migrate.run.rdbload import redis_glob
from migrate.run.tally import DbTally, KeyIssue
from migrate.run.writer import restore_command
from migrate.settings import size as parse_size
from migrate.wire import pack


@pytest.mark.parametrize("expire_at", [None, 1_900_000_000_000])
@pytest.mark.parametrize("replace", [False, True])
def test_restore_command_is_the_generic_encoding(expire_at, replace):
    key, payload = b"k\r\n\x00", b"\x00\x03abc\x0b\x00" + bytes(8)
    args = ["RESTORE", key, 0 if expire_at is None else expire_at, payload]
    args += ([] if expire_at is None else ["ABSTTL"]) + (["REPLACE"] if replace else [])
    assert restore_command(key, payload, expire_at, replace) == pack(args)
    reader = hiredis.Reader()
    reader.feed(restore_command(key, payload, expire_at, replace))
    assert reader.gets()[1] == key


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("user:*", [b"user:", b"user:1\n2"], [b"users", b"xuser:1"]),
    ("h?llo", [b"hello", b"hallo"], [b"hllo", b"heello"]),
    ("h[ae]llo", [b"hello", b"hallo"], [b"hillo"]),
    ("h[^e]llo", [b"hallo"], [b"hello"]),
    ("h[a-b]llo", [b"hbllo"], [b"hcllo"]),
    ("a\\*b", [b"a*b"], [b"axb"]),
    ("*.[ch]", [b"x.c", b"y.h"], [b"z.o"]),
])
def test_redis_glob(pattern, yes, no):
    regex = redis_glob(pattern)
    assert all(regex.fullmatch(k) for k in yes) and not any(regex.fullmatch(k) for k in no)


def test_parse_size():
    assert parse_size("16mb") == parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("512kb") == 512 * 1024 and parse_size("100") == 100 and parse_size(0) == 0
    with pytest.raises(ValueError):
        parse_size("lots")


def test_rate_limiter_spaces_batches_to_the_rate():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    assert limiter.batch_size(1000) == 250
    for _ in range(8):
        limiter.acquire(250)
    assert now[0] == pytest.approx(2.0)  # 2000 keys at 1000 keys/s
    assert RateLimiter(None).batch_size(1000) == 1000


def test_checkpoint_roundtrip_and_fingerprint(tmp_path):
    path = tmp_path / "cp.json"
    fingerprint = {"source": "redis://127.0.0.1:1/0", "match": None}
    tally = DbTally(0, 3, copied=5, bytes=10, expired=1)
    tally.by_type["hash"] += 5
    tally.skipped.append(KeyIssue(0, "k\\x00", "module type"))
    checkpoint = Checkpoint(path, fingerprint, {0: DbState(tally, cursor=1234, may_replace=False)})
    checkpoint.save()
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, renamed
    loaded = Checkpoint.load(path, fingerprint)
    state = loaded.dbs[0]
    assert (state.cursor, state.may_replace, state.tally.to_dict()) == (1234, False, tally.to_dict())
    with pytest.raises(ConfigError, match="differs in source"):
        Checkpoint.load(path, {**fingerprint, "source": "redis://other:1/0"})
    saved = path.read_text()
    path.write_text(saved.replace('"done": false', '"done": true'))  # a hand edit: "this database is finished"
    with pytest.raises(BadInputError, match="modified or damaged"):
        Checkpoint.load(path, fingerprint)
    path.write_text(json.dumps({"format": 1, "fingerprint": fingerprint, "dbs": {"0": {"cursor": 1}}}))
    with pytest.raises(BadInputError, match="not a checkpoint of this version"):
        Checkpoint.load(path, fingerprint)
    path.write_text("{not json")
    with pytest.raises(BadInputError):
        Checkpoint.load(path, fingerprint)


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--from-rdb needs --strategy reload"):
        RunOptions(from_rdb=tmp_path).validate()
    with pytest.raises(ConfigError, match="--resume works with --strategy replay"):
        RunOptions(strategy=Strategy.RELOAD, resume=True).validate()
    with pytest.raises(ConfigError, match="--rate-limit"):
        RunOptions(rate_limit=0).validate()
    with pytest.raises(ConfigError, match="--promote"):
        RunOptions(promote=True).validate()


@pytest.mark.parametrize(("old", "new"), [(12, 11), (10, 11), (12, 80), (80, 11), (9, 10)])
def test_restamp_without_a_crc_pass_equals_the_recomputed_one(old, new):
    """The CRC64 is linear: changing the version field changes the CRC by a constant (convert.crc_delta)."""
    decision = CachedPlan(Route.RESTAMP, "hash", new, old)
    for body in (b"", b"\x00", b"\x02abc" * 1000, bytes(range(256)) * 40):
        payload = build_dump(4, body, old)
        assert decision.restamp(payload) == restamp(payload, new)
    corrupt = bytearray(build_dump(0, b"\x03abc", old))
    corrupt[2] ^= 1  # a payload damaged on the way stays detectably damaged after the restamp
    with pytest.raises(RdbFormatError, match="checksum"):
        parse_dump(decision.restamp(bytes(corrupt)))
