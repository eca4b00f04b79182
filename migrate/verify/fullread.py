"""A batch at --level full: type, expiry and size in a first round, values in the next, each by the method that costs
least for its type (routes.py), both servers in the same round trips with the same commands.

First rounds (the engine picks one from the previous batch's types):
- strings: expiry + GETRANGE 0..chunk-1 per key. A string is then read; the other keys are asked TYPE + MEMORY USAGE
  in the next round. When both servers answer the same bytes and every key is a short string, the batch is settled.
- typed: TYPE + expiry + MEMORY USAGE per key; the value round follows.
- dump (most keys are DUMPed): expiry + MEMORY USAGE per key, the value round DUMPs every small key and takes its
  type from the payload; the others are asked TYPE there.
The expiry is PEXPIRETIME or PTTL, or nothing where neither database holds a key with a TTL.

Value rounds send the same bytes to both servers: DUMP (dumpeq.py, decoded.py), DEBUG DIGEST-VALUE (srvdigest.py)
or the first type-native reads (digest.py). A key's replies that are equal on both sides and hold its whole value
settle it; only the others are digested, and values longer than one chunk go on reading side by side. Memory: the
DUMPs of one round hold at most dumpeq.DUMP_BUDGET bytes of MEMORY USAGE per side, the native reads of one round
`inflight` first chunks.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from migrate.server import Channels
from migrate.verify.batch import GETRANGE, TYPE, Templates, multiplex
from migrate.verify.decoded import Undecodable, decoded_fingerprint, payload_kind
from migrate.verify.digest import (
    NATIVE_TYPES,
    WHOLE_READS,
    Fingerprint,
    ReadPlan,
    first_commands,
    read_string,
    reader,
)
from migrate.verify.dumpeq import (
    DUMP,
    DUMP_BUDGET,
    DUMP_LIMIT,
    FOOTER,
    KIND_BY_BYTE,
    budget_groups,
    same_body,
    same_stream_without_groups,
    small,
)
from migrate.verify.lockstep import drive, exchange
from migrate.verify.replies import check, is_error, score_columns
from migrate.verify.routes import Method, Routes, ValueMethod
from migrate.verify.srvdigest import DIGEST_LIMIT
from migrate.verify.srvdigest import command as digest_command
from migrate.wire import Packed, pack, parse

MEMORY: Final = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$%d\r\n%s\r\n"
NONE: Final = b"none"
UNKNOWN: Final = -1  # a MEMORY USAGE that was refused: never small


class FirstRound(StrEnum):
    STRINGS = "strings"
    LISTS = "lists"
    SETS = "sets"
    HASHES = "hashes"
    TYPED = "typed"
    DUMP = "dump"


# First rounds that read one type's first chunk without asking TYPE or MEMORY USAGE (bounded by the chunk size, as
# type-native reads always are); keys of other types answer WRONGTYPE and are probed next.
KIND_FIRST: Final = {FirstRound.LISTS: b"list", FirstRound.SETS: b"set", FirstRound.HASHES: b"hash"}


@dataclass
class Sides:
    """Per-key state of one side: type (None: not known yet), expiry, MEMORY USAGE, fingerprint."""

    kinds: list[bytes | None]
    ttls: list[int]
    sizes: list[Any]
    fps: list[Fingerprint | None]


@dataclass
class Outcome:
    src: Sides
    tgt: Sides
    methods: dict[int, Method] = field(default_factory=dict)  # position -> what decided its value


NATIVE: Final = Method.NATIVE  # module constants: an enum member lookup per key costs more than a global
DUMP_BODY: Final = Method.DUMP_BODY

# What a key needs next: its type (TYPE on both sides), or its value by one method.
NEED_TYPE: Final = "type"
READ_DUMP: Final = "dump"
READ_DIGEST: Final = "digest"
READ_NATIVE: Final = "native"


@dataclass(frozen=True)
class Setup:
    source: Channels
    target: Channels
    source_db: int
    target_db: int
    source_plan: ReadPlan
    target_plan: ReadPlan
    expiry: bytes  # PEXPIRETIME, PTTL or b"" (no TTL on either side)
    routes: Routes
    digest_kinds: frozenset[bytes] = frozenset()
    digest_all: bool = False  # --server-digests always: every value of those types, not only big ones
    wants: Callable[[bytes], bool] | None = None


def first_round(keys: list[bytes], mode: FirstRound, expiry: bytes, plan: ReadPlan, sizes: bool) -> Packed:
    """The first round's commands, packed per key from one template (the same bytes go to both servers)."""
    head = b"*2\r\n$%d\r\n%s\r\n$%%d\r\n%%s\r\n" % (len(expiry), expiry) if expiry else b""
    if mode is FirstRound.STRINGS:
        end = b"%d" % (plan.string_chunk - 1)
        template = (head or b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n") + GETRANGE + b"$%d\r\n%s\r\n" % (len(end), end)
    elif mode in KIND_FIRST:
        (command,) = first_commands(KIND_FIRST[mode], b"\x00", plan)
        template = head + pack(command).replace(b"%", b"%%").replace(b"$1\r\n\x00\r\n", b"$%d\r\n%s\r\n")
    elif mode is FirstRound.TYPED:
        template = TYPE + head + (MEMORY if sizes else b"")
    else:
        template = head + MEMORY
    per_key = template.count(b"%s")
    return Packed(b"".join([template % ((len(k), k) * per_key) for k in keys]), per_key * len(keys))


class FullRead:
    """One batch: each step is a method that runs its round trips (both servers in each)."""

    def __init__(self, setup: Setup, keys: list[bytes]) -> None:
        self.s = setup
        self.keys = keys
        n = len(keys)
        self.src = Sides([None] * n, [-1] * n, [UNKNOWN] * n, [None] * n)
        self.tgt = Sides([None] * n, [-1] * n, [UNKNOWN] * n, [None] * n)
        self.methods: dict[int, Method] = {}
        self.readers: list[tuple[int, Any, Any]] = []  # position, source reader, target reader
        self.templates = Templates(setup.source_plan)
        self.refused: set[int] = set()  # keys whose DUMP or digest failed: read type-natively
        # (kind, gone) when an equal first round settled every key (a string / list / set / hash, or gone)
        self.settled_batch: tuple[bytes, int] | None = None
        self.gone_strings = 0  # keys gone whose GETRANGE answered (a string round counts them among the strings)
        # MEMORY USAGE is asked only when a method needs it: DUMP, digests, SMEMBERS/HGETALL of small values.
        self.sizes = (setup.routes.method is not ValueMethod.NATIVE or bool(setup.digest_kinds)) \
            and setup.source_plan.sizes

    # ---- round trips: the same bytes to both servers ----------------------------------------------------------------

    def both(self, packed: Packed) -> tuple[list[Any], list[Any], bool]:
        s = self.s
        src_raw, tgt_raw = exchange([(s.source, s.source_db, packed.data), (s.target, s.target_db, packed.data)])
        src = parse(src_raw, packed.count)
        return src, (src if src_raw == tgt_raw else parse(tgt_raw, packed.count)), src_raw == tgt_raw

    # ---- first rounds ----------------------------------------------------------------------------------------------

    def run(self, mode: FirstRound) -> Outcome | None:
        """Read and compare the batch; None when a strings round settled every key as equal (the caller counts)."""
        if mode is FirstRound.DUMP and (not self.sizes or self.s.digest_all):
            mode = FirstRound.TYPED  # DUMP needs sizes; digests of every value need the types first
        expiry = self.s.expiry or (b"PTTL" if mode is FirstRound.STRINGS else b"")
        plan = self.s.source_plan
        packed = first_round(self.keys, mode, expiry, plan, self.sizes)
        src, tgt, equal = self.both(packed)
        everyone = list(range(len(self.keys)))
        if mode is FirstRound.STRINGS:
            if equal and self.s.wants is None and self.all_short_strings(src):
                self.settled_batch = (b"string", src[0::2].count(-2))
                return None
            self.strings(src, tgt)
        elif mode in KIND_FIRST:
            kind, step = KIND_FIRST[mode], 1 + bool(expiry)
            if equal and self.s.wants is None and self.all_whole(kind, src, step):
                self.settled_batch = (kind, sum(1 for v in src[step - 1::step] if empty(kind, v)))
                return None
            self.kind_first(kind, src, tgt, step)
        elif mode is FirstRound.TYPED:
            for side, replies in ((self.src, src), (self.tgt, tgt)):
                self.probed(side, replies, typed=True, expiry=bool(expiry))
            self.values(self.route_all(everyone))
        else:
            for side, replies in ((self.src, src), (self.tgt, tgt)):
                self.probed(side, replies, typed=False, expiry=bool(expiry))
            self.values(self.dump_or_type())
        self.finish_readers()
        return Outcome(self.src, self.tgt, self.methods)

    def all_short_strings(self, replies: list[Any]) -> bool:
        """Equal strings-round replies settle the batch when every value is a string shorter than one chunk (or a
        key gone from both sides) and no reply is an error."""
        chunk = self.s.source_plan.string_chunk
        values = replies[1::2]
        return (all(type(v) is bytes and len(v) < chunk for v in values)
                and all(type(t) is int for t in replies[0::2]))

    def all_whole(self, kind: bytes, replies: list[Any], step: int) -> bool:
        """As all_short_strings, for [expiry +] the first read of `kind` (`step` replies per key): every value whole
        (or a key gone from both sides), no error."""
        plan = self.s.source_plan
        return (all(whole(kind, [v], plan) for v in replies[step - 1::step])
                and (step == 1 or all(type(t) is int for t in replies[0::step])))

    def kind_first(self, kind: bytes, src: list[Any], tgt: list[Any], step: int) -> None:
        """[expiry +] first-read replies of `kind`: its values are compared or continue; the others are probed."""
        others: list[int] = []
        for i in range(len(self.keys)):
            if step == 2:
                self.src.ttls[i], self.tgt.ttls[i] = check(src[2 * i]), check(tgt[2 * i])
            s_val, t_val = src[step * i + step - 1], tgt[step * i + step - 1]
            if type(s_val) is not list or type(t_val) is not list:
                for value in (s_val, t_val):
                    if type(value) is not list and not str(value).startswith("WRONGTYPE"):
                        check(value)
                others.append(i)
                continue
            self.src.kinds[i] = NONE if self.src.ttls[i] == -2 or empty(kind, s_val) else kind
            self.tgt.kinds[i] = NONE if self.tgt.ttls[i] == -2 or empty(kind, t_val) else kind
            if NONE in (self.src.kinds[i], self.tgt.kinds[i]) or not self._wanted(kind):
                continue
            self._native(i, [s_val], [t_val])
        if others:
            self.probe(others)
            self.values(self.route_all(others))

    def probed(self, side: Sides, replies: list[Any], typed: bool, expiry: bool,
               positions: list[int] | None = None) -> None:
        """Store one side's TYPE, expiry and MEMORY USAGE replies (each optional, in that order per key) for the
        keys at `positions` (default: all, in order)."""
        step = typed + expiry + self.sizes
        columns: list[list[Any]] = [replies[at::step] for at in range(step)]
        kinds = columns[0] if typed else None
        ttls = columns[typed] if expiry else None
        usages = columns[-1] if self.sizes else None
        if kinds is not None and set(map(type, kinds)) - {bytes}:
            for reply in kinds:
                check(reply)
        if ttls is not None and set(map(type, ttls)) - {int}:
            for reply in ttls:
                check(reply)
        where = positions if positions is not None else range(len(self.keys))
        for n, i in enumerate(where):
            if kinds is not None:
                side.kinds[i] = kinds[n]
            if ttls is not None:
                side.ttls[i] = ttls[n]
            if usages is not None:
                usage = usages[n]
                side.sizes[i] = usage if type(usage) is int else UNKNOWN
                if usage is None:
                    side.kinds[i] = NONE
            if side.ttls[i] == -2:
                side.kinds[i] = NONE

    def strings(self, src: list[Any], tgt: list[Any]) -> None:
        """PTTL/PEXPIRETIME + GETRANGE replies: strings are compared or continue; the others are probed."""
        chunk = self.s.source_plan.string_chunk
        others: list[int] = []
        for i in range(len(self.keys)):
            s_ttl, t_ttl = check(src[2 * i]), check(tgt[2 * i])
            s_val, t_val = src[2 * i + 1], tgt[2 * i + 1]
            self.src.ttls[i], self.tgt.ttls[i] = s_ttl, t_ttl
            if type(s_val) is not bytes or type(t_val) is not bytes:
                for value in (s_val, t_val):
                    if type(value) is not bytes and not str(value).startswith("WRONGTYPE"):
                        check(value)
                others.append(i)
                continue
            self.src.kinds[i] = NONE if s_ttl == -2 else b"string"
            self.tgt.kinds[i] = NONE if t_ttl == -2 else b"string"
            if s_ttl == -2 or t_ttl == -2:
                self.gone_strings += s_ttl == -2
                continue
            if not self._wanted(b"string"):
                continue
            self.methods[i] = NATIVE
            if len(s_val) < chunk and len(t_val) < chunk:
                self.src.fps[i], self.tgt.fps[i] = s_val, t_val  # a small string is its own fingerprint
            else:
                self.readers.append((i, read_string(self.keys[i], s_val, chunk), read_string(self.keys[i], t_val,
                                                                                             chunk)))
        if others:
            self.probe(others)
            self.values(self.route_all(others))

    def probe(self, positions: list[int]) -> None:
        """TYPE (+ MEMORY USAGE) for keys whose type is not known yet (their expiry is)."""
        template = TYPE + (MEMORY if self.sizes else b"")
        per_key = template.count(b"%s")
        data = b"".join([template % ((len(self.keys[i]), self.keys[i]) * per_key) for i in positions])
        src, tgt, _ = self.both(Packed(data, per_key * len(positions)))
        for side, replies in ((self.src, src), (self.tgt, tgt)):
            self.probed(side, replies, typed=True, expiry=False, positions=positions)

    # ---- which method reads a key ----------------------------------------------------------------------------------

    def _wanted(self, kind: bytes) -> bool:
        return self.s.wants is None or self.s.wants(kind)

    def route(self, i: int) -> str | None:
        """The read a key of known types needs (None: nothing to read: gone, different types, filtered out)."""
        kind = self.src.kinds[i]
        if kind is None or kind == NONE or kind != self.tgt.kinds[i] or not self._wanted(kind):
            return None
        if kind not in NATIVE_TYPES or i in self.refused:
            return READ_NATIVE  # a module value (its DUMP body: digest.read_module), or DUMP / DEBUG refused
        s_size, t_size = self.src.sizes[i], self.tgt.sizes[i]
        if self.digests(kind, s_size, t_size):
            return READ_DIGEST
        if small(s_size) and small(t_size) and self.s.routes.dumps(kind):
            return READ_DUMP
        return READ_NATIVE

    def route_all(self, positions: list[int] | range) -> list[tuple[int, str | None]]:
        """route() for many keys, with the per-type choices made once (the hot path of a mixed batch)."""
        src_kinds, tgt_kinds, src_sizes, tgt_sizes = self.src.kinds, self.tgt.kinds, self.src.sizes, self.tgt.sizes
        wants, routes, refused = self.s.wants, self.s.routes, self.refused
        dumps: dict[bytes, bool] = {}
        digesting = bool(self.s.digest_kinds) and not routes.digests_refused
        out: list[tuple[int, str | None]] = []
        for i in positions:
            kind = src_kinds[i]
            if kind is None or kind == NONE or kind != tgt_kinds[i] or (wants is not None and not wants(kind)):
                continue
            if digesting or kind not in NATIVE_TYPES or i in refused:
                out.append((i, self.route(i)))
                continue
            s_size, t_size = src_sizes[i], tgt_sizes[i]
            if 0 < s_size <= DUMP_LIMIT and 0 < t_size <= DUMP_LIMIT:
                wanted = dumps.get(kind)
                if wanted is None:
                    wanted = dumps[kind] = routes.dumps(kind)
                out.append((i, READ_DUMP if wanted else READ_NATIVE))
            else:
                out.append((i, READ_NATIVE))
        return out

    def digests(self, kind: bytes, s_size: Any, t_size: Any) -> bool:
        s = self.s
        if kind not in s.digest_kinds or s.routes.digests_refused:
            return False
        wanted = s.digest_all or not (small(s_size) and small(t_size))
        return wanted and _within(s_size, DIGEST_LIMIT) and _within(t_size, DIGEST_LIMIT)

    def dump_or_type(self) -> list[tuple[int, str | None]]:
        """First round without TYPE: DUMP what is small on both sides, ask the type of the rest."""
        out: list[tuple[int, str | None]] = []
        src_kinds, tgt_kinds = self.src.kinds, self.tgt.kinds
        for i, (s_size, t_size) in enumerate(zip(self.src.sizes, self.tgt.sizes, strict=True)):
            if 0 < s_size <= DUMP_LIMIT and 0 < t_size <= DUMP_LIMIT:  # sizes are ints here (UNKNOWN: -1)
                out.append((i, READ_DUMP))
            elif not (src_kinds[i] == NONE and tgt_kinds[i] == NONE):
                out.append((i, NEED_TYPE))
        return out

    # ---- value rounds ----------------------------------------------------------------------------------------------

    def values(self, work: list[tuple[int, str | None]]) -> None:
        """Run the reads; keys whose read could not decide (an error reply, an undecodable payload, a digest that
        differs) come back for the next round, type-natively."""
        pending = [(i, need) for i, need in work if need is not None]
        while pending:
            again = self._round(pending)
            pending = [(i, need) for i, need in again if need is not None]

    def _round(self, work: list[tuple[int, str]]) -> list[tuple[int, str | None]]:
        """One round trip: every TYPE and digest asked, DUMPs up to DUMP_BUDGET bytes of MEMORY USAGE, native reads
        of up to `inflight` keys; the rest waits for the next round."""
        by_need: dict[str, list[int]] = {}
        for i, need in work:
            by_need.setdefault(need, []).append(i)
        later: list[tuple[int, str | None]] = []
        dumps = by_need.get(READ_DUMP, [])
        if dumps and len(dumps) * DUMP_LIMIT > DUMP_BUDGET:  # else they fit in one round whatever their sizes
            src_sizes, tgt_sizes = self.src.sizes, self.tgt.sizes
            sizes = [max(src_sizes[i], tgt_sizes[i], 1) for i in dumps]
            first, *rest = [dumps] if sum(sizes) <= DUMP_BUDGET else budget_groups(dumps, sizes, DUMP_BUDGET)
            by_need[READ_DUMP] = first
            later += [(i, READ_DUMP) for group in rest for i in group]
        natives = by_need.get(READ_NATIVE, [])
        inflight = self.s.source_plan.inflight
        if len(natives) > inflight:
            by_need[READ_NATIVE] = natives[:inflight]
            later += [(i, READ_NATIVE) for i in natives[inflight:]]
        segments = [(need, positions, *self._pack(need, positions)) for need, positions in by_need.items()]
        src, tgt, _ = self.both(Packed(b"".join(data for _, _, data, _ in segments),
                                       sum(sum(counts) for _, _, _, counts in segments)))
        pos = 0
        for need, positions, _, counts in segments:
            size = sum(counts)
            later += self._handle(need, positions, counts, src[pos:pos + size], tgt[pos:pos + size])
            pos += size
        return later

    def _pack(self, need: str, positions: list[int]) -> tuple[bytes, list[int]]:
        keys = self.keys
        if need == READ_DIGEST:
            return digest_command([keys[i] for i in positions]), [1]
        if need == READ_NATIVE:
            src_sizes, tgt_sizes = self.src.sizes, self.tgt.sizes
            packed = [self.templates.pack(self.src.kinds[i] or NONE, keys[i], small(src_sizes[i])
                                          and small(tgt_sizes[i])) for i in positions]
            return b"".join(data for data, _ in packed), [count for _, count in packed]
        template = DUMP if need == READ_DUMP else TYPE
        return b"".join([template % (len(keys[i]), keys[i]) for i in positions]), [1] * len(positions)

    def _handle(self, need: str, positions: list[int], counts: list[int], src: list[Any],
                tgt: list[Any]) -> list[tuple[int, str | None]]:
        if need == READ_DUMP:
            return self._dumps(positions, src, tgt)
        if need == READ_DIGEST:
            return self._digested(positions, src[0], tgt[0])
        if need == READ_NATIVE:
            at = 0
            for i, count in zip(positions, counts, strict=True):
                self._native(i, src[at:at + count], tgt[at:at + count])
                at += count
            return []
        for i, s_kind, t_kind in zip(positions, src, tgt, strict=True):  # TYPE
            self.src.kinds[i], self.tgt.kinds[i] = check(s_kind), check(t_kind)
        return self.route_all(positions)

    def _dumps(self, positions: list[int], src: list[Any], tgt: list[Any]) -> list[tuple[int, str | None]]:
        """Equal bodies settle their keys (the common case, kept lean); the rest goes through _dumped."""
        again: list[tuple[int, str | None]] = []
        equal: dict[bytes, int] = {}
        src_kinds, tgt_kinds, methods = self.src.kinds, self.tgt.kinds, self.methods
        wants = self.s.wants
        for i, a, b in zip(positions, src, tgt, strict=True):
            if type(a) is bytes and type(b) is bytes and len(a) == len(b) and a[0] == b[0] \
                    and a[:-FOOTER] == b[:-FOOTER]:
                kind = KIND_BY_BYTE.get(a[0])
            elif same_stream_without_groups(a, b):
                kind = b"stream"
            else:
                kind = None
            if kind is not None:
                src_kinds[i] = tgt_kinds[i] = kind
                equal[kind] = equal.get(kind, 0) + 1
                if wants is None or wants(kind):
                    methods[i] = DUMP_BODY
                continue
            again += self._dumped(i, a, b)
        for kind, count in equal.items():
            self.s.routes.note(kind, True, count)
        return again

    def _dumped(self, i: int, s_payload: Any, t_payload: Any) -> list[tuple[int, str | None]]:
        for side, payload in ((self.src, s_payload), (self.tgt, t_payload)):
            if payload is None:
                side.kinds[i] = NONE  # gone since the first round
        if s_payload is None or t_payload is None:
            if self.src.kinds[i] is None or self.tgt.kinds[i] is None:
                return [(i, NEED_TYPE)]  # the present side's type, for the verdict
            return []
        if is_error(s_payload) or is_error(t_payload):  # a user without DUMP: read it type-natively
            self.refused.add(i)
            return [(i, NEED_TYPE if self.src.kinds[i] is None else READ_NATIVE)]
        if same_body(s_payload, t_payload):  # a type byte beyond those of KIND_BY_BYTE
            kind = self.src.kinds[i] or payload_kind(s_payload)
            self.src.kinds[i] = self.tgt.kinds[i] = kind
            self.s.routes.note(kind, True)
            if self._wanted(kind):
                self.methods[i] = Method.DUMP_BODY
            return []
        try:
            s_kind, t_kind = payload_kind(s_payload), payload_kind(t_payload)
            self.src.kinds[i], self.tgt.kinds[i] = s_kind, t_kind
            if s_kind != t_kind or not self._wanted(s_kind):
                return []
            self.s.routes.note(s_kind, False)
            self.src.fps[i] = decoded_fingerprint(s_payload, self.s.source_plan)
            self.tgt.fps[i] = decoded_fingerprint(t_payload, self.s.target_plan)
        except Undecodable:
            self.refused.add(i)
            self.src.fps[i] = self.tgt.fps[i] = None
            known = self.src.kinds[i]
            return [(i, READ_NATIVE if known is not None and known == self.tgt.kinds[i] else NEED_TYPE)]
        self.methods[i] = Method.DECODED_DUMP
        return []

    def _digested(self, positions: list[int], src: Any, tgt: Any) -> list[tuple[int, str | None]]:
        if is_error(src) or is_error(tgt) or not isinstance(src, list) or not isinstance(tgt, list):
            self.s.routes.digests_refused = True  # DEBUG refused after all: read them, and stop asking
            self.refused.update(positions)
            return [(i, READ_NATIVE) for i in positions]
        again: list[tuple[int, str | None]] = []
        for i, s_digest, t_digest in zip(positions, src, tgt, strict=True):
            if s_digest == t_digest and type(s_digest) is bytes:
                self.methods[i] = Method.DIGEST
            else:
                self.refused.add(i)
                again.append((i, READ_NATIVE))  # different digests decide nothing: the reads do
        return again

    def _native(self, i: int, src: list[Any], tgt: list[Any]) -> None:
        kind = self.src.kinds[i]
        assert kind is not None
        self.methods[i] = NATIVE
        plan = self.s.source_plan
        read_whole = small(self.src.sizes[i]) and small(self.tgt.sizes[i])  # as _pack chose the commands
        if src == tgt and whole(kind, src, plan, read_whole):
            return  # the same replies on both sides, holding the whole value: equal
        if kind in UNORDERED_OR_SCORED and whole(kind, src, plan, read_whole) \
                and whole(kind, tgt, plan, read_whole) \
                and canonical(kind, src, read_whole) == canonical(kind, tgt, read_whole):
            return  # the whole value on both sides, in another order or with scores printed another way: equal
        key = self.keys[i]
        self.readers.append((i, reader(kind, key, src, self.s.source_plan, read_whole),
                             reader(kind, key, tgt, self.s.target_plan, read_whole)))

    def finish_readers(self) -> None:
        if not self.readers:
            return
        s = self.s
        src_fps, tgt_fps = drive([
            (s.source, s.source_db, multiplex([r for _, r, _ in self.readers], s.source_plan.big_inflight)),
            (s.target, s.target_db, multiplex([r for _, _, r in self.readers], s.target_plan.big_inflight))])
        for (i, _, _), s_fp, t_fp in zip(self.readers, src_fps, tgt_fps, strict=True):
            self.src.fps[i], self.tgt.fps[i] = s_fp, t_fp


def empty(kind: bytes, reply: Any) -> bool:
    """A first read that shows no value: the key does not exist (no collection is empty)."""
    if kind in (b"set", b"hash"):  # a SCAN reply: no element and the cursor back at 0 (a step may return none)
        return type(reply) is list and len(reply) == 2 and reply[0] == b"0" and reply[1] == []
    return type(reply) is list and not reply


def _within(size: Any, limit: int) -> bool:
    return type(size) is int and 0 < size <= limit


def whole(kind: bytes, replies: list[Any], plan: ReadPlan, read_whole: bool = False) -> bool:
    """Whether the first type-native replies of a value hold all of it (no reader needs another round), with no
    error among them. `read_whole`: sets and hashes were read with SMEMBERS / HGETALL (digest.first_commands)."""
    if read_whole and kind in WHOLE_READS and not (kind == b"hash" and plan.field_ttls):
        return type(replies[0]) is list
    if kind == b"string":
        return type(replies[0]) is bytes and len(replies[0]) < plan.string_chunk
    if kind in (b"list", b"zset"):
        return type(replies[0]) is list and len(replies[0]) < plan.chunk
    if kind in (b"set", b"hash"):
        reply = replies[0]
        return (type(reply) is list and len(reply) == 2 and reply[0] == b"0"
                and not (kind == b"hash" and plan.field_ttls))
    if kind == b"stream":
        info, entries, groups = replies
        return type(info) is list and type(entries) is list and len(entries) < plan.chunk and groups == []
    return type(replies[0]) is bytes  # a module value's DUMP: equal payloads


UNORDERED_OR_SCORED: Final = frozenset({b"set", b"hash", b"zset"})


def canonical(kind: bytes, replies: list[Any], read_whole: bool) -> Any:
    """A whole set, hash or zset as one comparable value (for replies that differ only in order or in how scores
    are printed): members as a frozenset, fields as a dict, zset members in rank order with exact doubles."""
    reply = replies[0]
    if kind == b"set":
        return frozenset(reply if read_whole else reply[1])
    if kind == b"hash":
        items = reply if read_whole else reply[1]
        return dict(zip(items[0::2], items[1::2], strict=True))
    members, scores = score_columns(reply)
    return members, array("d", scores).tobytes()
