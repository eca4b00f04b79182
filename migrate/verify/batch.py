"""The state of a batch of keys on one server, in as few round trips as the data allows.

Round 1 (packed from a per-key template, the hot path): TYPE + PTTL per key; or, at --level full when the previous
batch was mostly strings, PTTL + GETRANGE 0..chunk (a string then needs no TYPE; other keys answer WRONGTYPE and are
asked TYPE in the next round). Round 2: the first commands of every value still needed (digest.first_commands), for
up to `inflight` keys per round trip. Then only values longer than one chunk continue, side by side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from itertools import repeat
from typing import Any, TypeVar

from migrate.verify.digest import Cmd, Fingerprint, Reader, ReadPlan, first_commands, read_string, reader
from migrate.verify.replies import check
from migrate.wire import Packed, pack

T = TypeVar("T")
BatchReader = Generator[list[Cmd] | Packed, list[Any], T]

# (TYPE reply (b"none": no such key), PTTL (-1: none, -2: gone), fingerprint or None at --level keys / filtered out).
# A plain tuple: one is built per key and side, and a NamedTuple costs twice as much to create.
KeyState = tuple[bytes, int, Fingerprint | None]

TYPE = b"*2\r\n$4\r\nTYPE\r\n$%d\r\n%s\r\n"
# OBJECT ENCODING + MEMORY USAGE: the probe of dumpeq.py (full level), after TYPE and the expiry.
PROBE = b"*3\r\n$6\r\nOBJECT\r\n$8\r\nENCODING\r\n$%d\r\n%s\r\n*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$%d\r\n%s\r\n"
GETRANGE = b"*4\r\n$8\r\nGETRANGE\r\n$%d\r\n%s\r\n$1\r\n0\r\n"
_MARK = b"\x00key-slot\x00"
_SLOT = b"$%d\r\n%s\r\n" % (len(_MARK), _MARK)


def first_round(keys: list[bytes], strings_first: bool, string_chunk: int, expiry: bytes = b"PTTL",
                probe: bool = False) -> Packed:
    """TYPE + expiry per key, or expiry + GETRANGE 0..chunk-1; `expiry` is PTTL, or PEXPIRETIME where both servers
    have it (absolute: equal on both sides after a migration that kept absolute expiries), or empty when no key of
    either database has a TTL (INFO keyspace): TYPE alone then. `probe` (not with strings_first): TYPE + expiry +
    OBJECT ENCODING + MEMORY USAGE, for the DUMP fast path of dumpeq.py."""
    if not (expiry or strings_first or probe):
        template, per_key = TYPE, 1
    else:
        expiry = expiry or b"PTTL"
        head = b"*2\r\n$%d\r\n%s\r\n$%%d\r\n%%s\r\n" % (len(expiry), expiry)
        if probe:
            template, per_key = TYPE + head + PROBE, 4
        elif not strings_first:
            template, per_key = TYPE + head, 2
        else:
            end = b"%d" % (string_chunk - 1)
            template, per_key = head + GETRANGE + b"$%d\r\n%s\r\n" % (len(end), end), 2
    return Packed(b"".join([template % ((len(k), k) * per_key) for k in keys]), per_key * len(keys))


class Templates:
    """first_commands of each type packed once with a placeholder key; a key is then one `%` away."""

    def __init__(self, plan: ReadPlan) -> None:
        self.plan = plan
        self.cache: dict[bytes, tuple[bytes, int, int]] = {}

    def pack(self, kind: bytes, key: bytes) -> tuple[bytes, int]:
        entry = self.cache.get(kind)
        if entry is None:
            cmds = first_commands(kind, _MARK, self.plan)
            raw = b"".join(pack(c) for c in cmds).replace(b"%", b"%%")
            entry = self.cache[kind] = (raw.replace(_SLOT, b"$%d\r\n%s\r\n"), raw.count(_SLOT), len(cmds))
        template, slots, count = entry
        return template % ((len(key), key) * slots), count


def read_states(keys: list[bytes], full: bool, plan: ReadPlan, wants_type: Callable[[bytes], bool] | None,
                packed: Packed, strings_first: bool, first: list[Any] | None = None,
                known: dict[int, Fingerprint] | None = None) -> BatchReader[list[KeyState]]:
    """The state of every key of a batch. A key that is gone reads TYPE `none` (or PTTL -2 if it expired between
    the two reads), which `classify` treats as missing. `first`: the replies to `packed` when already read;
    `known`: fingerprints already settled (dumpeq.py), whose values are not read."""
    replies = first if first is not None else (yield packed)
    if strings_first:
        states, needed, started = yield from _strings_first(keys, replies, plan)
    else:
        # 4: TYPE + expiry + probe; 2: TYPE + expiry; 1: TYPE alone (no TTL in either database)
        step = len(replies) // max(1, len(keys))
        kinds, pttls = replies[0::step], (replies[1::step] if step >= 2 else [-1] * len(keys))
        if set(map(type, kinds)) - {bytes} or set(map(type, pttls)) - {int}:
            for reply in (*kinds, *pttls):
                check(reply)
        states = list(zip(kinds, pttls, repeat(None)))
        if not full:
            return states
        needed, started = [i for i, (_, pttl, _) in enumerate(states) if pttl != -2], []
    for i, fingerprint in (known or {}).items():
        states[i] = (states[i][0], states[i][1], fingerprint)
    needed = [i for i in needed if states[i][0] != b"none" and (wants_type is None or wants_type(states[i][0]))
              and not (known and i in known)]
    started += yield from _first_values(keys, states, needed, plan)
    if started:
        fingerprints = yield from multiplex([r for _, r in started], plan.big_inflight)
        for (i, _), fp in zip(started, fingerprints, strict=True):
            states[i] = (states[i][0], states[i][1], fp)
    return states


def _strings_first(keys: list[bytes], replies: list[Any], plan: ReadPlan
                   ) -> Generator[list[Cmd], list[Any], tuple[list[KeyState], list[int], list[tuple[int, Any]]]]:
    """PTTL + GETRANGE replies: strings are done (small) or continue (big); the others are asked their TYPE."""
    pttls, firsts = replies[0::2], replies[1::2]
    if set(map(type, pttls)) - {int}:
        for reply in pttls:
            check(reply)
    limit = plan.string_chunk
    states: list[KeyState] = []
    started: list[tuple[int, Any]] = []
    others: list[int] = []
    for i, (pttl, first) in enumerate(zip(pttls, firsts, strict=True)):
        if type(first) is bytes:
            if pttl == -2:
                states.append((b"none", -2, None))
            elif len(first) < limit:
                states.append((b"string", pttl, first))  # a small string is its own fingerprint
            else:
                states.append((b"string", pttl, None))
                started.append((i, read_string(keys[i], first, limit)))
            continue
        if not str(first).startswith("WRONGTYPE"):
            check(first)
        states.append((b"none", pttl, None))
        others.append(i)
    if others:
        kinds = yield [(b"TYPE", keys[i]) for i in others]
        for i, kind in zip(others, kinds, strict=True):
            states[i] = (check(kind), states[i][1], None)
    return states, [i for i in others if states[i][1] != -2], started


def _first_values(keys: list[bytes], states: list[KeyState], needed: list[int], plan: ReadPlan
                  ) -> Generator[Packed, list[Any], list[tuple[int, Any]]]:
    """Send the first commands of up to `inflight` values per round trip; keep the readers that need more."""
    templates = Templates(plan)
    started: list[tuple[int, Any]] = []
    for at in range(0, len(needed), plan.inflight):
        group = needed[at:at + plan.inflight]
        packed = [templates.pack(states[i][0], keys[i]) for i in group]
        replies = yield Packed(b"".join(data for data, _ in packed), sum(n for _, n in packed))
        pos = 0
        for i, (_, count) in zip(group, packed, strict=True):
            started.append((i, reader(states[i][0], keys[i], replies[pos:pos + count], plan)))
            pos += count
    return started


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
