"""Canonical per-key fingerprints from type-native reads, independent of encoding and server version.

A fingerprint is what two servers must agree on for a key to be equal:
- a small string is its own fingerprint (bytes); a big one is read in GETRANGE chunks into a digest;
- list, zset and stream entries are hashed in order (LRANGE / ZRANGE by rank / XRANGE, chunked) as two BLAKE2b
  streams, the concatenated bytes and the element lengths, so chunk boundaries do not matter; zset scores as the
  exact 8-byte doubles (the server's reply parsed exactly), so a 1e-9 change is a different fingerprint;
- set and hash are unordered: each element (member, or field and value) is hashed alone and the hashes are added
  modulo 2**64 (a multiset digest), so SSCAN / HSCAN order and chunking do not matter. The element hash is Python's
  keyed 64-bit SipHash: both sides are hashed in the same process, the sums never leave it, and a changed element
  goes unnoticed with probability 2**-64. A SCAN that returned duplicates (rehashing between calls) is detected by
  the element count and read again with de-duplication;
- hashes may carry their field TTLs (HPEXPIRETIME), streams their metadata and consumer groups, as far as the server
  exposes them: a component only one side exposes is not compared.

Reads are generators ("readers") that yield command lists and receive the replies, so many keys (and both servers) are
served in the same network round trips; memory is bounded by batch size x chunk size, never by key size.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeVar

from migrate.verify.replies import as_bytes, as_int, as_map, check, is_error, next_id, score_columns
from migrate.verify.wire import Arg, Packed

T = TypeVar("T")
Cmd = tuple[Arg, ...]
Reader = Generator[list[Cmd], list[Any], T]  # value readers: command lists
BatchReader = Generator[list[Cmd] | Packed, list[Any], T]  # may start with a packed round
Fingerprint = Any  # bytes (small string) | dict[str, Any] (components)

NATIVE_TYPES = frozenset({b"string", b"list", b"set", b"zset", b"hash", b"stream"})
MASK64 = (1 << 64) - 1
# XINFO STREAM fields compared when both servers report them (7.0+; absent on 6.x).
STREAM_OPTIONAL_FIELDS = (
    ("max_deleted_id", b"max-deleted-entry-id"),
    ("entries_added", b"entries-added"),
    ("first_id", b"recorded-first-entry-id"),
)
FIELD_TTL_EXACT_LIMIT = 10_000  # beyond this many fields with TTLs, compare a digest (exact) instead of each TTL
UNSTABLE = "unstable"  # component set when a read saw the key change type or vanish: never equal, rechecked


@dataclass(frozen=True)
class ReadPlan:
    """How one side reads values."""

    chunk: int = 1000
    string_chunk: int = 64 * 1024
    inflight: int = 64
    field_ttls: bool = False  # read hash field TTLs (server supports them and the db may hold some)


# (TYPE reply (b"none": no such key), PTTL (-1: none, -2: gone), fingerprint or None at --level keys / filtered out).
# A plain tuple: one is built per key and side, and a NamedTuple costs twice as much to create.
KeyState = tuple[bytes, int, Fingerprint | None]


def lp(data: bytes) -> bytes:
    """Length-prefixed, so element boundaries are part of the digest."""
    return b"%d:%s" % (len(data), data)


class OrderedDigest:
    """Elements in order: their concatenation and their lengths hashed as separate streams (chunking-independent)."""

    def __init__(self) -> None:
        self.data = hashlib.blake2b(digest_size=16)
        self.lengths = hashlib.blake2b(digest_size=16)
        self.numbers = hashlib.blake2b(digest_size=16)
        self.count = 0

    def add(self, items: list[bytes]) -> None:
        self.data.update(b"".join(items))
        self.lengths.update(array("q", map(len, items)).tobytes())
        self.count += len(items)

    def add_numbers(self, values: list[float]) -> None:
        """Numbers in order (zset scores, stream field counts), as exact doubles."""
        self.numbers.update(array("d", values).tobytes())

    def result(self) -> tuple[str, str, str]:
        return self.data.hexdigest(), self.lengths.hexdigest(), self.numbers.hexdigest()


def multiplex(readers: Iterable[Reader[T]], limit: int) -> Reader[list[T]]:
    """Run readers side by side: every round sends the commands of up to `limit` active readers together."""
    queue = deque(enumerate(readers))
    results: dict[int, T] = {}
    active: dict[int, tuple[Reader[T], list[Cmd]]] = {}
    while queue or active:
        while queue and len(active) < limit:
            index, reader = queue.popleft()
            try:
                active[index] = (reader, next(reader))
            except StopIteration as stop:
                results[index] = stop.value
        if not active:
            break
        order = list(active)
        replies = yield [cmd for i in order for cmd in active[i][1]]
        pos = 0
        for i in order:
            reader, cmds = active[i]
            part, pos = replies[pos:pos + len(cmds)], pos + len(cmds)
            try:
                active[i] = (reader, reader.send(part))
            except StopIteration as stop:
                results[i] = stop.value
                del active[i]
    return [results[i] for i in range(len(results))]


TYPE_PTTL = b"*2\r\n$4\r\nTYPE\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n"
PTTL_GETRANGE = b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n*4\r\n$8\r\nGETRANGE\r\n$%d\r\n%s\r\n$1\r\n0\r\n"


def first_round(keys: list[bytes], strings_first: bool, string_chunk: int) -> Packed:
    """The first round for a batch, packed from one template per key (per-key packing is the hot path):
    TYPE + PTTL, or, when most keys are strings and values are wanted, PTTL + GETRANGE 0..chunk-1 (a string needs no
    TYPE then; the others answer WRONGTYPE and are asked TYPE in the next round)."""
    if not strings_first:
        return Packed(b"".join([TYPE_PTTL % (len(k), k, len(k), k) for k in keys]), 2 * len(keys))
    end = b"%d" % (string_chunk - 1)
    template = PTTL_GETRANGE + b"$%d\r\n%s\r\n" % (len(end), end)
    return Packed(b"".join([template % (len(k), k, len(k), k) for k in keys]), 2 * len(keys))


def read_states(keys: list[bytes], full: bool, plan: ReadPlan, wants_type: Callable[[bytes], bool] | None,
                packed: Packed, strings_first: bool) -> BatchReader[list[KeyState]]:
    """The state of every key of a batch: one packed round trip (see first_round), then values where needed.

    States are built with C-level zips; a key that is gone reads TYPE `none` (or PTTL -2 if it expired in between),
    which `classify` treats as missing.
    """
    replies = yield packed
    if strings_first:
        states, pending = yield from _strings_first(keys, replies, plan, wants_type)
    else:
        kinds, pttls = replies[0::2], replies[1::2]
        if set(map(type, kinds)) - {bytes} or set(map(type, pttls)) - {int}:
            for reply in replies:
                check(reply)
        states = list(zip(kinds, pttls, repeat(None)))
        if not full:
            return states
        pending = [(i, value_reader(keys[i], kind, None, plan)) for i, (kind, pttl, _) in enumerate(states)
                   if kind != b"none" and pttl != -2 and (wants_type is None or wants_type(kind))]
    if pending:
        fingerprints = yield from multiplex((r for _, r in pending), plan.inflight)
        for (i, _), fp in zip(pending, fingerprints, strict=True):
            states[i] = (states[i][0], states[i][1], fp)
    return states


def _strings_first(keys: list[bytes], replies: list[Any], plan: ReadPlan, wants_type: Callable[[bytes], bool] | None
                   ) -> Generator[list[Cmd], list[Any], tuple[list[KeyState], list[tuple[int, Reader[Fingerprint]]]]]:
    """PTTL + GETRANGE replies: strings are done (small) or get a reader (big); the rest need their TYPE first."""
    pttls, firsts = replies[0::2], replies[1::2]
    if set(map(type, pttls)) - {int}:
        for reply in pttls:
            check(reply)
    limit = plan.string_chunk
    states: list[KeyState] = []
    pending: list[tuple[int, Reader[Fingerprint]]] = []
    others: list[int] = []
    for i, (pttl, first) in enumerate(zip(pttls, firsts, strict=True)):
        if type(first) is bytes:
            if pttl == -2:
                states.append((b"none", -2, None))
            elif len(first) < limit:
                states.append((b"string", pttl, first))  # a small string is its own fingerprint
            else:
                states.append((b"string", pttl, None))
                pending.append((i, read_string(keys[i], first, limit)))
            continue
        if not str(first).startswith("WRONGTYPE"):
            check(first)
        states.append((b"none", pttl, None))
        others.append(i)
    if others:
        kinds = yield [(b"TYPE", keys[i]) for i in others]
        for i, kind in zip(others, kinds, strict=True):
            kind = check(kind)
            states[i] = (kind, states[i][1], None)
            if kind != b"none" and states[i][1] != -2 and (wants_type is None or wants_type(kind)):
                pending.append((i, value_reader(keys[i], kind, None, plan)))
    return states, pending


def value_reader(key: bytes, kind: bytes, first: Any, plan: ReadPlan) -> Reader[Fingerprint]:
    if kind == b"string":
        return read_string(key, first, plan.string_chunk)
    if kind == b"list":
        return read_ranked(key, b"LRANGE", plan.chunk)
    if kind == b"zset":
        return read_ranked(key, b"ZRANGE", plan.chunk)
    if kind == b"set":
        return read_unordered(key, b"SSCAN", b"SCARD", plan)
    if kind == b"hash":
        return read_unordered(key, b"HSCAN", b"HLEN", plan)
    if kind == b"stream":
        return read_stream(key, plan.chunk)
    return read_module(key)


def read_string(key: bytes, first: bytes | None, chunk: int) -> Reader[Fingerprint]:
    """GETRANGE in chunks. The fingerprint does not depend on how the value was reached: the value itself when it is
    shorter than one chunk, else a digest of all chunks."""
    piece = first if first is not None else (yield [(b"GETRANGE", key, 0, chunk - 1)])[0]
    if not isinstance(piece, bytes):  # the key changed type since TYPE was read
        return {UNSTABLE: True}
    if len(piece) < chunk:
        return piece
    digest, size = hashlib.blake2b(digest_size=16), 0
    while True:
        digest.update(piece)
        size += len(piece)
        if len(piece) < chunk:
            return {"value": digest.hexdigest(), "size": size}
        reply = (yield [(b"GETRANGE", key, size, size + chunk - 1)])[0]
        if not isinstance(reply, bytes):
            return {UNSTABLE: True}
        piece = reply


def read_ranked(key: bytes, command: bytes, chunk: int) -> Reader[Fingerprint]:
    """LRANGE / ZRANGE WITHSCORES by rank, in order: the digest covers order (and exact scores)."""
    digest = OrderedDigest()
    while True:
        args: Cmd = (command, key, digest.count, digest.count + chunk - 1)
        reply = (yield [(*args, b"WITHSCORES") if command == b"ZRANGE" else args])[0]
        if is_error(reply):
            return {UNSTABLE: True}
        if command == b"ZRANGE":
            members, scores = score_columns(reply)
            digest.add(members)
            digest.add_numbers(scores)
            got = len(members)
        else:
            digest.add(reply)
            got = len(reply)
        if got < chunk:
            return {"value": digest.result(), "size": digest.count}


class MultisetDigest:
    """Sum of element hashes modulo 2**64 and a count; with `dedup`, each distinct element counts once."""

    def __init__(self, dedup: bool = False) -> None:
        self.total = 0
        self.count = 0
        self.seen: set[int] | None = set() if dedup else None

    def add(self, hashes: Iterable[int]) -> None:
        if self.seen is None:
            values = list(hashes)
            self.total = (self.total + sum(values)) & MASK64
            self.count += len(values)
            return
        for h in hashes:
            if h not in self.seen:
                self.seen.add(h)
                self.total = (self.total + h) & MASK64
                self.count += 1


def read_unordered(key: bytes, scan: bytes, length: bytes, plan: ReadPlan) -> Reader[Fingerprint]:
    """SSCAN / HSCAN into a multiset digest; re-read with de-duplication if the scan returned duplicates."""
    is_hash = scan == b"HSCAN"
    dedup = False
    while True:
        digest, chunks, ttls = MultisetDigest(dedup), 0, FieldTtls() if is_hash and plan.field_ttls else None
        cursor: bytes = b"0"
        while True:
            reply = (yield [(scan, key, cursor, b"COUNT", plan.chunk)])[0]
            if is_error(reply):
                return {UNSTABLE: True}
            cursor, items = as_bytes(reply[0]), reply[1]
            fields = items[0::2] if is_hash else items
            digest.add(map(hash, zip(fields, items[1::2], strict=True)) if is_hash else map(hash, items))
            if ttls is not None and fields:
                ttls.add((yield [ttl_command(key, fields)])[0], fields)
            chunks += 1
            if cursor == b"0":
                break
        if chunks > 1 and not dedup:
            # Several SCAN calls may return an element twice (rehashing between calls): the count tells.
            real = as_int(check((yield [(length, key)])[0]))
            if digest.count > real:
                dedup = True
                continue
        fp: dict[str, Any] = {"value": digest.total, "size": digest.count}
        if ttls is not None:
            fp["field_ttls"] = ttls.result()
        return fp


def ttl_command(key: bytes, fields: list[bytes]) -> Cmd:
    return (b"HPEXPIRETIME", key, b"FIELDS", len(fields), *fields)


class FieldTtls:
    """Absolute field expiry times (unix ms); kept exactly up to a limit, then folded into an exact digest."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, int]] = []
        self.digest = 0
        self.count = 0

    def add(self, reply: Any, fields: list[bytes]) -> None:
        if is_error(reply):
            raise reply
        for field_name, when in zip(fields, reply, strict=False):
            if isinstance(when, int) and when > 0:
                self.count += 1
                self.digest = (self.digest + hash((field_name, when))) & MASK64
                if self.count <= FIELD_TTL_EXACT_LIMIT:
                    self.items.append((field_name, when))

    def result(self) -> Any:
        if self.count > FIELD_TTL_EXACT_LIMIT:
            return ("digest", self.count, self.digest)
        return tuple(sorted(self.items))


def read_stream(key: bytes, chunk: int) -> Reader[Fingerprint]:
    """Entries in order, stream metadata and consumer groups (PEL ids and owners, consumers, last-delivered-id)."""
    info_reply, entries, groups_reply = yield [(b"XINFO", b"STREAM", key),
                                               (b"XRANGE", key, b"-", b"+", b"COUNT", chunk),
                                               (b"XINFO", b"GROUPS", key)]
    if is_error(info_reply) or is_error(entries) or is_error(groups_reply):
        return {UNSTABLE: True}
    info = as_map(info_reply)
    fp: dict[str, Any] = {"size": as_int(info.get(b"length")), "last_id": info.get(b"last-generated-id")}
    for name, field_name in STREAM_OPTIONAL_FIELDS:
        if field_name in info:
            fp[name] = info[field_name]
    fp["entries"] = yield from stream_entries(key, entries, chunk)
    groups = sorted((as_map(g) for g in groups_reply), key=lambda g: as_bytes(g.get(b"name")))
    fp["groups"] = yield from stream_groups(key, groups, chunk)
    if groups and all(b"entries-read" in g for g in groups):
        fp["entries_read"] = tuple((g[b"name"], g[b"entries-read"]) for g in groups)
    return fp


def stream_entries(key: bytes, entries: Any, chunk: int) -> Reader[tuple[str, str, str]]:
    """Entry ids and field/value lists in order; the field count per entry keeps entry boundaries in the digest."""
    digest = OrderedDigest()
    while True:
        check(entries)
        parts: list[bytes] = []
        for entry_id, fields in entries:
            parts.append(entry_id)
            parts += fields or []
        digest.add(parts)
        digest.add_numbers([float(len(fields or ())) for _, fields in entries])
        if len(entries) < chunk:
            return digest.result()
        entries = (yield [(b"XRANGE", key, next_id(entries[-1][0]), b"+", b"COUNT", chunk)])[0]


def stream_groups(key: bytes, groups: list[dict[bytes, Any]], chunk: int) -> Reader[str]:
    digest = hashlib.blake2b(digest_size=16)
    for group in groups:
        name = as_bytes(group[b"name"])
        digest.update(lp(name) + lp(as_bytes(group.get(b"last-delivered-id"))))
        consumers, rows = yield [(b"XINFO", b"CONSUMERS", key, name), (b"XPENDING", key, name, b"-", b"+", chunk)]
        for consumer in sorted(as_bytes(as_map(c).get(b"name")) for c in check(consumers)):
            digest.update(b"c" + lp(consumer))
        while True:
            for entry_id, owner, *_ in check(rows):
                digest.update(b"p" + lp(entry_id) + lp(owner))
            if len(rows) < chunk:
                break
            rows = (yield [(b"XPENDING", key, name, next_id(rows[-1][0]), b"+", chunk)])[0]
    return digest.hexdigest()


def read_module(key: bytes) -> Reader[Fingerprint]:
    """Module types have no type-native reads here: compare the serialized body (DUMP without its version footer)."""
    payload = (yield [(b"DUMP", key)])[0]
    if not isinstance(payload, bytes):
        return {UNSTABLE: True}
    return {"module": hashlib.blake2b(payload[:-10], digest_size=16).hexdigest()}
