"""Canonical per-key fingerprints from type-native reads, independent of encoding and server version.

A fingerprint is what two servers must agree on for a key to be equal:
- a string shorter than one GETRANGE chunk is its own fingerprint (bytes); a longer one is read in chunks into a
  BLAKE2b digest;
- list, zset and stream entries are read in order (LRANGE / ZRANGE by rank / XRANGE). Whether a value fits in one
  chunk depends only on its length, so the two forms never meet for equal values: one chunk is hashed as a tuple,
  several chunks go into two BLAKE2b streams (the concatenated bytes and the element lengths, so chunk boundaries do
  not matter). zset scores enter as exact doubles (the server prints them so that they read back exactly), so a 1e-9
  change is a different fingerprint;
- set and hash are unordered, and SSCAN / HSCAN chunking depends on the encoding: each element (member, or field and
  value) is hashed alone and the hashes are added modulo 2**64 (a multiset digest). A SCAN that returned duplicates
  (rehashing between calls) is detected by the element count and read again with de-duplication;
- hashes may carry their field TTLs (HPEXPIRETIME), streams their metadata and consumer groups, as far as the server
  exposes them: a component only one side exposes is not compared.
Tuple and element hashes are Python's keyed 64-bit SipHash: both sides are hashed in the same process and the values
never leave it; a difference goes unnoticed with probability about 2**-64.

A reader is a generator started with the replies to its type's first commands (`first_commands`, sent for many keys in
one round trip); it returns at once for values that fit in one chunk, else yields the next commands it needs. Memory is
bounded by the chunk size per key, never by the key's size.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from migrate.verify.replies import as_bytes, as_int, as_map, check, is_error, next_id, score_columns
from migrate.wire import Arg

T = TypeVar("T")
Cmd = tuple[Arg, ...]
Reader = Generator[list[Cmd], list[Any], T]
Fingerprint = Any  # bytes (small string) | dict[str, Any] (components)

NATIVE_TYPES = frozenset({b"string", b"list", b"set", b"zset", b"hash", b"stream"})
WHOLE_READS = {b"set": b"SMEMBERS", b"hash": b"HGETALL"}  # for values MEMORY USAGE says are small
MASK64 = (1 << 64) - 1
# XINFO STREAM fields compared when both servers report them (7.0+; absent on 6.x).
STREAM_OPTIONAL_FIELDS = (
    ("max_deleted_id", b"max-deleted-entry-id"),
    ("entries_added", b"entries-added"),
    ("first_id", b"recorded-first-entry-id"),
)
READ_AHEAD = 4  # chunks of a long list / zset asked per round trip (memory: this x chunk per value)
FIELD_TTL_EXACT_LIMIT = 10_000  # beyond this many fields with TTLs, compare a digest (exact) instead of each TTL
UNSTABLE = "unstable"  # component set when a read saw the key change type or vanish: never equal, rechecked


@dataclass(frozen=True)
class ReadPlan:
    """How one side reads values."""

    chunk: int = 1000
    string_chunk: int = 64 * 1024
    inflight: int = 256  # keys whose first chunks are read in the same round trip
    big_inflight: int = 16  # values longer than one chunk read side by side (memory: this x READ_AHEAD x chunk)
    field_ttls: bool = False  # read hash field TTLs (server supports them and the db may hold some)
    holds_field_ttls: bool = False  # the server can store hash field TTLs at all (decoded.py: which side lacks them)
    dump_bodies: bool = True  # settle small collections by equal DUMP bodies first (dumpeq.py)
    sizes: bool = True  # MEMORY USAGE may be asked: not on a server an empty list would crash (migrate.sizes)


def first_commands(kind: bytes, key: bytes, plan: ReadPlan, whole: bool = False) -> list[Cmd]:
    """The commands every value of this type starts with (the batch sends them for many keys at once). `whole`: the
    value is known to be small (MEMORY USAGE), so a set or hash is read whole (SMEMBERS, HGETALL: cheaper for the
    server than a SCAN, and both servers answer them in the same order after a migration)."""
    chunk = plan.chunk
    if whole and kind in WHOLE_READS and not (kind == b"hash" and plan.field_ttls):
        return [(WHOLE_READS[kind], key)]
    if kind == b"string":
        return [(b"GETRANGE", key, 0, plan.string_chunk - 1)]
    if kind == b"list":
        return [(b"LRANGE", key, 0, chunk - 1)]
    if kind == b"zset":
        return [(b"ZRANGE", key, 0, chunk - 1, b"WITHSCORES")]
    if kind == b"set":
        return [(b"SSCAN", key, 0, b"COUNT", chunk)]
    if kind == b"hash":
        return [(b"HSCAN", key, 0, b"COUNT", chunk)]
    if kind == b"stream":
        return [(b"XINFO", b"STREAM", key), (b"XRANGE", key, b"-", b"+", b"COUNT", chunk), (b"XINFO", b"GROUPS", key)]
    return [(b"DUMP", key)]


def reader(kind: bytes, key: bytes, replies: list[Any], plan: ReadPlan, whole: bool = False) -> Reader[Fingerprint]:
    """The reader of one value, given the replies to its first_commands (`whole`: as first_commands)."""
    if whole and kind in WHOLE_READS and not (kind == b"hash" and plan.field_ttls):
        if failed(replies[0]):
            return _unstable()
        return read_unordered(key, kind, [b"0", replies[0]], plan)  # as the one reply of a complete SCAN
    if kind == b"string":
        return read_string(key, replies[0], plan.string_chunk)
    if kind in (b"list", b"zset"):
        return read_ranked(key, kind, replies[0], plan.chunk)
    if kind in (b"set", b"hash"):
        return read_unordered(key, kind, replies[0], plan)
    if kind == b"stream":
        return read_stream(key, replies, plan.chunk)
    return read_module(replies[0])


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

    def result(self) -> tuple[bytes, bytes, bytes]:
        return self.data.digest(), self.lengths.digest(), self.numbers.digest()


def failed(reply: Any) -> bool:
    """Whether a reply is an error. WRONGTYPE means the key changed type while it was read (the fingerprint is then
    UNSTABLE: never equal, rechecked); any other error (NOPERM, ...) is raised: two servers refusing alike prove
    nothing."""
    if not is_error(reply):
        return False
    if str(reply).startswith("WRONGTYPE"):
        return True
    raise reply


def read_string(key: bytes, first: Any, chunk: int) -> Reader[Fingerprint]:
    if failed(first) or not isinstance(first, bytes):
        return {UNSTABLE: True}
    if len(first) < chunk:
        return first
    digest, size, piece = hashlib.blake2b(digest_size=16), 0, first
    while True:
        digest.update(piece)
        size += len(piece)
        if len(piece) < chunk:
            return {"value": digest.digest(), "size": size}
        reply = (yield [(b"GETRANGE", key, size, size + chunk - 1)])[0]
        if failed(reply) or not isinstance(reply, bytes):
            return {UNSTABLE: True}
        piece = reply


def _ranked_items(kind: bytes, reply: Any) -> tuple[list[bytes], list[float] | None]:
    if kind == b"zset":
        return score_columns(reply)
    return check(reply), None


def read_ranked(key: bytes, kind: bytes, first: Any, chunk: int) -> Reader[Fingerprint]:
    """LRANGE / ZRANGE WITHSCORES by rank, in order: the fingerprint covers order (and exact scores). Ranks are
    addressable, so after the first chunk READ_AHEAD chunks are asked per round trip."""
    if failed(first):
        return {UNSTABLE: True}
    items, scores = _ranked_items(kind, first)
    if len(items) < chunk:
        return {"value": hash((tuple(items), tuple(scores or ()))), "size": len(items)}
    digest = OrderedDigest()
    replies: list[Any] = [first]
    while True:
        for reply in replies:
            if failed(reply):
                return {UNSTABLE: True}
            items, scores = _ranked_items(kind, reply)
            digest.add(items)
            if scores is not None:
                digest.add_numbers(scores)
            if len(items) < chunk:
                return {"value": digest.result(), "size": digest.count}
        start = digest.count
        replies = yield [_range(kind, key, start + n * chunk, chunk) for n in range(READ_AHEAD)]


def _range(kind: bytes, key: bytes, start: int, chunk: int) -> Cmd:
    if kind == b"zset":
        return (b"ZRANGE", key, start, start + chunk - 1, b"WITHSCORES")
    return (b"LRANGE", key, start, start + chunk - 1)


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


def read_unordered(key: bytes, kind: bytes, first: Any, plan: ReadPlan) -> Reader[Fingerprint]:
    """SSCAN / HSCAN into a multiset digest; re-read with de-duplication if the scan returned duplicates."""
    is_hash = kind == b"hash"
    scan, length = (b"HSCAN", b"HLEN") if is_hash else (b"SSCAN", b"SCARD")
    dedup, reply = False, first
    while True:
        digest, chunks, ttls = MultisetDigest(dedup), 0, FieldTtls() if is_hash and plan.field_ttls else None
        while True:
            if failed(reply):
                return {UNSTABLE: True}
            cursor, items = as_bytes(reply[0]), reply[1]
            fields = items[0::2] if is_hash else items
            digest.add(map(hash, zip(fields, items[1::2], strict=True)) if is_hash else map(hash, items))
            chunks += 1
            more: list[Cmd] = [(scan, key, cursor, b"COUNT", plan.chunk)] if cursor != b"0" else []
            if ttls is not None and fields:
                got = yield [ttl_command(key, fields), *more]  # this chunk's TTLs with the next chunk
                ttls.add(got[0], fields)
                reply = got[1] if more else None
            elif more:
                reply = (yield more)[0]
            if not more:
                break
        if chunks > 1 and not dedup:
            # Several SCAN calls may return an element twice (rehashing between calls): the count tells.
            real = as_int(check((yield [(length, key)])[0]))
            if digest.count > real:
                dedup, reply = True, (yield [(scan, key, 0, b"COUNT", plan.chunk)])[0]
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
        for field_name, when in zip(fields, check(reply), strict=False):
            if isinstance(when, int) and when > 0:
                self.count += 1
                self.digest = (self.digest + hash((field_name, when))) & MASK64
                if self.count <= FIELD_TTL_EXACT_LIMIT:
                    self.items.append((field_name, when))

    def result(self) -> Any:
        if self.count > FIELD_TTL_EXACT_LIMIT:
            return ("digest", self.count, self.digest)
        return tuple(sorted(self.items))


def read_stream(key: bytes, replies: list[Any], chunk: int) -> Reader[Fingerprint]:
    """Entries in order, stream metadata and consumer groups (PEL ids, owners and delivery counts, consumers,
    last-delivered-id)."""
    info_reply, entries, groups_reply = replies
    if failed(info_reply) or failed(entries) or failed(groups_reply):
        return {UNSTABLE: True}
    info = as_map(info_reply)
    fp: dict[str, Any] = {"size": as_int(info.get(b"length")), "last_id": info.get(b"last-generated-id")}
    for name, field_name in STREAM_OPTIONAL_FIELDS:
        if field_name in info:
            fp[name] = info[field_name]
    fp["entries"] = yield from stream_entries(key, entries, chunk)
    groups = sorted((as_map(g) for g in groups_reply), key=lambda g: as_bytes(g.get(b"name")))
    fp["groups"] = (yield from stream_groups(key, groups, chunk)) if groups else None
    if groups and all(b"entries-read" in g for g in groups):
        fp["entries_read"] = tuple((g[b"name"], g[b"entries-read"]) for g in groups)
    return fp


def stream_entries(key: bytes, entries: Any, chunk: int) -> Reader[Any]:
    """Entry ids and field/value lists in order; the field count per entry keeps entry boundaries in the digest."""
    if len(check(entries)) < chunk:
        return hash(tuple((entry_id, tuple(fields or ())) for entry_id, fields in entries))
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


def stream_groups(key: bytes, groups: list[dict[bytes, Any]], chunk: int) -> Reader[bytes]:
    digest = hashlib.blake2b(digest_size=16)
    for group in groups:
        name = as_bytes(group[b"name"])
        digest.update(lp(name) + lp(as_bytes(group.get(b"last-delivered-id"))))
        consumers, rows = yield [(b"XINFO", b"CONSUMERS", key, name), (b"XPENDING", key, name, b"-", b"+", chunk)]
        for consumer in sorted(as_bytes(as_map(c).get(b"name")) for c in check(consumers)):
            digest.update(b"c" + lp(consumer))
        while True:
            for entry_id, owner, _, deliveries in check(rows):  # idle time: relative, read a moment apart
                digest.update(b"p" + lp(entry_id) + lp(owner) + lp(b"%d" % deliveries))
            if len(rows) < chunk:
                break
            rows = (yield [(b"XPENDING", key, name, next_id(rows[-1][0]), b"+", chunk)])[0]
    return digest.digest()


def _unstable() -> Reader[Fingerprint]:
    yield from ()
    return {UNSTABLE: True}


def lp(data: bytes) -> bytes:
    """Length-prefixed, so element boundaries are part of the digest."""
    return b"%d:%s" % (len(data), data)


def read_module(payload: Any) -> Reader[Fingerprint]:
    """Module types have no type-native reads here: compare the serialized body (DUMP without its version footer)."""
    yield from ()  # a reader like the others, done without another round trip
    if failed(payload) or not isinstance(payload, bytes):
        return {UNSTABLE: True}
    return {"module": hashlib.blake2b(payload[:-10], digest_size=16).digest()}
