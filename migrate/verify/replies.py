"""Raw replies in one shape whatever the protocol: RESP3 gives maps and [member, score] pairs, RESP2 flat lists."""

from __future__ import annotations

from typing import Any

from redis import exceptions as rex

MAX_SEQ = 2**64 - 1


def is_error(reply: Any) -> bool:
    return isinstance(reply, rex.ResponseError)


def check(reply: Any) -> Any:
    """Raise an error reply (the caller's retry/translate layer names the server); pass anything else through."""
    if isinstance(reply, rex.ResponseError):
        raise reply
    return reply


def as_map(reply: Any) -> dict[bytes, Any]:
    reply = check(reply)
    if isinstance(reply, dict):
        return {as_bytes(k): v for k, v in reply.items()}
    items = list(reply or [])
    names = items[0::2][:len(items) // 2]
    if all(type(name) is bytes for name in names):  # RESP2 field names: bytes already (the common case, per key)
        return dict(zip(names, items[1::2], strict=True))
    return {as_bytes(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def as_int(value: Any) -> int:
    return int(value) if value is not None else 0


def score_columns(reply: Any) -> tuple[list[bytes], list[float]]:
    """ZRANGE ... WITHSCORES as (members, scores): RESP2 gives [m, s, m, s] with scores as text, RESP3 [[m, s], ...]
    with doubles. The server prints doubles so that they read back exactly: float() of either is the stored score."""
    items = check(reply) or []
    if items and isinstance(items[0], list):
        members, scores = [p[0] for p in items], [p[1] for p in items]
    else:
        members, scores = items[0::2], items[1::2]
    return members, scores if all(type(s) is float for s in scores) else [float(s) for s in scores]


def parse_id(value: bytes) -> tuple[int, int]:
    ms, _, seq = as_bytes(value).partition(b"-")
    return int(ms), int(seq or 0)


def next_id(value: bytes) -> bytes:
    """The smallest stream id after `value` (an exclusive range start that Redis 6.0 understands too)."""
    ms, seq = parse_id(value)
    ms, seq = (ms + 1, 0) if seq == MAX_SEQ else (ms, seq + 1)
    return b"%d-%d" % (ms, seq)


def info_fields(text: Any) -> dict[str, dict[str, str]]:
    """INFO keyspace text -> {'db0': {'keys': '31', 'expires': '3', ...}}."""
    out: dict[str, dict[str, str]] = {}
    raw = check(text)
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for line in body.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.startswith("db"):
            out[name] = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    return out
