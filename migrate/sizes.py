"""MEMORY USAGE without killing a server that holds an empty list (facts.types.MEMORY_USAGE_UNSAFE: Redis before
7.0 keeps the empty lists of a file it loads, and MEMORY USAGE of one crashes it).

On such a server the sizes of a batch are asked in two round trips: `LLEN` of every key first (a list's length, 0
for an empty list or a key that is gone, an error for any other type: all harmless), then `MEMORY USAGE` of every key
except those with a length of 0, whose place holds `LINDEX key 0` (nil, like MEMORY USAGE of a missing key). Every
other server gets MEMORY USAGE at once.

    commands = memory_usage_commands(channel, keys, capabilities.memory_usage_unsafe)   # pipelined by the caller
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from migrate.wire import Channel, is_error

MEMORY_USAGE: Final = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$%d\r\n%s\r\n"
LINDEX_FIRST: Final = b"*3\r\n$6\r\nLINDEX\r\n$%d\r\n%s\r\n$1\r\n0\r\n"  # nil for an empty list or a missing key
LLEN: Final = b"*2\r\n$4\r\nLLEN\r\n$%d\r\n%s\r\n"


def empty_lists(channel: Channel, keys: Sequence[bytes]) -> set[int] | None:
    """Positions of keys that are empty lists (or gone: LLEN answers 0 for both), by one pipelined LLEN round; None
    when LLEN itself was refused (no right, renamed): then no size may be asked at all."""
    if not keys:
        return set()
    replies = channel.call(b"".join([LLEN % (len(k), k) for k in keys]), len(keys))
    if any(is_error(r) and not str(r).startswith("WRONGTYPE") for r in replies):
        return None
    return {i for i, reply in enumerate(replies) if reply == 0 and type(reply) is int}


def memory_usage_commands(channel: Channel, keys: Sequence[bytes], unsafe: bool) -> list[bytes] | None:
    """One command per key answering its MEMORY USAGE, or nil where asking would crash the server; None when the
    server is unsafe and the guard could not run."""
    skip = empty_lists(channel, keys) if unsafe else set()
    if skip is None:
        return None
    return [(LINDEX_FIRST if i in skip else MEMORY_USAGE) % (len(k), k) for i, k in enumerate(keys)]
