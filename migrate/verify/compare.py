"""Key-by-key comparison in both directions for one database pair, and the verdict for one key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from migrate.selection import KeySelection
from migrate.server import Channels
from migrate.stream.marker import is_marker_key
from migrate.verify.batch import KeyState, first_round, read_states
from migrate.verify.digest import NATIVE_TYPES, UNSTABLE, ReadPlan
from migrate.verify.fullread import NONE, FirstRound, FullRead, Outcome, Setup
from migrate.verify.lockstep import drive, exchange, guarded
from migrate.verify.replies import as_bytes, check
from migrate.verify.result import Reason
from migrate.verify.routes import Method, Routes, ValueMethod
from migrate.verify.sample import Sampler
from migrate.wire import Packed, parse

Verdict = tuple[Reason, str] | None

NOUNS = {b"string": "bytes", b"list": "elements", b"set": "members", b"zset": "members", b"hash": "fields",
         b"stream": "entries"}
VALUE_DETAIL = {
    b"string": "content differs",
    b"list": "elements or their order differ",
    b"set": "members differ",
    b"zset": "members or scores differ",
    b"hash": "field values differ",
}
STREAM_DETAIL = {
    "entries": "entries differ",
    "last_id": "last-generated-id differs",
    "max_deleted_id": "max-deleted-entry-id differs",
    "entries_added": "entries-added differs",
    "first_id": "recorded-first-entry-id differs",
    "groups": "consumer groups differ (last-delivered-id, consumers or pending entries)",
    "entries_read": "consumer group entries-read differs",
}


def logical_type(kind: bytes) -> str:
    """TYPE replies the module type name for module values; --type filters call all of them `module`."""
    return kind.decode("utf-8", "replace") if kind in NATIVE_TYPES else "module"


def classify(src: KeyState, tgt: KeyState, tolerance_ms: int, absolute: bool = False) -> Verdict:
    if src == tgt and (src[2] is None or type(src[2]) is bytes):  # the common case: same type, TTL and string
        return None
    _, src_ttl, src_fp = src
    _, tgt_ttl, tgt_fp = tgt
    # Gone: TYPE none, or PTTL -2 when the key expired between the two reads.
    src_type = None if src[0] == b"none" or src_ttl == -2 else src[0]
    tgt_type = None if tgt[0] == b"none" or tgt_ttl == -2 else tgt[0]
    if src_type is None and tgt_type is None:
        return None
    if tgt_type is None:
        return Reason.MISSING, f"{_name(src_type)} in the source only"
    if src_type is None:
        return Reason.EXTRA, f"{_name(tgt_type)} in the target only"
    if src_type != tgt_type:
        return Reason.TYPE, f"source {_name(src_type)}, target {_name(tgt_type)}"
    value = compare_values(src_type, src_fp, tgt_fp, tolerance_ms)
    ttl = compare_ttl(src_ttl, tgt_ttl, tolerance_ms, absolute)
    if value is not None and value[0] not in (Reason.MODULE_VALUE, Reason.FIELD_TTL_UNSUPPORTED):
        return (value[0], f"{value[1]}; the TTL differs too ({ttl[1]})") if ttl else value
    return ttl or value


def _name(kind: bytes | None) -> str:
    return (kind or b"none").decode("utf-8", "replace")


def compare_ttl(src: int, tgt: int, tolerance_ms: int, absolute: bool = False) -> Verdict:
    """PTTL values (ms left), or PEXPIRETIME values (absolute unix ms) when `absolute`; -1: no TTL."""
    def when(value: int) -> str:
        return f"at {value} (unix ms)" if absolute else f"in {value} ms"

    if src < 0 and tgt < 0:
        return None
    if tgt < 0:
        return Reason.TTL, f"source expires {when(src)}, target has no TTL"
    if src < 0:
        return Reason.TTL, f"target expires {when(tgt)}, source has no TTL"
    if abs(src - tgt) > tolerance_ms:
        return Reason.TTL, (f"source expires {when(src)}, target {when(tgt)}: {abs(src - tgt)} ms apart "
                            f"(tolerance {tolerance_ms} ms)")
    return None


def compare_values(kind: bytes, src: Any, tgt: Any, tolerance_ms: int) -> Verdict:
    if src is None or tgt is None:
        return None
    if (isinstance(src, dict) and UNSTABLE in src) or (isinstance(tgt, dict) and UNSTABLE in tgt):
        return Reason.VALUE, "the key changed type while it was read"  # never equal: rechecked
    if src == tgt:
        return None
    if isinstance(src, bytes) or isinstance(tgt, bytes):
        return Reason.VALUE, f"content differs ({_size(src)} vs {_size(tgt)} bytes)"
    if "module" in src:
        return Reason.MODULE_VALUE, (f"module type {_name(kind)}: serialized values differ; module values are "
                                     "not readable type-natively, so they are not compared")
    if src.get("size") != tgt.get("size"):
        noun = NOUNS.get(kind, "elements")
        return Reason.VALUE, f"source has {src.get('size')} {noun}, target {tgt.get('size')}"
    if kind == b"stream":
        return _stream_verdict(src, tgt)
    if src.get("value") != tgt.get("value"):
        return Reason.VALUE, VALUE_DETAIL.get(kind, "content differs")
    return _field_ttl_verdict(src.get("field_ttls"), tgt.get("field_ttls"), tolerance_ms)


def _size(fp: Any) -> Any:
    return len(fp) if isinstance(fp, bytes) else fp.get("size", "?")


def _stream_verdict(src: dict[str, Any], tgt: dict[str, Any]) -> Verdict:
    for component, detail in STREAM_DETAIL.items():
        if component in src and component in tgt and src[component] != tgt[component]:
            if component.endswith("_id") or component == "entries_added":
                detail = f"{detail} (source {_text(src[component])}, target {_text(tgt[component])})"
            return Reason.VALUE, detail
    return None


def _text(value: Any) -> str:
    return as_bytes(value).decode("utf-8", "replace") if value is not None else "none"


def _field_ttl_verdict(src: Any, tgt: Any, tolerance_ms: int) -> Verdict:
    if src is None and tgt:
        return Reason.FIELD_TTL, f"target has {_ttl_count(tgt)} field TTLs the source cannot hold"
    if tgt is None and src:
        return Reason.FIELD_TTL_UNSUPPORTED, (f"{_ttl_count(src)} hash field TTLs in the source; the target "
                                              "cannot store field TTLs (values compared, TTLs not)")
    if src is None or tgt is None or src == tgt:
        return None
    if isinstance(src, tuple) and isinstance(tgt, tuple) and src and tgt and not isinstance(src[0], str):
        return _field_ttl_items(dict(src), dict(tgt), tolerance_ms)
    return Reason.FIELD_TTL, f"field TTLs differ ({_ttl_count(src)} vs {_ttl_count(tgt)} fields with a TTL)"


def _ttl_count(value: Any) -> int:
    return int(value[1]) if value and value[0] == "digest" else len(value or ())


def _field_ttl_items(src: dict[bytes, int], tgt: dict[bytes, int], tolerance_ms: int) -> Verdict:
    if src.keys() != tgt.keys():
        return Reason.FIELD_TTL, (f"fields with a TTL differ: {len(src.keys() - tgt.keys())} only in the source, "
                                  f"{len(tgt.keys() - src.keys())} only in the target")
    worst = max(abs(src[f] - tgt[f]) for f in src)
    if worst > tolerance_ms:
        return Reason.FIELD_TTL, f"field TTLs differ by up to {worst} ms (tolerance {tolerance_ms} ms)"
    return None


# ---- passes ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairPlan:
    """One database pair and how each side reads it."""

    source_db: int
    target_db: int
    source_plan: ReadPlan
    target_plan: ReadPlan
    expiry: bytes = b"PTTL"  # or PEXPIRETIME when both servers have it; b"": no TTL in either database
    digest_kinds: frozenset[bytes] = frozenset()  # types settled by DEBUG DIGEST-VALUE (srvdigest.py); none: off
    digest_all: bool = False  # every value of those types (--server-digests always), not only those over DUMP_LIMIT

    @property
    def absolute(self) -> bool:
        return self.expiry == b"PEXPIRETIME"

    def new_routes(self) -> Routes:
        """The per-type methods for a comparison that is not part of a verification (tests, one-off calls)."""
        return Routes(ValueMethod.AUTO if self.source_plan.dump_bodies else ValueMethod.NATIVE)


Record = Callable[[int, int, bytes, Reason, str], None]


@dataclass(frozen=True)
class Comparison:
    compared: int  # keys in scope (by --type) among those read
    mismatches: list[tuple[bytes, Reason, str]]
    strings: int = 0  # source keys that are strings: picks the next batch's first round
    unseen: int = 0  # keys the target did not show (missing there, or gone from both sides): for stillness.py
    methods: dict[str, int] = field(default_factory=dict)  # keys whose values each method compared (routes.Method)
    kinds: dict[bytes, int] = field(default_factory=dict)  # source keys per type (--level full): the next first round


# In equal raw replies, what a key gone from both sides answers: TYPE `none`, PTTL/PEXPIRETIME -2. The same bytes
# inside a value only make the count conservative (the reverse pass then runs).
GONE_MARKS = (b"+none\r\n", b":-2\r\n")


def unseen_in(raw: bytes, keys: int) -> int:
    """Keys of an equal raw round that may be absent from both sides: none, or (conservatively) all of them."""
    return keys if any(mark in raw for mark in GONE_MARKS) else 0


def settled(raw: bytes, full: bool, strings_first: bool, string_chunk: int) -> bool:
    """Whether equal first-round bytes settle a batch: never when there is an error reply (equal refusals prove
    nothing); at --level keys always; at full only when every key is a string shorter than one chunk (no full-chunk
    GETRANGE reply) or gone. A value that merely contains such bytes only costs a parse."""
    if raw.startswith(b"-") or b"\r\n-" in raw:
        return False
    return not full or (strings_first and b"$%d\r\n" % string_chunk not in raw)


def compare_keys(source: Channels, target: Channels, pair: PairPlan, keys: list[bytes], full: bool, tolerance_ms: int,
                 selection: KeySelection, settings: Any, strings_first: bool = False,
                 first: FirstRound | None = None, routes: Routes | None = None) -> Comparison:
    """Read both sides for `keys` (same round trips) and classify every key. At --level full, `first` (or
    `strings_first`) picks the first round (fullread.py) and `routes` the method per type (shared by the batches of
    one verification; a fresh one otherwise)."""
    def wants_type(kind: bytes) -> bool:
        return kind != b"none" and selection.wants_type(logical_type(kind))

    if not keys:
        return Comparison(0, [])
    wants = wants_type if selection.types else None
    if full:
        mode = first or (FirstRound.STRINGS if strings_first else FirstRound.TYPED)
        return compare_values_of(source, target, pair, keys, tolerance_ms, wants, settings, mode,
                                 routes or pair.new_routes())
    packed = first_round(keys, pair.expiry)  # the same bytes to both servers

    def job() -> Any:
        first_replies: tuple[Any, Any] = (None, None)
        if wants is None:
            # The first round as raw bytes: equal bytes from both servers mean every reply is equal.
            src_raw, tgt_raw = exchange([(source, pair.source_db, packed.data), (target, pair.target_db, packed.data)])
            if src_raw == tgt_raw and settled(src_raw, False, False, pair.source_plan.string_chunk):
                return Comparison(len(keys), [], 0, unseen_in(src_raw, len(keys)))
            first_replies = (parse(src_raw, packed.count), parse(tgt_raw, packed.count))
        return drive([(source, pair.source_db, read_states(keys, wants, packed, first_replies[0])),
                      (target, pair.target_db, read_states(keys, wants, packed, first_replies[1]))])

    outcome = guarded(job, (source, target), settings, "compare keys")
    if isinstance(outcome, Comparison):
        return outcome
    return _verdicts(keys, outcome, wants, tolerance_ms, pair.absolute)


def compare_values_of(source: Channels, target: Channels, pair: PairPlan, keys: list[bytes], tolerance_ms: int,
                      wants: Callable[[bytes], bool] | None, settings: Any, mode: FirstRound,
                      routes: Routes) -> Comparison:
    """--level full: types, expiries and values of a batch (fullread.py), then the verdict of every key."""
    setup = Setup(source, target, pair.source_db, pair.target_db, pair.source_plan, pair.target_plan, pair.expiry,
                  routes, pair.digest_kinds, pair.digest_all, wants)

    def job() -> tuple[FullRead, Outcome | None]:
        read = FullRead(setup, keys)
        return read, read.run(mode)

    read, outcome = guarded(job, (source, target), settings, "compare keys")
    if outcome is None:  # an equal first round: every key a whole string / list / set / hash, or gone from both
        kind, gone = read.settled_batch or (b"string", 0)
        # A strings round counts the keys gone among the strings (it never looks at a reply to tell).
        strings = len(keys) if kind == b"string" else 0
        return Comparison(len(keys), [], strings, gone, {Method.NATIVE.value: len(keys) - gone},
                          {kind: len(keys) - gone})
    src, tgt = outcome.src, outcome.tgt
    states = [list(zip([k or NONE for k in side.kinds], side.ttls, side.fps, strict=True)) for side in (src, tgt)]
    if wants is None and states[0] == states[1] and all(fp is None or type(fp) is bytes for fp in src.fps):
        # Same types, expiries and settled values on both sides (the common case): no verdict to work out.
        strings = src.kinds.count(b"string")
        unseen = sum(1 for kind, ttl, _ in states[1] if kind == NONE or ttl == -2)
        result = Comparison(len(keys), [], strings, unseen)
    else:
        result = _verdicts(keys, states, wants, tolerance_ms, pair.absolute)
    methods: dict[str, int] = {}
    for method in outcome.methods.values():
        methods[method.value] = methods.get(method.value, 0) + 1
    kinds: dict[bytes, int] = {}
    for known in src.kinds:
        if known is not None and known != NONE:
            kinds[known] = kinds.get(known, 0) + 1
    return replace(result, strings=result.strings + read.gone_strings, methods=methods, kinds=kinds)


def _verdicts(keys: list[bytes], states: list[list[KeyState]], wants: Callable[[bytes], bool] | None,
              tolerance_ms: int, absolute: bool) -> Comparison:
    src_states, tgt_states = states
    strings = sum(1 for state in src_states if state[0] == b"string")
    unseen = sum(1 for state in tgt_states if state[0] == b"none" or state[1] == -2)
    if wants is None:
        verdicts = [(key, classify(s, t, tolerance_ms, absolute))
                    for key, s, t in zip(keys, src_states, tgt_states, strict=True)]
        return Comparison(len(keys), [(key, *v) for key, v in verdicts if v is not None], strings, unseen)
    mismatches, out = [], 0
    for key, src, tgt in zip(keys, src_states, tgt_states, strict=True):
        if not (wants(src[0]) or (src[0] == b"none" and wants(tgt[0]))):
            out += 1
            continue
        verdict = classify(src, tgt, tolerance_ms, absolute)
        if verdict is not None:
            mismatches.append((key, *verdict))
    return Comparison(len(keys) - out, mismatches, strings, unseen)


def scan_keys(side: Channels, db: int, selection: KeySelection, sampler: Sampler, count: int,
              settings: Any) -> Iterator[tuple[int, list[bytes]]]:
    """SCAN one database; yield (keys the filters kept before sampling, the sampled keys) per batch."""
    cursor = b"0"
    while True:
        args: tuple[Any, ...] = (b"SCAN", cursor) + ((b"MATCH", selection.match) if selection.match else ())
        cmd = (*args, b"COUNT", count)
        reply = guarded(lambda c=cmd: _call(side, db, c), (side,), settings, "scan")  # type: ignore[misc]
        cursor, found = as_bytes(reply[0]), reply[1]
        kept = [k for k in found if selection.wants_key(k) and not is_marker_key(k)] if selection.exclude else \
            [k for k in found if not is_marker_key(k)]  # a sync's position marker is no data of the source
        yield len(kept), kept if sampler.mode == "all" else [k for k in kept if sampler.wants(k)]
        if cursor == b"0":
            return


def _call(side: Channels, db: int, cmd: tuple[Any, ...]) -> Any:
    return check(drive([(side, db, _one(cmd))])[0])


def _one(cmd: tuple[Any, ...]) -> Any:
    replies = yield [cmd]
    return replies[0]


def absent_in_sources(source: Channels, source_dbs: tuple[int, ...], keys: list[bytes], settings: Any,
                      multi_key: bool = True) -> list[bytes]:
    """Keys present in none of the source databases; one multi-key EXISTS per db when all are there (not on a
    cluster node: keys of several slots in one command answer CROSSSLOT)."""
    if multi_key and len(source_dbs) == 1 and count_existing(source, source_dbs[0], keys, settings) == len(keys):
        return []
    absent = list(keys)
    for db in source_dbs:
        absent = [k for k, found in zip(absent, exists_each(source, db, absent, settings), strict=True) if not found]
    return absent


def count_existing(side: Channels, db: int, keys: list[bytes], settings: Any) -> int:
    """EXISTS k1 k2 ...: how many of these (distinct) keys exist, in one command."""
    if not keys:
        return 0
    return int(guarded(lambda: _call(side, db, (b"EXISTS", *keys)), (side,), settings, "exists"))


def exists_each(side: Channels, db: int, keys: list[bytes], settings: Any) -> list[bool]:
    if not keys:
        return []

    def job() -> list[Any]:
        replies: list[Any] = drive([(side, db, _many([(b"EXISTS", k) for k in keys]))])[0]
        return replies

    return [bool(int(check(n))) for n in guarded(job, (side,), settings, "exists")]


def _many(cmds: list[tuple[Any, ...]] | Packed) -> Any:
    replies = yield cmds
    return replies
