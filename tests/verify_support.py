"""Test helpers for verify: a clean copy of a source server into a target, independent of `migrate run`.

Keys travel as DUMP payloads where the target takes them (as is, or restamped by migrate.rdb.dump.plan_conversion);
what it cannot restore (hashes with field TTLs on Valkey 8) is rebuilt with type-native commands, dropping what the
target cannot hold. `native=True` rebuilds every non-stream key with commands, so encodings differ between the sides.
"""

from __future__ import annotations

from typing import Any

import redis

from fixtures.sandbox import LocalServer
from migrate.config import CommonConfig, parse_endpoint
from migrate.identity import identify
from migrate.rdb.dump import Action, plan_conversion
from migrate.verify import VerifyConfig, VerifyOptions, VerifyResult, verify


def verify_pair(source: LocalServer, target: LocalServer, **options: Any) -> VerifyResult:
    """verify() between two test servers: one recheck round, a short interval, unless the test says otherwise."""
    options = {"rounds": 1, "interval": 0.05, **options}
    common = CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url))
    return verify(VerifyConfig(common, VerifyOptions(**options)))


def used_dbs(client: redis.Redis) -> list[int]:
    return sorted(int(name[2:]) for name in client.info("keyspace") if name.startswith("db"))


def copy_server(source: LocalServer, target: LocalServer, native: bool = False,
                db_map: dict[int, int] | None = None) -> None:
    target_identity = identify(target.client())
    for db in used_dbs(source.client()):
        src, dst = source.client(db), target.client((db_map or {}).get(db, db))
        for key in src.scan_iter(count=1000):
            copy_key(src, dst, key, target_identity, native)
    copy_functions(source.client(), target.client())


def copy_key(src: redis.Redis, dst: redis.Redis, key: bytes, target_identity: Any, native: bool) -> None:
    kind = src.type(key).decode()
    pttl = src.pttl(key)
    try:  # the absolute expiry, like `migrate run` keeps it (Redis 7.0+); else the TTL, relative
        expire_at = src.execute_command("PEXPIRETIME", key)
    except redis.ResponseError:
        expire_at = None
    if native and kind != "stream":
        native_copy(src, dst, key, kind, target_identity.hash_field_ttl)
    else:
        conversion = plan_conversion(src.dump(key), target_identity.capabilities)
        if conversion.action in (Action.AS_IS, Action.RESTAMP):
            dst.restore(key, 0, conversion.payload, replace=True)
        elif conversion.action is Action.REWRITE:
            native_copy(src, dst, key, kind, target_identity.hash_field_ttl)
        else:
            raise AssertionError(f"cannot copy {key!r}: {conversion.reason}")
    if expire_at is not None and expire_at > 0:
        dst.pexpireat(key, expire_at)
    elif pttl > 0:
        dst.pexpire(key, pttl)


def native_copy(src: redis.Redis, dst: redis.Redis, key: bytes, kind: str, field_ttls: bool) -> None:
    dst.delete(key)
    if kind == "string":
        dst.set(key, src.get(key))
    elif kind == "list":
        dst.rpush(key, *src.lrange(key, 0, -1))
    elif kind == "set":
        dst.sadd(key, *src.smembers(key))
    elif kind == "zset":
        dst.zadd(key, dict(src.zrange(key, 0, -1, withscores=True)))
    elif kind == "hash":
        copy_hash(src, dst, key, field_ttls)
    else:
        raise AssertionError(f"no native copy for {kind}")


def copy_hash(src: redis.Redis, dst: redis.Redis, key: bytes, field_ttls: bool) -> None:
    fields = src.hgetall(key)
    dst.hset(key, mapping=fields)
    if not field_ttls:
        return
    names = list(fields)
    try:
        times = src.execute_command("HPEXPIRETIME", key, "FIELDS", len(names), *names)
    except redis.ResponseError:  # the source has no field TTLs at all
        return
    for name, when in zip(names, times, strict=True):
        if when > 0:
            dst.execute_command("HPEXPIREAT", key, when, "FIELDS", 1, name)


def copy_functions(src: redis.Redis, dst: redis.Redis) -> None:
    try:
        libraries = src.execute_command("FUNCTION", "LIST", "WITHCODE")
    except redis.ResponseError:
        return
    for library in libraries:
        code = library[b"library_code"] if isinstance(library, dict) else library[library.index(b"library_code") + 1]
        dst.execute_command("FUNCTION", "LOAD", "REPLACE", code)
