"""Keyspace notifications (`notify-keyspace-events`), as the sync's fallback needs them.

Source: redis.io "Redis keyspace notifications" and the `notify-keyspace-events` comments of redis.conf (6.0-8.0)
and valkey.conf (8.x): K = keyspace channel (__keyspace@<db>__:<key>), E = keyevent channel (__keyevent@<db>__:<event>),
g = generic (DEL, EXPIRE, RENAME, ...), $ string, l list, s set, h hash, z sorted set, x expired, e evicted, t stream,
m key miss, n new key, d module keys (7.0+); A = "g$lshzxetd" (every class but m and n). FLUSHALL, FLUSHDB and SWAPDB
publish no key event.
"""

from __future__ import annotations

from typing import Final

EVENT_CLASSES: Final = "g$lshzxet"  # what a write of a core type can emit (A covers them)


def notifications_missing(flags: str | None) -> str | None:
    """Why a notify-keyspace-events setting does not report every write of a core type, or None."""
    if flags is None:
        return "its notify-keyspace-events setting cannot be read (CONFIG GET refused)"
    have = set(flags)
    if not have & {"K", "E"}:
        return f"keyspace notifications are off (notify-keyspace-events is {flags!r})"
    lacking = "" if "A" in have else "".join(c for c in EVENT_CLASSES if c not in have)
    return f"notify-keyspace-events {flags!r} lacks the event classes {lacking!r}" if lacking else None
