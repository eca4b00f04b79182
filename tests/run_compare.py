"""Read both sides of a migration and say how they differ: the oracle of the `migrate run` tests.

Values are read with type-native commands (tests/readback.py), not with anything of migrate.run, so a bug in the
copy cannot hide itself. Key TTLs are compared as absolute expiries within a tolerance (the reads are not
simultaneous); what no command can rebuild (consumer seen/active times) is blanked by readback.comparable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import redis

from migrate.rdb.values import HashValue, StreamGroup, StreamValue, Value
from tests.readback import comparable, raw, read_expire_at_ms, read_value

TTL_TOLERANCE_MS = 2500


def all_keys(client: redis.Redis) -> set[bytes]:
    return {k if isinstance(k, bytes) else k.encode() for k in client.scan_iter(count=1000)}


def differences(source: redis.Redis, target: redis.Redis, *, ignore: Iterable[bytes] = (),
                without_field_ttls: Iterable[bytes] = (), pending_tolerance_ms: int | None = None) -> list[str]:
    """Every difference between the same database of two servers, as readable lines (empty: equal).

    `ignore`: keys left out on both sides; `without_field_ttls`: hashes compared without their field TTLs (a lossy
    copy into a target that cannot hold them); `pending_tolerance_ms`: compare stream pending-entry delivery times
    within this tolerance (a chunked copy sets them from XPENDING's idle time).
    """
    skip = set(ignore)
    src_keys, dst_keys = all_keys(source) - skip, all_keys(target) - skip
    out = [f"missing on target: {k!r}" for k in sorted(src_keys - dst_keys)]
    out += [f"extra on target: {k!r}" for k in sorted(dst_keys - src_keys)]
    return out + compare_keys(source, target, sorted(src_keys & dst_keys), without_field_ttls=without_field_ttls,
                              pending_tolerance_ms=pending_tolerance_ms)


def compare_keys(source: redis.Redis, target: redis.Redis, both: list[bytes], *,
                 without_field_ttls: Iterable[bytes] = (), pending_tolerance_ms: int | None = None) -> list[str]:
    """Value and expiry differences of keys present on both sides."""
    lossy = set(without_field_ttls)
    out: list[str] = []
    strings = _strings(source, both)
    out += _string_differences(source, target, strings)
    for key in both:
        if key not in strings:
            out += _key_differences(source, target, key, key not in lossy, pending_tolerance_ms)
    return out


def _strings(client: redis.Redis, keys: list[bytes]) -> set[bytes]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    return {key for key, kind in zip(keys, pipe.execute(), strict=True) if kind == b"string"}


def _string_differences(source: redis.Redis, target: redis.Redis, keys: set[bytes]) -> list[str]:
    """Plain strings in bulk (GET + PTTL pipelined): thousands of filler keys cost one round trip per side."""
    ordered = sorted(keys)
    sides = []
    for client in (source, target):
        pipe = client.pipeline(transaction=False)
        for key in ordered:
            pipe.get(key)
            pipe.pttl(key)
        sides.append(pipe.execute())
    out = []
    for i, key in enumerate(ordered):
        (va, ta), (vb, tb) = sides[0][2 * i:2 * i + 2], sides[1][2 * i:2 * i + 2]
        if va != vb:
            out.append(f"value of {key!r} differs: {va[:100]!r} != {vb[:100]!r}")
        if (ta < 0) != (tb < 0) or abs(ta - tb) > TTL_TOLERANCE_MS:
            out.append(f"TTL of {key!r} differs: {ta} != {tb}")
    return out


def _key_differences(source: redis.Redis, target: redis.Redis, key: bytes, field_ttls: bool,
                     pending_tolerance_ms: int | None) -> list[str]:
    a, b = comparable(read_value(source, key), read_value(target, key), field_ttls=field_ttls)
    if pending_tolerance_ms is not None:
        a, b = _pending_within(a, b, pending_tolerance_ms)
    out = []
    if a != b:
        out.append(f"value of {key!r} differs: {_short(a)} != {_short(b)}")
    ta, tb = read_expire_at_ms(source, key), read_expire_at_ms(target, key)
    if (ta is None) != (tb is None) or (ta is not None and tb is not None and abs(ta - tb) > TTL_TOLERANCE_MS):
        out.append(f"expiry of {key!r} differs: {ta} != {tb}")
    return out


def _pending_within(a: Value, b: Value, tolerance: int) -> tuple[Value, Value]:
    if not (isinstance(a, StreamValue) and isinstance(b, StreamValue)):
        return a, b

    def blank(s: StreamValue) -> StreamValue:
        return dataclasses.replace(s, groups=tuple(_blank_group(g) for g in s.groups))

    times_a = [p.delivery_time_ms for g in a.groups for p in g.pending]
    times_b = [p.delivery_time_ms for g in b.groups for p in g.pending]
    if len(times_a) == len(times_b) and all(abs(x - y) <= tolerance for x, y in zip(times_a, times_b, strict=True)):
        return blank(a), blank(b)
    return a, b


def _blank_group(group: StreamGroup) -> StreamGroup:
    return dataclasses.replace(group, pending=tuple(dataclasses.replace(p, delivery_time_ms=0) for p in group.pending))


def _short(value: Value) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


def field_ttls_of(client: redis.Redis, key: bytes) -> dict[bytes, int]:
    value = read_value(client, key)
    return value.field_expiry_ms if isinstance(value, HashValue) else {}


def function_names(client: redis.Redis) -> set[str]:
    try:
        reply = raw(client, "FUNCTION", "LIST")
    except redis.ResponseError:
        return set()
    names = set()
    for library in reply:
        entry = {library[i]: library[i + 1] for i in range(0, len(library), 2)} if isinstance(library, list) \
            else library
        names.add(entry[b"library_name"].decode())
    return names


def databases(client: redis.Redis) -> set[int]:
    return {int(name[2:]) for name in client.info("keyspace") if name.startswith("db")}
