"""DUMP payloads: parse and verify the footer, restamp the version, and decide how a payload reaches a target.

A payload is `<type byte><serialized object><RDB version: 2 bytes LE><CRC64: 8 bytes LE>`, the CRC covering every
byte before it. `plan_conversion` picks the cheapest way to bring one payload into one target server:

- AS_IS: the target accepts the payload's version and reads its type byte;
- RESTAMP: it reads the type byte but refuses the version: same object bytes, the target's own version, a new CRC;
- REWRITE: it cannot read the type byte (or the byte means something else to it): decode the value and rebuild it
  with commands (migrate.rdb.rewrite), saying what the target cannot keep (field TTLs on Valkey < 9);
- UNSUPPORTED: module values and type bytes nobody here knows.
The facts behind the rules (which versions and type bytes each release takes, measured) are in migrate.rdb.compat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from migrate.facts import accepts_rdb_version
from migrate.identity import ServerIdentity
from migrate.rdb import compat
from migrate.rdb.constants import module_encoding_version, module_type_name, product_of_version, type_info, type_name
from migrate.rdb.crc import crc64
from migrate.rdb.errors import RdbFormatError

FOOTER_LEN: Final = 10  # 2 bytes RDB version + 8 bytes CRC64
MIN_LEN: Final = 1 + FOOTER_LEN  # a type byte and the footer


@dataclass(frozen=True)
class DumpPayload:
    type_byte: int
    body: bytes = field(repr=False)  # the serialized object after the type byte
    rdb_version: int
    crc: int

    @property
    def dialect(self) -> str:
        """Who defines type bytes 22+ in this payload: "redis" (RDB < 80) or "valkey" (80+)."""
        return product_of_version(self.rdb_version)

    @property
    def type_name(self) -> str:
        return type_name(self.type_byte, self.rdb_version)


def parse_dump(data: bytes) -> DumpPayload:
    """Split a DUMP payload and verify its CRC64; RdbFormatError (with the offset) when it is not one."""
    if len(data) < MIN_LEN:
        raise RdbFormatError(f"DUMP payload too short ({len(data)} bytes, at least {MIN_LEN} needed)", len(data))
    crc_at = len(data) - 8
    stored = int.from_bytes(data[crc_at:], "little")
    computed = crc64(data[:crc_at])
    if stored != computed:
        raise RdbFormatError(f"DUMP payload checksum mismatch (stored {stored:#018x}, computed {computed:#018x})",
                             crc_at)
    version = int.from_bytes(data[crc_at - 2:crc_at], "little")
    return DumpPayload(type_byte=data[0], body=bytes(data[1:crc_at - 2]), rdb_version=version, crc=stored)


def build_dump(type_byte: int, body: bytes, rdb_version: int) -> bytes:
    """A payload RESTORE accepts: the object bytes, the version, the CRC64 of both."""
    if not 0 <= type_byte <= 255 or not 0 <= rdb_version <= 0xFFFF:
        raise ValueError(f"type byte {type_byte} / RDB version {rdb_version} out of range")
    head = bytes((type_byte,)) + body + rdb_version.to_bytes(2, "little")
    return head + crc64(head).to_bytes(8, "little")


def restamp(data: bytes, rdb_version: int) -> bytes:
    """The same payload claiming another RDB version, with its CRC recomputed (the old CRC is verified first)."""
    payload = parse_dump(data)
    return build_dump(payload.type_byte, payload.body, rdb_version)


class Action(Enum):
    AS_IS = "as-is"
    RESTAMP = "restamp"
    REWRITE = "rewrite"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Conversion:
    action: Action
    payload: bytes | None  # what to RESTORE for AS_IS / RESTAMP; None otherwise
    reason: str
    losses: tuple[str, ...] = ()  # what the target will not hold, e.g. ("field TTLs",)
    type_byte: int = 0
    source_version: int = 0


def plan_conversion(payload: bytes, target: ServerIdentity) -> Conversion:
    """How this DUMP payload reaches `target`: restored as is, restamped, rewritten as commands, or not at all.

    Field TTLs are decided from the type byte (a hash form that can carry them), not from the value: a REWRITE into
    a target without HPEXPIREAT names "field TTLs" as lost; the rewriter says what a particular value loses.
    """
    dump = parse_dump(payload)
    if dump.type_byte in compat.MODULE_TYPES:
        return _conversion(dump, Action.UNSUPPORTED, None, _module_reason(dump))
    if _reads(target, dump):
        if _accepts(target, dump.rdb_version):
            return _conversion(dump, Action.AS_IS, payload, f"{target.label} reads {_what(dump)}")
        if target.rdb_version is not None and dump.type_byte < _SHARED_TYPES_BELOW:
            reason = f"{target.label} reads {_what(dump)} but not RDB {dump.rdb_version}: restamped"
            return _conversion(dump, Action.RESTAMP, restamp(payload, target.rdb_version), reason)
    info = type_info(dump.type_byte, dump.rdb_version)
    if info is None or not info.readable:
        reason = f"type byte {dump.type_byte} of RDB {dump.rdb_version} is not a type this tool can decode"
        return _conversion(dump, Action.UNSUPPORTED, None, reason)
    lost = (dump.dialect, dump.type_byte) in compat.FIELD_TTL_TYPES and not target.hash_field_ttl
    reason = f"{target.label} cannot restore {_what(dump)}: rebuilt with commands"
    return _conversion(dump, Action.REWRITE, None, reason, ("field TTLs",) if lost else ())


def _conversion(dump: DumpPayload, action: Action, payload: bytes | None, reason: str,
                losses: tuple[str, ...] = ()) -> Conversion:
    return Conversion(action, payload, reason, losses, dump.type_byte, dump.rdb_version)


# Type bytes below 22 mean the same to Redis and Valkey: only those may change dialect when restamped.
_SHARED_TYPES_BELOW: Final = 22


def _what(dump: DumpPayload) -> str:
    return f"type {dump.type_byte} ({dump.type_name})"


def _reads(target: ServerIdentity, dump: DumpPayload) -> bool:
    if dump.type_byte not in compat.readable_types(target.product, target.version):
        return False
    return dump.type_byte < _SHARED_TYPES_BELOW or dump.dialect == target.product


def _accepts(target: ServerIdentity, rdb_version: int) -> bool:
    return accepts_rdb_version(target.product, target.version, rdb_version, target.relaxed)


def _module_reason(dump: DumpPayload) -> str:
    try:
        module_id, _ = _read_len(dump.body, 0)
    except RdbFormatError:
        return f"module value (type {dump.type_byte}) with an unreadable module id: no target module can take it"
    name, encver = module_type_name(module_id), module_encoding_version(module_id)
    return (f"module type {name!r} (encoding version {encver}): module values are not converted; the target needs "
            f"the same module to restore it")


def _read_len(data: bytes, at: int) -> tuple[int, int]:
    """An RDB length (6/14/32/64-bit forms) at `at`: (value, next offset)."""
    if at >= len(data):
        raise RdbFormatError("truncated length", at)
    first = data[at]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, at + 1
    if kind == 1:
        if at + 2 > len(data):
            raise RdbFormatError("truncated 14-bit length", at)
        return ((first & 0x3F) << 8) | data[at + 1], at + 2
    width = {0x80: 4, 0x81: 8}.get(first)
    if width is None or at + 1 + width > len(data):
        raise RdbFormatError(f"bad length prefix {first:#04x}", at)
    return int.from_bytes(data[at + 1:at + 1 + width], "big"), at + 1 + width
