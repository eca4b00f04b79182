"""Read a live key into the decoded-value model (migrate.rdb.values) with type-native commands, for tests.

Shared by the tests of the DUMP converter, the rewriter and the RDB reader: what a server returns for a key is the
ground truth a decoded or rebuilt value is compared with. Works over RESP2 and RESP3 replies, on every server of the
matrix (commands missing on old releases are skipped: their fields stay None / empty).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import redis

from migrate.rdb.values import (
    HashValue,
    ModuleValue,
    PendingEntry,
    StreamConsumer,
    StreamEntry,
    StreamGroup,
    StreamId,
    StreamValue,
    Value,
)


def raw(client: redis.Redis, *args: Any) -> Any:
    """One command with redis-py's reply parsing off (its parsers differ by version and choke on some replies)."""
    pipe = client.pipeline(transaction=False)
    pipe.response_callbacks = type(pipe.response_callbacks)({})
    pipe.execute_command(*args)
    reply = pipe.execute(raise_on_error=False)[0]
    if isinstance(reply, Exception):
        raise reply
    return reply


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_value(client: redis.Redis, key: bytes) -> Value:
    kind = text(raw(client, "TYPE", key))
    if kind == "none":
        raise KeyError(key)
    if kind == "string":
        return bytes(raw(client, "GET", key))
    if kind == "list":
        return list(raw(client, "LRANGE", key, 0, -1))
    if kind == "set":
        return set(raw(client, "SMEMBERS", key))
    if kind == "zset":
        return read_zset(client, key)
    if kind == "hash":
        return read_hash(client, key)
    if kind == "stream":
        return read_stream(client, key)
    return ModuleValue(type_name=kind, encoding_version=0, module_id=0)


def read_zset(client: redis.Redis, key: bytes) -> list[tuple[bytes, float]]:
    reply = raw(client, "ZRANGE", key, 0, -1, "WITHSCORES")
    if reply and isinstance(reply[0], list):  # RESP3: [[member, score], ...]
        return [(m, float(s)) for m, s in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def read_hash(client: redis.Redis, key: bytes) -> HashValue:
    fields = as_dict(raw(client, "HGETALL", key))
    expiry: dict[bytes, int] = {}
    if fields and has_field_ttls(client):
        names = list(fields)
        times = raw(client, "HPEXPIRETIME", key, "FIELDS", len(names), *names)
        expiry = {name: int(t) for name, t in zip(names, times, strict=True) if int(t) >= 0}
    return HashValue(fields=fields, field_expiry_ms=expiry)


def has_field_ttls(client: redis.Redis) -> bool:
    try:
        raw(client, "HPEXPIRETIME", b"\x00migrate-probe", "FIELDS", 1, b"f")
    except redis.ResponseError as exc:
        # a cluster node that knows the command but not the probe's slot answers MOVED / ASK
        return isinstance(exc, redis.exceptions.MovedError | redis.exceptions.AskError) or \
            str(exc).startswith(("MOVED", "ASK"))
    return True


def read_stream(client: redis.Redis, key: bytes) -> StreamValue:
    info = as_dict(raw(client, "XINFO", "STREAM", key, "FULL", "COUNT", 0))
    entries = tuple(StreamEntry(parse_id(i), pairs(f)) for i, f in info[b"entries"])
    return StreamValue(
        entries=entries,
        length=int(info[b"length"]),
        last_id=parse_id(info[b"last-generated-id"]),
        first_id=optional_id(info.get(b"recorded-first-entry-id")),
        max_deleted_id=optional_id(info.get(b"max-deleted-entry-id")),
        entries_added=optional_int(info.get(b"entries-added")),
        groups=tuple(read_group(as_dict(g)) for g in info[b"groups"]),
    )


def read_group(group: dict[bytes, Any]) -> StreamGroup:
    pending = tuple(PendingEntry(parse_id(i), c, int(t), int(n)) for i, c, t, n in group[b"pending"])
    consumers = tuple(read_consumer(as_dict(c)) for c in group[b"consumers"])
    # entries-read: absent before 7.0 (None), nil when the server does not know it (-1, its own marker)
    read = int(group[b"entries-read"]) if group.get(b"entries-read") is not None else (
        -1 if b"entries-read" in group else None)
    return StreamGroup(name=group[b"name"], last_id=parse_id(group[b"last-delivered-id"]), entries_read=read,
                       pending=pending, consumers=consumers)


def read_consumer(consumer: dict[bytes, Any]) -> StreamConsumer:
    return StreamConsumer(name=consumer[b"name"], seen_time_ms=int(consumer[b"seen-time"]),
                          active_time_ms=optional_int(consumer.get(b"active-time")),
                          pending=tuple(parse_id(p[0]) for p in consumer[b"pending"]))


def read_expire_at_ms(client: redis.Redis, key: bytes) -> int | None:
    """The key's absolute expiry in unix ms (PEXPIRETIME on 7.0+, else now + PTTL), None when it has none."""
    try:
        at = int(raw(client, "PEXPIRETIME", key))
    except redis.ResponseError:
        ttl = int(raw(client, "PTTL", key))
        return int(time.time() * 1000) + ttl if ttl >= 0 else None
    return at if at >= 0 else None


def as_dict(reply: Any) -> dict[bytes, Any]:
    if isinstance(reply, dict):
        return dict(reply)
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


def pairs(flat: list[bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def parse_id(value: bytes | str) -> StreamId:
    ms, seq = text(value).split("-")
    return int(ms), int(seq)


def optional_id(value: Any) -> StreamId | None:
    return None if value is None else parse_id(value)


def optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# --- comparing a source value with what a target holds ---------------------------------------------------------------

def comparable(source: Value, target: Value, *, field_ttls: bool = True) -> tuple[Value, Value]:
    """Both values with what cannot be compared blanked out on both sides: consumer seen/active times (no command
    sets them), stream counters one side lacks (old servers do not report them), field TTLs when not kept."""
    if isinstance(source, HashValue) and isinstance(target, HashValue) and not field_ttls:
        return HashValue(source.fields), HashValue(target.fields)
    if isinstance(source, StreamValue) and isinstance(target, StreamValue):
        return _comparable_streams(source, target)
    return source, target


def _comparable_streams(a: StreamValue, b: StreamValue) -> tuple[StreamValue, StreamValue]:
    def both(x: Any, y: Any) -> bool:
        return x is not None and y is not None

    keep = {name: both(getattr(a, name), getattr(b, name)) for name in ("first_id", "max_deleted_id", "entries_added")}
    groups_read = all(both(ga.entries_read, gb.entries_read) for ga, gb in zip(a.groups, b.groups, strict=False))

    def clean(s: StreamValue) -> StreamValue:
        groups = tuple(dataclasses.replace(
            g, entries_read=g.entries_read if groups_read else None,
            consumers=tuple(dataclasses.replace(c, seen_time_ms=0, active_time_ms=None) for c in g.consumers),
        ) for g in s.groups)
        return dataclasses.replace(s, groups=groups, **{n: getattr(s, n) if k else None for n, k in keep.items()})

    return clean(a), clean(b)


def apply_to(client: redis.Redis, commands: Any, **kwargs: Any) -> int:
    """migrate.run.transactions.apply_commands over one connection of a test's client."""
    from migrate.run.transactions import apply_commands
    from migrate.wire import Channel

    channel = Channel.over(client, "target")
    try:
        return apply_commands(channel, commands, **kwargs)
    finally:
        channel.close()
