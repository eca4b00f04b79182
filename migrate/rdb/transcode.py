"""Streaming RDB transcoder: any RDB file or stream this reader reads (RDB 1-12, Valkey 80/81) into a valid file for
one target release, at reader speed for everything the target reads as it is.

How the bytes travel. The reader parses the input structurally (capture_payload=False); a tee between the input and
the reader keeps each chunk it reads until the transcoder has either copied it or skipped it. Every record the target
reads as it is (the common case: key records whose type byte it knows, aux fields, SELECTDB, RESIZEDB, expiries,
LRU/LFU, functions) is copied byte for byte from the tee in runs of about a megabyte: no decode, no re-encode. Only
the header (the target's magic and version), records the target would refuse, and the checksum are replaced:
- keys of a type byte the target does not read are decoded (migrate.rdb.decode) and re-encoded in a form it reads
  (migrate.rdb.reencode), named as changed when the target cannot hold all of the value (field TTLs on Valkey 8);
- module values and module aux data the target has no module for, and function libraries on a target without
  functions, follow the policy (fail / skip / lossy);
- SLOT_INFO opcodes are dropped for a target whose loader does not know them (Redis before 7.4, Valkey before 9.0):
  they are size hints, not data. SLOT_IMPORT (Valkey 9: a slot import in progress on the node that saved the file)
  is always dropped: it describes a job of the source cluster, and a Valkey 9.1.2 started standalone on a file
  holding one crashes (measured; in cluster mode it marks the job failed and cleans it up). The keys are kept;
- AUX fields are kept (every loader skips the ones it does not know), except those named in options.drop_aux and a
  malformed `slot-info` for a Valkey target (the one AUX field a loader parses and can refuse);
- empty collections are dropped, as every loader skips them (RDB_LOAD_ERR_EMPTY_KEY);
- keys whose expiry has passed are dropped, as a primary drops them when it loads a file (rdb.c: `iAmPrimary() &&
  expiretime != -1 && expiretime < now`); TranscodeOptions(drop_expired=False) keeps them (what a replica does).
The output CRC64 is computed on the fly over what is written (anycrc: 34 MiB in 0.004 s measured, under 1% of a
transcode: no "zero checksum" mode is offered). Memory is bounded by the largest record plus a chunk.

Policy `fail` never leaves an output behind: a file is written to a temporary name in the target folder and renamed
only when complete; the chunk API runs a pre-pass (precheck) first when the input is a file, so that a replica is
never fed a sync that stops half-way. precheck() is that pre-pass on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

import anycrc

from migrate.errors import BadInputError, ConfigError, IncompatibleDataError, MigrationError
from migrate.facts import types as T
from migrate.incompatible import OnIncompatible
from migrate.rdb import constants as C
from migrate.rdb import empty
from migrate.rdb.decode import decode_object, stream_inconsistency
from migrate.rdb.reader import DEFAULT_MAX_VALUE, KeyTuple, RdbReader, Source
from migrate.rdb.records import (
    AuxField,
    End,
    FunctionRecord,
    ModuleAux,
    ResizeDb,
    SelectDb,
    SlotImport,
    SlotInfo,
)
from migrate.rdb.reencode import UnsupportedLogicalType, listpack_ex_as_listpack, reencode
from migrate.rdb.target import TargetFormat
from migrate.rdb.values import StreamValue
from migrate.rdb.writer import key_record
from migrate.render import display_key

_CRC: Final = anycrc.Model("CRC64-REDIS")
HEADER_LEN: Final = 9
DEFAULT_CHUNK: Final = 1 << 20
DEFAULT_LIST_LIMIT: Final = 1000
# A collection record of at most this many bytes may be empty (an empty listpack is 7 bytes, an empty ziplist 11,
# HASH_LISTPACK_EX adds 8): only those are looked at (migrate.rdb.empty) before being copied. A quicklist of empty
# nodes takes 12 (ziplist) or 9 (listpack) bytes a node: one, or two, fit; more are copied and skipped by the loader
# without being named (no server writes empty nodes; a reload by key looks at up to empty.CAPTURE_BYTES).
_MAYBE_EMPTY_SIZE: Final = 20
_SLOT_INFO_AUX: Final = re.compile(rb"\s*[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+),\s*[+-]?[0-9]+,\s*[+-]?[0-9]+")

# What happens to a key record, by type byte (the fast path tests these small ints).
_PASS_STRING: Final = 0  # copied, nothing to check
_PASS: Final = 1  # copied, unless it is an empty collection
_CONVERT: Final = 2  # decoded and re-encoded
_MODULE: Final = 3  # copied where the target has the module, else the policy decides
_REFUSED_DB: Final = 4  # the key's database is beyond the target's `databases`
_STREAM: Final = 5  # a stream, for a target that refuses one whose counters disagree with its entries: checked


Policy = OnIncompatible  # the policy of every verb (migrate.incompatible)


@dataclass(frozen=True)
class TranscodeOptions:
    drop_expired: bool = True  # drop keys whose expiry has passed, as a primary does when it loads the file
    now_ms: int | None = None  # the "now" of expiries (default: the clock when the transcode starts)
    list_limit: int = DEFAULT_LIST_LIMIT  # keys named per report list; the rest are counted
    drop_aux: frozenset[str] = frozenset()  # AUX field names to leave out (every target skips unknown ones)
    verify_checksum: bool = True  # check the input's CRC64 (a mismatch fails the transcode: no output is left)
    chunk_size: int = DEFAULT_CHUNK  # bytes per output chunk and per copied run
    max_value_bytes: int = DEFAULT_MAX_VALUE  # largest record accepted from a stream of unknown size


# -- results ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyNote:
    db: int
    key: str  # migrate.render.display_key of the key name
    type_name: str  # the source type byte's name, e.g. HASH_LISTPACK_EX
    detail: str  # what was lost, or why it was left out


@dataclass(frozen=True)
class NamedKeys:
    """Keys named in a report: the first `list_limit` listed, every one counted."""

    listed: tuple[KeyNote, ...] = ()
    total: int = 0

    @property
    def unlisted(self) -> int:
        return self.total - len(self.listed)


@dataclass(frozen=True)
class DbCounts:
    db: int
    keys_read: int
    keys_written: int  # passed through + converted
    converted: int
    dropped: int  # empty, expired, skipped


@dataclass(frozen=True)
class Incompatibility:
    """A record the target cannot hold as it is, and what the policy does with it."""

    db: int | None
    key: str | None  # display_key of the key; None for records that are not keys
    record: str  # "key", "function", "module aux" or "database"
    type_name: str  # e.g. HASH_LISTPACK_EX, MODULE_2 (ReJSON-RL), FUNCTION2
    reason: str
    losses: tuple[str, ...]  # what a lossy write drops; () when nothing of it can be written
    outcome: str  # under the policy: "fail" (stops the transcode), "skip" or "lossy"

    @property
    def blocks(self) -> bool:
        return self.outcome == Policy.FAIL.value

    def describe(self) -> str:
        what = f"key {self.key} in db {self.db}" if self.key is not None else self.record
        lost = f" (a lossy copy would drop: {', '.join(self.losses)})" if self.losses else ""
        return f"{what} ({self.type_name}): {self.reason}{lost}"


@dataclass(frozen=True)
class TranscodeReport:
    source: str
    target: str  # e.g. "Valkey 8.1"
    policy: str
    input_magic: str  # "REDIS" / "VALKEY"
    input_version: int
    output_version: int
    input_bytes: int
    output_bytes: int
    seconds: float
    keys_read: int
    keys_written: int  # passed through + converted
    passed_through: int  # copied byte for byte
    converted: dict[str, int]  # "SOURCE_TYPE -> WRITTEN_TYPE" -> keys
    changed: NamedKeys  # converted with losses (policy lossy); detail: "lost: ..."
    skipped: NamedKeys  # left out by the policy; detail: why
    empty: NamedKeys  # empty collections, dropped as the server does
    expired: NamedKeys  # expiry already passed, dropped as a primary does on load
    fields_expired: int  # hash fields dropped from converted hashes because their TTL had passed
    aux_kept: tuple[str, ...]
    aux_dropped: tuple[str, ...]
    opcodes_dropped: dict[str, int]  # e.g. {"SLOT_INFO": 16384}
    module_aux_dropped: tuple[str, ...]  # module type names
    functions: tuple[str, ...]  # function libraries written
    functions_dropped: tuple[str, ...]
    dbs: tuple[DbCounts, ...]
    input_checksum_ok: bool | None  # None: the input had no checksum (RDB < 5) or a zero one


# -- the tee between the input and the reader -----------------------------------------------------------------------

class _Tee:
    """The input as the reader reads it; chunks are kept until the transcoder has copied or skipped them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        read1 = getattr(raw, "read1", None)
        self._read_some = read1 if read1 is not None else raw.read
        self._chunks: deque[bytes] = deque()
        self._start = 0  # input offset of self._chunks[0][0]

    def read(self, n: int = -1) -> bytes:
        return self._keep(self._raw.read(n))

    def read1(self, n: int = -1) -> bytes:
        return self._keep(self._read_some(n))

    def _keep(self, data: bytes) -> bytes:
        if data:
            self._chunks.append(data)
        return data

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:
        return self._raw.tell()

    def pieces(self, start: int, end: int) -> list[memoryview]:
        """The input bytes [start, end) as views of the kept chunks; everything before `end` is then released."""
        self._release(start)
        out = list(self._views(start, end))
        self._release(end)
        return out

    def bytes_at(self, start: int, end: int) -> bytes:
        """A copy of [start, end) without releasing anything (a record about to be decoded)."""
        return b"".join(self._views(start, end))

    def _views(self, start: int, end: int) -> Iterator[memoryview]:
        """The parts of the kept chunks that hold the bytes [start, end)."""
        offset = self._start
        for chunk in self._chunks:
            chunk_end = offset + len(chunk)
            if offset >= end:
                return
            if chunk_end > start:
                yield memoryview(chunk)[max(start, offset) - offset:min(end, chunk_end) - offset]
            offset = chunk_end

    def _release(self, upto: int) -> None:
        chunks = self._chunks
        while chunks and self._start + len(chunks[0]) <= upto:
            self._start += len(chunks.popleft())


# -- report accumulation -------------------------------------------------------------------------------------------

class _Names:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.listed: list[KeyNote] = []
        self.total = 0

    def add(self, db: int, key: bytes, type_name: str, detail: str) -> None:
        self.total += 1
        if len(self.listed) < self.limit:
            self.listed.append(KeyNote(db, display_key(key), type_name, detail))

    def freeze(self) -> NamedKeys:
        return NamedKeys(tuple(self.listed), self.total)


class _Tally:
    def __init__(self, limit: int) -> None:
        self.changed, self.skipped, self.empty, self.expired = (_Names(limit) for _ in range(4))
        self.converted: dict[tuple[int, int], int] = {}  # (source type byte, written type byte) -> keys
        self.fields_expired = 0
        self.aux_kept: list[str] = []
        self.aux_dropped: list[str] = []
        self.opcodes_dropped: dict[str, int] = {}
        self.module_aux_dropped: list[str] = []
        self.functions: list[str] = []
        self.functions_dropped: list[str] = []
        # per db: [read, written by copy, converted, dropped]; keys copied on the fast path are counted in bulk
        self.dbs: dict[int, list[int]] = {}

    def db(self, db: int) -> list[int]:
        return self.dbs.setdefault(db, [0, 0, 0, 0])


class _Stop(Exception):
    """precheck found as many incompatibilities as it was asked for."""


# -- the transcoder -------------------------------------------------------------------------------------------------

class _Transcoder:
    """One pass over one input: yields the output (or, for precheck, only collects incompatibilities)."""

    def __init__(self, source: IO[bytes], name: str, target: TargetFormat, policy: Policy,
                 options: TranscodeOptions, *, collect: bool = False, limit: int | None = None) -> None:
        self.tee = _Tee(source)
        self.name = name
        self.target = target
        self.policy = policy
        self.options = options
        self.collect = collect  # precheck: record incompatibilities, never raise for them, write nothing
        self.limit = limit
        self.found: list[Incompatibility] = []
        self.now = options.now_ms if options.now_ms is not None else int(time.time() * 1000)
        self.tally = _Tally(options.list_limit)
        self.crc = 0
        self.output_bytes = 0
        self.started = time.perf_counter()
        self.end: End | None = None
        self.reader = RdbReader(cast(IO[bytes], self.tee), capture_payload=False,  # the tee has what the reader uses
                                verify_checksum=options.verify_checksum, max_value_bytes=options.max_value_bytes,
                                chunk_size=options.chunk_size)
        self.dialect = self.reader.product
        self.label = target.label
        self.actions = self._actions()
        self.empties = empty.EmptyCheck(self.reader.rdb_version)
        self.current_db = 0
        self.copied_pending = 0  # keys copied on the fast path and not yet in the tally (see keys_read)
        self.db_refused = False

    def _actions(self) -> list[int]:
        out = [_CONVERT] * 256
        out[0] = _PASS_STRING if self.target.reads_type(0, self.dialect) else _CONVERT
        checked = self.target.capabilities.stream_counts_checked
        for t in range(1, 256):
            if t in (6, 7):
                out[t] = _MODULE
            elif self.target.reads_type(t, self.dialect):
                out[t] = _STREAM if checked and t in T.STREAM_TYPE_BYTES else _PASS
        return out

    # -- output ------------------------------------------------------------------------------------------------

    def _out(self, pieces: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
        for piece in pieces:
            if piece:
                self.crc = _CRC.calc(piece, self.crc)
                self.output_bytes += len(piece)
                yield piece

    def _copy(self, start: int, end: int) -> Iterator[bytes | memoryview]:
        pieces = self.tee.pieces(start, end)
        if not self.collect:
            yield from self._out(pieces)

    def _write(self, data: bytes) -> Iterator[bytes | memoryview]:
        if not self.collect:
            yield from self._out((data,))

    # -- the pass ------------------------------------------------------------------------------------------------

    def run(self) -> Iterator[bytes | memoryview]:
        """The output: the target's header, the records, EOF and the CRC64 of all that precedes it."""
        yield from self._write(self.target.magic)
        reader, actions = self.reader, self.actions
        flush_at = self.options.chunk_size
        now = self.now if self.options.drop_expired else -(1 << 63)
        copy_from = prev_end = HEADER_LEN
        copied = 0  # keys copied on the fast path since the last SELECTDB
        for item in reader.scan():
            end = reader.bytes_read
            if type(item) is tuple:
                act = actions[item[3]]
                expire = item[4]
                if (act == _PASS_STRING or (act == _PASS and item[9] > _MAYBE_EMPTY_SIZE)) and (
                        expire is None or expire >= now):  # the throughput path: copied, nothing decoded
                    copied += 1
                    prev_end = end
                    if end - copy_from >= flush_at:
                        self.copied_pending = copied  # for keys_read() while the output is consumed
                        yield from self._copy(copy_from, end)
                        copy_from = end
                    continue
                replacement = self._key(item, end, act, now)
            elif isinstance(item, End):
                self._count_copied(copied)
                self.copied_pending = 0
                yield from self._copy(copy_from, item.offset)
                yield from self._write(b"\xff")
                yield from self._write(self.crc.to_bytes(8, "little"))
                self.end = item
                return
            else:
                if isinstance(item, SelectDb):
                    self._count_copied(copied)
                    copied = self.copied_pending = 0
                replacement = self._record(item)
                actions = self.actions  # a SELECTDB beyond the target's databases changes them
            if replacement is not None:  # write `replacement` instead of the record [prev_end, end)
                yield from self._copy(copy_from, prev_end)
                yield from self._write(replacement)
                copy_from = end
            elif end - copy_from >= flush_at:
                yield from self._copy(copy_from, end)
                copy_from = end
            prev_end = end
        raise BadInputError(f"{self.name}: the RDB data ends without its EOF marker")  # the reader raises first

    def _count_copied(self, copied: int) -> None:
        counts = self.tally.db(self.current_db)
        counts[0] += copied
        counts[1] += copied

    def keys_read(self) -> int:
        """Key records read so far (the fast path's counted about every chunk): progress, not the report."""
        return sum(counts[0] for counts in self.tally.dbs.values()) + self.copied_pending

    # -- keys ----------------------------------------------------------------------------------------------------

    def _key(self, item: KeyTuple, end: int, act: int, now: int) -> bytes | None:
        """None: copy the record as it is; bytes (maybe empty): write these instead of it (its expiry and LRU/LFU
        opcodes included)."""
        _, db, key, t, expire, _, _, _, _, size, mid = item
        counts = self.tally.db(db)
        counts[0] += 1
        type_name = T.type_name(t, self.reader.rdb_version)
        if expire is not None and expire < now:
            self.tally.expired.add(db, key, type_name, f"expired at {expire}")
            counts[3] += 1
            return b""
        if act == _REFUSED_DB:
            return self._refuse_key(db, key, type_name, f"database {db} does not exist on {self.label} "
                                    f"(databases {self.target.databases})")
        if act == _MODULE:
            module = C.module_type_name(mid) if mid is not None else None
            if self.target.has_module(module):
                counts[1] += 1
                return None
            return self._refuse_key(db, key, f"{type_name} ({module})",
                                    f"module type {module!r}: {self.label} does not have the module")
        payload = self.tee.bytes_at(end - size, end)
        if act == _STREAM and stream_inconsistency(t, payload, self.reader.rdb_version) is not None:
            return self._convert(item, type_name, payload, end - size, consistent=True)
        if act in (_PASS, _STREAM):
            kind = self.empties.kind(t, payload)
            if kind is not None:  # skipped by every loader, or refused by most: never written
                self.tally.empty.add(db, key, type_name, empty.reason(kind, type_name))
                counts[3] += 1
                return b""
            counts[1] += 1
            return None
        return self._convert(item, type_name, payload, end - size)

    def _convert(self, item: KeyTuple, type_name: str, payload: bytes, offset: int, *,
                 consistent: bool = False) -> bytes:
        """The key decoded and re-encoded for the target; `consistent`: a stream whose counters disagree with its
        entries (Redis 5.0-rc1's XDEL), written with the length of its entries and fresh nodes (the one form the
        target loads; its groups and consumers are kept)."""
        _, db, key, t, expire, idle, freq, _, _, _, _ = item
        counts = self.tally.db(db)
        version = self.reader.rdb_version
        done = listpack_ex_as_listpack(t, payload, self.target, self.now) if self.dialect == "redis" else None
        if done is None:
            value = decode_object(t, payload, rdb_version=version, base_offset=offset)
            if consistent and isinstance(value, StreamValue):
                value = dataclasses.replace(value, length=len(value.entries))
            try:
                done = reencode(value, T.logical_type(t, version), self.target, self.now)
            except UnsupportedLogicalType as exc:
                return self._refuse_key(db, key, type_name, str(exc))
        self.tally.fields_expired += done.fields_expired
        if done.empty:
            self.tally.empty.add(db, key, type_name, f"{done.empty}, skipped as the server does")
            counts[3] += 1
            return b""
        if done.losses:
            lost = ", ".join(done.losses)
            reason = f"{self.label} cannot hold {lost}"
            if self._issue(db, key, "key", type_name, reason, done.losses) is not Policy.LOSSY:
                return self._drop_key(db, key, type_name, reason)
            self.tally.changed.add(db, key, type_name, "lost: " + lost)
        kind = (t, done.type_byte)
        self.tally.converted[kind] = self.tally.converted.get(kind, 0) + 1
        counts[2] += 1
        return key_record(done.type_byte, key, done.body, expire_ms=expire, idle=idle, freq=freq)

    def _refuse_key(self, db: int, key: bytes, type_name: str, reason: str) -> bytes:
        self._issue(db, key, "key", type_name, reason, ())
        return self._drop_key(db, key, type_name, reason)

    def _drop_key(self, db: int, key: bytes, type_name: str, reason: str) -> bytes:
        self.tally.skipped.add(db, key, type_name, reason)
        self.tally.db(db)[3] += 1
        return b""

    # -- other records -------------------------------------------------------------------------------------------

    def _record(self, item: object) -> bytes | None:
        """None: copy it; bytes (maybe empty): write these instead."""
        target, tally = self.target, self.tally
        if isinstance(item, AuxField):
            if item.name in self.options.drop_aux or self._refused_aux(item):
                tally.aux_dropped.append(item.name)
                return b""
            tally.aux_kept.append(item.name)
            return None
        if isinstance(item, SelectDb):
            return self._select(item.db)
        if isinstance(item, ResizeDb):
            return b"" if self.db_refused else None
        if isinstance(item, FunctionRecord):
            return self._function(item)
        if isinstance(item, ModuleAux):
            return self._module_aux(item)
        if isinstance(item, SlotInfo):
            return None if target.reads_opcode(C.OP_SLOT_INFO) else self._drop_opcode("SLOT_INFO")
        if isinstance(item, SlotImport):  # always: see the module docstring
            return self._drop_opcode("SLOT_IMPORT")
        raise TypeError(f"unexpected record {item!r}")

    def _refused_aux(self, item: AuxField) -> bool:
        """Every loader skips AUX fields it does not know; the one a loader parses and can refuse is Valkey's
        `slot-info` (sscanf "%i,%lu,%lu": fewer than three numbers fails the load, measured on 8.0.1-9.1.2)."""
        return (self.target.product == "valkey" and item.name.lower() == "slot-info"
                and _SLOT_INFO_AUX.match(item.value) is None)

    def _select(self, db: int) -> bytes | None:
        self.current_db = db
        self.tally.db(db)
        limit = self.target.databases
        refused = limit is not None and db >= limit
        if refused != self.db_refused:
            self.db_refused = refused
            self.actions = [_REFUSED_DB] * 256 if refused else self._actions()
        return b"" if refused else None

    def _function(self, item: FunctionRecord) -> bytes | None:
        name = item.library or "<unnamed>"
        if self.target.reads_opcode(C.OP_FUNCTION2):
            self.tally.functions.append(name)
            return None
        self._issue(None, None, "function", "FUNCTION2", f"function library {name!r}: {self.label} has no "
                    "functions", ())
        self.tally.functions_dropped.append(name)
        return b""

    def _module_aux(self, item: ModuleAux) -> bytes | None:
        if self.target.has_module(item.module_type) and self.target.reads_opcode(C.OP_MODULE_AUX):
            return None
        self._issue(None, None, "module aux", f"MODULE_AUX ({item.module_type})",
                    f"module data of type {item.module_type!r}: {self.label} does not have the module", ())
        self.tally.module_aux_dropped.append(item.module_type)
        return b""

    def _drop_opcode(self, name: str) -> bytes:
        self.tally.opcodes_dropped[name] = self.tally.opcodes_dropped.get(name, 0) + 1
        return b""

    # -- policy --------------------------------------------------------------------------------------------------

    def _issue(self, db: int | None, key: bytes | None, record: str, type_name: str, reason: str,
               losses: tuple[str, ...]) -> Policy:
        """Apply the policy to a record the target cannot hold as it is: raise under fail (unless collecting for
        precheck), else say whether it is skipped or written lossily."""
        if self.policy is Policy.FAIL:
            outcome = Policy.FAIL
        elif self.policy is Policy.LOSSY and losses:
            outcome = Policy.LOSSY
        else:
            outcome = Policy.SKIP
        if self.collect or outcome is Policy.FAIL:
            issue = Incompatibility(db, display_key(key) if key is not None else None, record, type_name, reason,
                                    losses, outcome.value)
            if not self.collect:
                raise IncompatibleDataError(f"{issue.describe()}; nothing was written",
                                            "use policy skip or lossy to leave it out or write what the target "
                                            "holds; precheck() lists every such record")
            self.found.append(issue)
            if self.limit is not None and len(self.found) >= self.limit:
                raise _Stop
        return outcome

    # -- the report ----------------------------------------------------------------------------------------------

    def _converted_names(self) -> dict[str, int]:
        source, target = self.reader.rdb_version, self.target.rdb_version
        names = {f"{T.type_name(a, source)} -> {T.type_name(b, target)}": n
                 for (a, b), n in self.tally.converted.items()}
        return dict(sorted(names.items()))

    def report(self) -> TranscodeReport:
        tally, reader = self.tally, self.reader
        dbs = tuple(DbCounts(db, c[0], c[1] + c[2], c[2], c[3]) for db, c in sorted(tally.dbs.items()) if c[0])
        written = sum(d.keys_written for d in dbs)
        converted = sum(d.converted for d in dbs)
        return TranscodeReport(
            source=self.name, target=self.label, policy=self.policy.value, input_magic=reader.magic,
            input_version=reader.rdb_version, output_version=self.target.rdb_version,
            input_bytes=reader.bytes_read, output_bytes=self.output_bytes,
            seconds=round(time.perf_counter() - self.started, 6), keys_read=sum(d.keys_read for d in dbs),
            keys_written=written, passed_through=written - converted, converted=self._converted_names(),
            changed=tally.changed.freeze(), skipped=tally.skipped.freeze(), empty=tally.empty.freeze(),
            expired=tally.expired.freeze(), fields_expired=tally.fields_expired, aux_kept=tuple(tally.aux_kept),
            aux_dropped=tuple(tally.aux_dropped), opcodes_dropped=dict(tally.opcodes_dropped),
            module_aux_dropped=tuple(tally.module_aux_dropped), functions=tuple(tally.functions),
            functions_dropped=tuple(tally.functions_dropped), dbs=dbs,
            input_checksum_ok=self.end.checksum_ok if self.end is not None else None)


# -- public API -----------------------------------------------------------------------------------------------------

def transcode(source: Source, output: str | os.PathLike[str], target: TargetFormat,
              policy: Policy | str = Policy.FAIL, options: TranscodeOptions | None = None) -> TranscodeReport:
    """Write `source` (an RDB path or binary stream) as an RDB file `target` loads, atomically: a temporary file in
    the output's folder, fsync, rename. On any failure nothing is left behind and the error is raised:
    RdbFormatError (a BadInputError) for corrupt input, IncompatibleDataError under policy fail, ConfigError when
    the output cannot be created, MigrationError when it cannot be written (disk full)."""
    options = options or TranscodeOptions()
    policy = Policy.of(policy)
    final = Path(output)
    folder = final.parent
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot create the output file in {folder}: {exc.strerror}",
                          "check that the folder exists and is writable") from None
    try:
        with os.fdopen(handle, "wb", buffering=options.chunk_size) as out, _opened(source) as (stream, name):
            job = _Transcoder(stream, name, target, policy, options)
            for piece in job.run():
                _written(out.write, piece, final)
            _written(lambda _: out.flush(), b"", final)
            _written(lambda _: os.fsync(out.fileno()), b"", final)
        _written(lambda _: os.replace(temp_name, final), b"", final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_folder(folder)
    return job.report()


def _written(write: Callable[[bytes | memoryview], object], data: bytes | memoryview, final: Path) -> None:
    """An output write; OSError (disk full, I/O error) becomes MigrationError (the temporary file is then removed)."""
    try:
        write(data)
    except OSError as exc:
        raise MigrationError(f"cannot write the output file {final}: {exc.strerror}",
                             "free disk space or choose another folder; nothing was left behind") from None


class TranscodeStream:
    """The output of transcode_chunks: iterate for the bytes (chunks of about options.chunk_size); once the iteration
    is over, `report` is set and `leftover` holds the input bytes read past the input's checksum (a replication
    stream continues there)."""

    def __init__(self, job: _Transcoder, closer: contextlib.ExitStack) -> None:
        self._job = job
        self._closer = closer
        self.report: TranscodeReport | None = None
        self.leftover = b""

    def __iter__(self) -> Iterator[bytes]:
        size = self._job.options.chunk_size
        try:
            pending: list[bytes | memoryview] = []
            held = 0
            for piece in self._job.run():
                pending.append(piece)
                held += len(piece)
                if held >= size:
                    yield b"".join(pending)
                    pending, held = [], 0
            if pending:
                yield b"".join(pending)
            self.report = self._job.report()
            self.leftover = self._job.reader.leftover
        finally:
            self._closer.close()

    def progress(self) -> tuple[int, int]:
        """(key records, input bytes) read so far, while the iteration goes."""
        return self._job.keys_read(), self._job.reader.bytes_read

    def close(self) -> None:
        self._closer.close()


def transcode_chunks(source: Source, target: TargetFormat, policy: Policy | str = Policy.FAIL,
                     options: TranscodeOptions | None = None) -> TranscodeStream:
    """The transcoded RDB as byte chunks (e.g. for a replica's diskless `$EOF:` sync). Under policy fail an input
    that is a file (a path, or a seekable regular file) is prechecked first and IncompatibleDataError is raised here,
    before any chunk exists. A non-seekable input (a socket) cannot be prechecked: an incompatible record then stops
    the iteration with IncompatibleDataError after some chunks were produced."""
    options = options or TranscodeOptions()
    policy = Policy.of(policy)
    if policy is Policy.FAIL and _is_file(source):
        found = precheck(source, target, policy, options=options, limit=1)
        if found:
            raise IncompatibleDataError(f"{found[0].describe()}; nothing was produced",
                                        "use policy skip or lossy; precheck() lists every such record")
    closer = contextlib.ExitStack()
    try:
        stream, name = closer.enter_context(_opened(source))
        job = _Transcoder(stream, name, target, policy, options)
    except BaseException:
        closer.close()
        raise
    return TranscodeStream(job, closer)


def precheck(source: Source, target: TargetFormat, policy: Policy | str = Policy.FAIL, *,
             options: TranscodeOptions | None = None, limit: int | None = DEFAULT_LIST_LIMIT) -> list[Incompatibility]:
    """Every record of `source` the target cannot hold as it is (at most `limit`; the pass stops there), each with
    its outcome under `policy`: "fail" records are what would stop a transcode (`any(i.blocks for i in ...)`).

    The pass is the transcoder's own, writing nothing: records the target reads are skipped at reader speed; only
    records that need converting are decoded (to tell a hash whose field TTLs would be lost from one without any).
    Keys that would be dropped anyway (expired, empty) are not listed. A seekable input stream is read from where it
    is and put back there."""
    options = options or TranscodeOptions()
    with _opened(source) as (stream, name):
        where = stream.tell() if _seekable(stream) else None
        job = _Transcoder(stream, name, target, Policy.of(policy), options, collect=True, limit=limit)
        try:
            for _ in job.run():
                pass
        except _Stop:
            pass
        finally:
            if where is not None:
                stream.seek(where)
    return job.found


# -- inputs and outputs -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _opened(source: Source) -> Iterator[tuple[IO[bytes], str]]:
    if isinstance(source, (str, os.PathLike)):
        try:
            stream: IO[bytes] = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BadInputError(f"cannot open RDB file {os.fspath(source)}: {exc.strerror}",
                                "check the path") from None
        with stream:
            yield stream, os.fspath(source)
    else:
        name = getattr(source, "name", None)
        yield source, name if isinstance(name, str) else "<stream>"


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable()) and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, AttributeError, ValueError):
        return False


def _is_file(source: Source) -> bool:
    return isinstance(source, (str, os.PathLike)) or _seekable(source)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "DbCounts",
    "Incompatibility",
    "KeyNote",
    "NamedKeys",
    "Policy",
    "TranscodeOptions",
    "TranscodeReport",
    "TranscodeStream",
    "precheck",
    "transcode",
    "transcode_chunks",
]
