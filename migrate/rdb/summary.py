"""What an RDB file holds, in one streaming pass and bounded memory, without materialising any value (for preflight).

Counts per db, logical type and type byte (encoding), module types, functions, expiry statistics, the biggest keys
(by serialized size, a bounded heap) and the writer's version from the aux fields.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass
from typing import Any

from migrate.facts import types as T
from migrate.rdb import constants as C
from migrate.rdb.empty import CAPTURE_BYTES, REFUSED, SKIPPED, EmptyCheck
from migrate.rdb.reader import RdbReader, Source
from migrate.rdb.records import AuxField, End, FunctionRecord, ModuleAux, ResizeDb, SelectDb, SlotImport, SlotInfo


@dataclass(frozen=True)
class EncodingCount:
    type_byte: int
    name: str  # e.g. "HASH_LISTPACK"
    logical: str  # e.g. "hash"
    keys: int
    bytes: int  # serialized size of these values in the file


@dataclass(frozen=True)
class DbSummary:
    db: int
    keys: int
    expires: int
    by_type: dict[str, int]  # logical type -> keys
    resize_hint: tuple[int, int] | None  # (db_size, expires_size) announced by the writer


@dataclass(frozen=True)
class ModuleTypeSummary:
    name: str  # 9-character module type name, e.g. "ReJSON-RL"
    encvers: tuple[int, ...]
    keys: int
    example_keys: tuple[bytes, ...]
    aux_records: int  # module aux data records (data outside the keyspace) of this type


@dataclass(frozen=True)
class BigKey:
    db: int
    key: bytes
    logical: str
    type_name: str
    size: int


@dataclass(frozen=True)
class ExpirySummary:
    keys_with_expiry: int
    expired_at_read: int  # expiry already past when summarised: a server drops these when it loads the file
    earliest_ms: int | None
    latest_ms: int | None
    field_ttl_hashes: int  # hashes stored in an encoding that carries field TTLs (Redis 22-25, Valkey 22)


@dataclass(frozen=True)
class RdbSummary:
    source: str
    magic: str  # "REDIS" or "VALKEY"
    rdb_version: int
    writer_product: str  # "redis" / "valkey"
    writer_version: str | None  # aux redis-ver / valkey-ver
    aux: dict[str, str]
    keys: int
    dbs: tuple[DbSummary, ...]
    by_type: dict[str, int]
    encodings: tuple[EncodingCount, ...]
    modules: tuple[ModuleTypeSummary, ...]
    functions: tuple[str, ...]  # function library names
    expiry: ExpirySummary
    biggest: tuple[BigKey, ...]  # largest first
    slot_info_records: int
    slot_imports: int
    bytes_read: int
    checksum: int | None
    checksum_ok: bool | None  # None: no checksum in the file (RDB < 5) or written with checksums disabled
    lfu_keys: int = 0
    lru_keys: int = 0
    empty: EmptySummary | None = None  # empty collections (a server skips them, or refuses the file for some)


@dataclass(frozen=True)
class EmptySummary:
    """Empty collections in the file (migrate.rdb.empty): a server loading the file skips them (`skipped`), or refuses
    the whole file for an empty intset or zipmap (`refused`)."""

    skipped: int
    refused: int
    examples: tuple[tuple[int, bytes, str], ...]  # (db, key, type name) of the first few

    @property
    def keys(self) -> int:
        return self.skipped + self.refused


class _Tally:
    """Mutable counters while streaming; frozen into an RdbSummary at the end."""

    def __init__(self, top: int, examples: int, now_ms: int) -> None:
        self.top, self.examples, self.now_ms = top, examples, now_ms
        self.per_db: dict[int, list[int]] = {}
        self.bytes_by_type = [0] * 256
        self.expires_by_db: dict[int, int] = {}
        self.resize: dict[int, tuple[int, int]] = {}
        self.heap: list[tuple[int, int, int, bytes, int]] = []
        self.modules: dict[str, dict[str, Any]] = {}
        self.functions: list[str] = []
        self.expired = 0
        self.earliest: int | None = None
        self.latest: int | None = None
        self.lfu = self.lru = 0
        self.slot_info = self.slot_imports = 0
        self.end: End | None = None
        self.current_db = 0
        self.empty = {SKIPPED: 0, REFUSED: 0}
        self.empty_examples: list[tuple[int, bytes, str]] = []

    def module(self, name: str) -> dict[str, Any]:
        return self.modules.setdefault(name, {"encvers": set(), "keys": 0, "examples": [], "aux": 0})


def summarize(source: Source, *, top: int = 10, example_keys: int = 3, now_ms: int | None = None,
              verify_checksum: bool = True) -> RdbSummary:
    """Summarise an RDB file or stream. Raises RdbFormatError (with the offset) on malformed input."""
    tally = _Tally(top, example_keys, now_ms if now_ms is not None else int(time.time() * 1000))
    with RdbReader(source, capture_payload=False, verify_checksum=verify_checksum,
                   capture_small=CAPTURE_BYTES) as reader:
        _scan(reader, tally)
        return _freeze(reader, tally, _source_name(source))


def _scan(reader: RdbReader, tally: _Tally) -> None:
    per_db = tally.per_db
    sizes = tally.bytes_by_type
    heap = tally.heap
    top = tally.top
    now = tally.now_ms
    expires_by_db = tally.expires_by_db
    counts = per_db.setdefault(0, [0] * 256)
    seq = 0
    empty = EmptyCheck(reader.rdb_version)
    probes = empty.probes
    for item in reader.scan():
        if type(item) is tuple:
            _, db, key, t, expire, idle, freq, body, _, size, mid = item
            if probes[t] is not None and body:
                _empty(tally, empty, db, key, t, body)
            counts[t] += 1
            sizes[t] += size
            if expire is not None:
                _expiry(tally, db, expire, now, expires_by_db)
            if freq is not None:
                tally.lfu += 1
            elif idle is not None:
                tally.lru += 1
            if mid is not None:
                _module_key(tally, mid, key)
            if top:
                seq += 1
                if len(heap) < top:
                    heapq.heappush(heap, (size, -seq, db, key, t))
                elif size > heap[0][0]:
                    heapq.heapreplace(heap, (size, -seq, db, key, t))
        elif isinstance(item, SelectDb):
            counts = per_db.setdefault(item.db, [0] * 256)
            tally.current_db = item.db
        else:
            _other_record(tally, item)


def _empty(tally: _Tally, check: EmptyCheck, db: int, key: bytes, t: int, body: bytes) -> None:
    kind = check.kind(t, body)
    if kind is not None:
        tally.empty[kind] += 1
        if len(tally.empty_examples) < max(tally.examples, 10):
            tally.empty_examples.append((db, key, T.type_name(t, check.rdb_version)))


def _expiry(tally: _Tally, db: int, expire: int, now: int, expires_by_db: dict[int, int]) -> None:
    expires_by_db[db] = expires_by_db.get(db, 0) + 1
    if expire <= now:
        tally.expired += 1
    if tally.earliest is None or expire < tally.earliest:
        tally.earliest = expire
    if tally.latest is None or expire > tally.latest:
        tally.latest = expire


def _module_key(tally: _Tally, mid: int, key: bytes) -> None:
    entry = tally.module(C.module_type_name(mid))
    entry["encvers"].add(C.module_encoding_version(mid))
    entry["keys"] += 1
    if len(entry["examples"]) < tally.examples:
        entry["examples"].append(key)


def _other_record(tally: _Tally, item: object) -> None:
    if isinstance(item, ResizeDb):
        tally.resize[tally.current_db] = (item.db_size, item.expires_size)
    elif isinstance(item, FunctionRecord):
        tally.functions.append(item.library or "<unnamed>")
    elif isinstance(item, ModuleAux):
        entry = tally.module(item.module_type)
        entry["encvers"].add(item.encver)
        entry["aux"] += 1
    elif isinstance(item, SlotInfo):
        tally.slot_info += 1
    elif isinstance(item, SlotImport):
        tally.slot_imports += 1
    elif isinstance(item, End):
        tally.end = item
    elif not isinstance(item, AuxField):  # aux fields are kept by the reader itself
        raise TypeError(f"unexpected record {item!r}")


def _freeze(reader: RdbReader, tally: _Tally, source: str) -> RdbSummary:
    version = reader.rdb_version
    product, writer_version = reader.writer
    by_byte = [0] * 256
    for counts in tally.per_db.values():
        for t, n in enumerate(counts):
            by_byte[t] += n
    encodings = tuple(EncodingCount(t, T.type_name(t, version), T.logical_type(t, version), n, tally.bytes_by_type[t])
                      for t, n in enumerate(by_byte) if n)
    by_type: dict[str, int] = {}
    for enc in encodings:
        by_type[enc.logical] = by_type.get(enc.logical, 0) + enc.keys
    end = tally.end
    return RdbSummary(
        source=source, magic=reader.magic, rdb_version=version, writer_product=product,
        writer_version=writer_version, aux={k: v.decode("utf-8", "replace") for k, v in reader.aux.items()},
        keys=sum(by_byte), dbs=_dbs(tally, version), by_type=by_type, encodings=encodings,
        modules=tuple(ModuleTypeSummary(name, tuple(sorted(m["encvers"])), m["keys"], tuple(m["examples"]), m["aux"])
                      for name, m in sorted(tally.modules.items())),
        functions=tuple(tally.functions),
        expiry=ExpirySummary(sum(tally.expires_by_db.values()), tally.expired, tally.earliest, tally.latest,
                             sum(n for t, n in enumerate(by_byte) if T.has_field_ttls(t, version))),
        biggest=tuple(BigKey(db, key, T.logical_type(t, version), T.type_name(t, version), size)
                      for size, _, db, key, t in sorted(tally.heap, reverse=True)),
        slot_info_records=tally.slot_info, slot_imports=tally.slot_imports, bytes_read=reader.bytes_read,
        checksum=end.checksum if end else None, checksum_ok=end.checksum_ok if end else None,
        lfu_keys=tally.lfu, lru_keys=tally.lru,
        empty=EmptySummary(tally.empty[SKIPPED], tally.empty[REFUSED], tuple(tally.empty_examples)),
    )


def _dbs(tally: _Tally, version: int) -> tuple[DbSummary, ...]:
    out = []
    for db, counts in sorted(tally.per_db.items()):
        keys = sum(counts)
        if not keys and db not in tally.resize:
            continue
        by_type: dict[str, int] = {}
        for t, n in enumerate(counts):
            if n:
                logical = T.logical_type(t, version)
                by_type[logical] = by_type.get(logical, 0) + n
        out.append(DbSummary(db, keys, tally.expires_by_db.get(db, 0), by_type, tally.resize.get(db)))
    return tuple(out)


def _source_name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"
