"""How each value is read at --level full: the method per type, learned from the data while verification runs.

Methods (reported per key, `methods` in the JSON report):
- dump-body: one DUMP per side, equal bodies (dumpeq.py);
- decoded-dump: one DUMP per side, bodies that differ decoded and compared as canonical values (decoded.py);
- digest: DEBUG DIGEST-VALUE on both sides, equal digests (srvdigest.py); no value is read;
- native: type-native reads (digest.py), whose replies settle the key at once when both servers sent the same ones.

Which one is tried first for a small value of a type (--value-method auto), from server CPU per command measured on
Redis 7.0 / 8.0 and Valkey 8.1 / 9.1 (bench/RESULTS.md, "verify: where the time goes") and Python CPU per key:
strings are read with GETRANGE (a DUMP costs Valkey and Redis 8 about 1.9 us, GETRANGE 0.6); lists with LRANGE (1.1-1.7
us, about a DUMP's cost, and both servers send the same reply after a migration, settled without a digest); hashes,
zsets, sets and streams are DUMPed (ZRANGE costs 3-6 us, XINFO STREAM + XRANGE + XINFO GROUPS about 5, a DUMP 1.2-3.5
and MEMORY USAGE 0.4). A type whose bodies keep differing is read type-natively from then on where decoding both
payloads in Python costs more than the reads (sets: about 7 us of Python per key against a SMEMBERS / SSCAN reply
compared as a set; hashes, lists, zsets alike), and still decoded where it does not (streams, whose type-native reads
take three to five commands); one batch in RETRY_EVERY keeps trying DUMP, so a change in the data is noticed. The first
round of a batch made mostly of one type follows the same measurements (fullread.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Method(StrEnum):
    """What proved a key's value equal (or found it different). Values are part of the JSON report."""

    DUMP_BODY = "dump-body"
    DECODED_DUMP = "decoded-dump"
    DIGEST = "digest"
    NATIVE = "native"


class ValueMethod(StrEnum):
    """--value-method: auto (per type, as measured), dump (DUMP and decode every small value), native (never DUMP)."""

    AUTO = "auto"
    DUMP = "dump"
    NATIVE = "native"


class Digests(StrEnum):
    """--server-digests: never, big (values over the DUMP limit, instead of chunked reads), always (every value)."""

    NEVER = "never"
    BIG = "big"
    ALWAYS = "always"


# Types DUMPed first under --value-method auto.
DUMP_FIRST: Final = frozenset({b"hash", b"zset", b"set", b"stream"})
# After bodies kept differing: read these type-natively (cheaper than decoding both sides), decode the others.
NATIVE_WHEN_BODIES_DIFFER: Final = frozenset({b"set", b"hash", b"list", b"zset"})
LEARN: Final = 32  # DUMP outcomes seen before a type may leave the DUMP path
RETRY_EVERY: Final = 64  # a type read type-natively still tries DUMP in one batch in this many
DECAY: Final = 256  # outcomes weigh less as they age: counts halve beyond this total


@dataclass
class Odds:
    equal: int = 0
    differ: int = 0
    skipped: int = 0  # keys of this type not DUMPed since it left the DUMP path


# Releases whose DUMP costs the server less than reading a small hash type-natively (server CPU per 20-field hash,
# bench/RESULTS.md "verify: where the time goes"): Redis 7.0 DUMP 1.4 us + MEMORY USAGE 0.4 against HSCAN 3.5; from
# 7.2 on (Redis 8.0, Valkey) DUMP has a fixed cost of about 1.5 us more (2.7-2.9 us) and HSCAN costs 1.8-3.0.
CHEAP_DUMP_BEFORE: Final[dict[str, tuple[int, int]]] = {"redis": (7, 2)}


def cheap_dump(product: str, version: tuple[int, ...]) -> bool:
    first = CHEAP_DUMP_BEFORE.get(product)
    return first is not None and tuple(version[:2]) < first


@dataclass
class Routes:
    """The per-type choice for one verification (shared by its worker threads: a counter lost to a race only delays
    a switch; every method decides every key correctly)."""

    method: ValueMethod = ValueMethod.AUTO
    source_dumps_cheaply: bool = False  # cheap_dump() of the source: a batch of hashes is DUMPed, not HSCANned
    odds: dict[bytes, Odds] = field(default_factory=dict)
    digests_refused: bool = False  # a server refused DEBUG DIGEST-VALUE during this verification

    def dumps(self, kind: bytes) -> bool:
        """Whether a small value of this type is DUMPed (else read type-natively)."""
        if self.method is not ValueMethod.AUTO:
            return self.method is ValueMethod.DUMP
        if kind not in DUMP_FIRST:
            return False
        odds = self.odds.get(kind)
        if odds is None or odds.equal + odds.differ < LEARN or odds.equal >= odds.differ:
            return True
        if kind not in NATIVE_WHEN_BODIES_DIFFER:
            return True  # decoding both payloads still costs less than the type-native reads
        odds.skipped += 1
        return odds.skipped % RETRY_EVERY == 0

    def dump_first(self, kind: bytes) -> bool:
        """Whether a batch mostly of this type starts with MEMORY USAGE and DUMP rather than a type-native read
        (fullread.KIND_FIRST): zsets and streams always (ZRANGE, XINFO cost more than DUMP everywhere), hashes where
        the source DUMPs cheaply; none whose bodies keep differing."""
        if kind == b"hash" and not self.source_dumps_cheaply:
            return False
        return kind in (b"hash", b"zset", b"stream") and self.dumps(kind)

    def note(self, kind: bytes, equal: bool, count: int = 1) -> None:
        odds = self.odds.setdefault(kind, Odds())
        if equal:
            odds.equal += count
        else:
            odds.differ += count
        if odds.equal + odds.differ > DECAY:
            odds.equal, odds.differ = odds.equal // 2, odds.differ // 2
