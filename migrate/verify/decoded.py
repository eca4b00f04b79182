"""Decoded DUMP payloads: one DUMP per key and side, decoded by the RDB engine into the fingerprint its type-native read
would give, when the two bodies differ only by encoding or RDB version.

Equal bodies settle a key without decoding (dumpeq.py). Different ones (a Redis 7.0 hashtable set that Valkey restored
as a listpack, a type-19 stream against a type-21 one, a zset whose listpack prints scores another way) are decoded
with migrate.rdb.decode and compared as canonical values: element order only where the type has one, zset scores as
exact binary doubles, hash field TTLs as absolute unix ms (compared with the TTL tolerance by compare.py), and streams
with their metadata, consumer groups and pending entries (owner, delivery count and delivery time). The fingerprints
have the shape of digest.py's, so compare.py's verdicts and details apply unchanged; both sides of a key are always
read the same way, so the two never meet.

Not compared: a consumer's seen-time and active-time (when it last read or was active: liveness, not data), and
components one of the two formats lacks (entries-added and the like in a type-15 stream, active-time before type 21).
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from typing import Any, Final

from migrate.facts import types as T
from migrate.rdb import constants as C
from migrate.rdb.decode import decode_object
from migrate.rdb.encodings import read_length
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.values import HashValue, ModuleValue, StreamGroup, StreamId, StreamValue
from migrate.verify.digest import MASK64, Fingerprint, ReadPlan

FOOTER: Final = 10  # RDB version (2 bytes, little-endian) and CRC64 (8 bytes)
_VERSION = struct.Struct("<H").unpack_from
# Type bytes whose values decode into module values: the TYPE reply is then the module type's name.
MODULE_TYPE_BYTES: Final = frozenset({6, 7})
KIND_OF_LOGICAL: Final = {name: name.encode() for name in T.CORE_TYPES}


class Undecodable(Exception):
    """A payload this engine cannot decode (a format it does not know): the key is read type-natively instead."""


def rdb_version(payload: bytes) -> int:
    return int(_VERSION(payload, len(payload) - FOOTER)[0])


def payload_kind(payload: bytes) -> bytes:
    """What TYPE would reply for the value in this DUMP payload: b"hash" ..., or the module type's name."""
    try:
        logical = T.logical_type(payload[0], rdb_version(payload))
    except (ValueError, IndexError, struct.error) as exc:
        raise Undecodable(str(exc)) from None
    if logical != "module":
        return KIND_OF_LOGICAL[logical]
    module_id, _ = _module_id(payload)
    return C.module_type_name(module_id).encode()


def _module_id(payload: bytes) -> tuple[int, int]:
    """A module payload's body starts with the module id (a length): its type name and encoding version."""
    try:
        return read_length(payload, 1)
    except (IndexError, struct.error, ValueError) as exc:
        raise Undecodable(f"module payload: {exc}") from None


def decoded_fingerprint(payload: bytes, plan: ReadPlan) -> Fingerprint:
    """The canonical fingerprint of the value in a DUMP payload (raises Undecodable)."""
    try:
        value = decode_object(payload[0], payload[1:-FOOTER], rdb_version=rdb_version(payload))
    except (RdbFormatError, IndexError, struct.error, ValueError) as exc:
        raise Undecodable(str(exc)) from None
    if isinstance(value, bytes):
        return value  # a string is its own fingerprint (digest.py does the same below one GETRANGE chunk)
    if isinstance(value, list):
        if value and type(value[0]) is tuple:
            return _zset(value)
        return {"value": hash((tuple(value), ())), "size": len(value)}
    if isinstance(value, set):
        return {"value": sum(map(hash, value)) & MASK64, "size": len(value)}
    if isinstance(value, HashValue):
        return _hash(value, plan)
    if isinstance(value, StreamValue):
        return _stream(value)
    if isinstance(value, ModuleValue):
        return {"module": hashlib.blake2b(payload[1:-FOOTER], digest_size=16).digest()}
    raise Undecodable(f"no fingerprint for {type(value).__name__}")


def _zset(pairs: list[Any]) -> Fingerprint:
    """Members in rank order and their scores as exact binary doubles (a one-ulp change is another fingerprint)."""
    members = tuple(member for member, _ in pairs)
    scores = array("d", [score for _, score in pairs]).tobytes()
    return {"value": hash((members, scores)), "size": len(pairs)}


def _hash(value: HashValue, plan: ReadPlan) -> Fingerprint:
    fp: dict[str, Any] = {"value": sum(map(hash, value.fields.items())) & MASK64, "size": len(value.fields)}
    # As digest.py: TTLs appear when the side reads them (it can hold them and may have some), or when this value has
    # some anyway; compare.py tells "cannot be stored on the target" from "differ" by which side lacks them.
    if plan.field_ttls or plan.holds_field_ttls or value.field_expiry_ms:
        fp["field_ttls"] = tuple(sorted(value.field_expiry_ms.items()))
    return fp


def _id(value: StreamId | None) -> bytes:
    return b"%d-%d" % value if value is not None else b"0-0"


def _stream(value: StreamValue) -> Fingerprint:
    fp: dict[str, Any] = {"size": value.length, "last_id": _id(value.last_id)}
    if value.entries_added is not None:  # type 19 and later; a type-15 stream has none of these three
        fp["max_deleted_id"] = _id(value.max_deleted_id)
        fp["entries_added"] = value.entries_added
        fp["first_id"] = _id(value.first_id)
    fp["entries"] = hash(tuple((entry.id, entry.fields) for entry in value.entries))
    groups = sorted(value.groups, key=lambda g: g.name)
    fp["groups"] = hash(tuple(_group(g) for g in groups)) if groups else None
    if groups and all(g.entries_read is not None for g in groups):
        fp["entries_read"] = tuple((g.name, g.entries_read) for g in groups)
    return fp


def _group(group: StreamGroup) -> tuple[Any, ...]:
    """Name, last-delivered-id, consumer names, and every pending entry with its owner, delivery count and time."""
    pending = tuple(sorted((p.id, p.consumer, p.delivery_count, p.delivery_time_ms) for p in group.pending))
    return group.name, group.last_id, tuple(sorted(c.name for c in group.consumers)), pending
