"""The state of a batch of keys on one server at --level keys, and the helpers of the value rounds (fullread.py).

One round (packed from a per-key template, the hot path): TYPE + PTTL (or PEXPIRETIME) per key, or TYPE alone where
no key of either database has a TTL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from itertools import repeat
from typing import Any, TypeVar

from migrate.verify.digest import Cmd, Fingerprint, Reader, ReadPlan, first_commands
from migrate.verify.replies import check
from migrate.wire import Packed, pack

T = TypeVar("T")
BatchReader = Generator[list[Cmd] | Packed, list[Any], T]

# (TYPE reply (b"none": no such key), PTTL (-1: none, -2: gone), fingerprint or None at --level keys / filtered out).
# A plain tuple: one is built per key and side, and a NamedTuple costs twice as much to create.
KeyState = tuple[bytes, int, Fingerprint | None]

TYPE = b"*2\r\n$4\r\nTYPE\r\n$%d\r\n%s\r\n"
GETRANGE = b"*4\r\n$8\r\nGETRANGE\r\n$%d\r\n%s\r\n$1\r\n0\r\n"
_MARK = b"\x00key-slot\x00"
_SLOT = b"$%d\r\n%s\r\n" % (len(_MARK), _MARK)


def first_round(keys: list[bytes], expiry: bytes = b"PTTL") -> Packed:
    """TYPE + expiry per key; `expiry` is PTTL, or PEXPIRETIME where both servers have it (absolute: equal on both
    sides after a migration that kept absolute expiries), or empty when no key of either database has a TTL: TYPE
    alone then."""
    if not expiry:
        return Packed(b"".join([TYPE % (len(k), k) for k in keys]), len(keys))
    template = TYPE + b"*2\r\n$%d\r\n%s\r\n$%%d\r\n%%s\r\n" % (len(expiry), expiry)
    return Packed(b"".join([template % (len(k), k, len(k), k) for k in keys]), 2 * len(keys))


class Templates:
    """first_commands of each type packed once with a placeholder key; a key is then one `%` away."""

    def __init__(self, plan: ReadPlan) -> None:
        self.plan = plan
        self.cache: dict[tuple[bytes, bool], tuple[bytes, int, int]] = {}

    def pack(self, kind: bytes, key: bytes, whole: bool = False) -> tuple[bytes, int]:
        entry = self.cache.get((kind, whole))
        if entry is None:
            cmds = first_commands(kind, _MARK, self.plan, whole)
            raw = b"".join(pack(c) for c in cmds).replace(b"%", b"%%")
            entry = self.cache[(kind, whole)] = (raw.replace(_SLOT, b"$%d\r\n%s\r\n"), raw.count(_SLOT),
                                                 len(cmds))
        template, slots, count = entry
        return template % ((len(key), key) * slots), count


def read_states(keys: list[bytes], wants_type: Callable[[bytes], bool] | None, packed: Packed,
                first: list[Any] | None = None) -> BatchReader[list[KeyState]]:
    """Type and expiry of every key (--level keys). A key that is gone reads TYPE `none` (or PTTL -2 if it expired
    between the two reads), which `classify` treats as missing. `first`: the replies to `packed` when already read."""
    replies = first if first is not None else (yield packed)
    step = len(replies) // max(1, len(keys))  # 2: TYPE + expiry; 1: TYPE alone (no TTL in either database)
    kinds, pttls = replies[0::step], (replies[1::step] if step >= 2 else [-1] * len(keys))
    if set(map(type, kinds)) - {bytes} or set(map(type, pttls)) - {int}:
        for reply in (*kinds, *pttls):
            check(reply)
    return list(zip(kinds, pttls, repeat(None)))


def multiplex(readers: list[Reader[T]], limit: int) -> Generator[list[Cmd], list[Any], list[T]]:
    """Run readers side by side: every round sends the commands of up to `limit` unfinished readers together.
    Most readers finish on their first step (the value fitted in one chunk) without a round trip."""
    queue = deque(enumerate(readers))
    results: dict[int, T] = {}
    active: dict[int, tuple[Reader[T], list[Cmd]]] = {}
    while queue or active:
        while queue and len(active) < limit:
            index, item = queue.popleft()
            try:
                active[index] = (item, next(item))
            except StopIteration as stop:
                results[index] = stop.value
        if not active:
            break
        order = list(active)
        replies = yield [cmd for i in order for cmd in active[i][1]]
        pos = 0
        for i in order:
            item, cmds = active[i]
            part, pos = replies[pos:pos + len(cmds)], pos + len(cmds)
            try:
                active[i] = (item, item.send(part))
            except StopIteration as stop:
                results[i] = stop.value
                del active[i]
    return [results[i] for i in range(len(readers))]
