"""DUMP payloads: parse and verify the footer, restamp the version, and decide how a payload reaches a target.

A payload is `<type byte><serialized object><RDB version: 2 bytes LE><CRC64: 8 bytes LE>`, the CRC covering every
byte before it. `plan_conversion` picks the cheapest way to bring one payload into one target server:

- AS_IS: the target accepts the payload's version and reads its type byte;
- RESTAMP: it reads the type byte but refuses the version: same object bytes, the target's own version, a new CRC;
- REWRITE: it cannot read the type byte (or the byte means something else to it): decode the value and rebuild it
  with commands (migrate.rdb.rewrite), saying what the target cannot keep (field TTLs on Valkey < 9);
- UNSUPPORTED: module values and type bytes nobody here knows.
The facts behind the rules (which versions and type bytes each release takes, measured) are in migrate.facts; the
target is described by a migrate.facts.capabilities.Capabilities value, never a live server.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from migrate.facts.capabilities import Capabilities
from migrate.facts.types import MODULE_TYPES, dialect_of_version, has_field_ttls, same_meaning, type_info, type_name
from migrate.rdb.constants import module_encoding_version, module_type_name
from migrate.rdb.crc import crc64
from migrate.rdb.encodings import FormatProblem, read_length
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
        return dialect_of_version(self.rdb_version)

    @property
    def type_name(self) -> str:
        return type_name(self.type_byte, self.rdb_version)


def parse_dump(data: bytes) -> DumpPayload:
    """Split a DUMP payload and verify its CRC64; RdbFormatError (with the offset) when it is not one."""
    version, crc = _checked(data)
    return DumpPayload(type_byte=data[0], body=bytes(data[1:-FOOTER_LEN]), rdb_version=version, crc=crc)


def build_dump(type_byte: int, body: bytes, rdb_version: int) -> bytes:
    """A payload RESTORE accepts: the object bytes, the version, the CRC64 of both."""
    if not 0 <= type_byte <= 255:
        raise ValueError(f"type byte {type_byte} out of range")
    return _stamped(bytes((type_byte,)) + body, rdb_version)


def restamp(data: bytes, rdb_version: int) -> bytes:
    """The same payload claiming another RDB version, with its CRC recomputed (the old CRC is verified first)."""
    _checked(data)
    return _stamped(data[:-FOOTER_LEN], rdb_version)


def _checked(data: bytes) -> tuple[int, int]:
    """(RDB version, CRC) of a payload whose CRC matches."""
    if len(data) < MIN_LEN:
        raise RdbFormatError(f"DUMP payload too short ({len(data)} bytes, at least {MIN_LEN} needed)", len(data))
    crc_at = len(data) - 8
    computed = crc64(memoryview(data)[:crc_at])
    stored = int.from_bytes(data[crc_at:], "little")
    if stored != computed:
        raise RdbFormatError(f"DUMP payload checksum mismatch (stored {stored:#018x}, computed {computed:#018x})",
                             crc_at)
    return int.from_bytes(data[-FOOTER_LEN:crc_at], "little"), stored


def _stamped(head: bytes, rdb_version: int) -> bytes:
    """`head` (type byte + object) + version + the CRC64 of both."""
    if not 0 <= rdb_version <= 0xFFFF:
        raise ValueError(f"RDB version {rdb_version} out of range")
    head += rdb_version.to_bytes(2, "little")
    return head + crc64(head).to_bytes(8, "little")


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


def plan_conversion(payload: bytes, target: Capabilities) -> Conversion:
    """How this DUMP payload reaches `target`: restored as is, restamped, rewritten as commands, or not at all.

    Field TTLs are decided from the type byte (a hash form that can carry them), not from the value: a REWRITE into
    a target without HPEXPIREAT names "field TTLs" as lost; the rewriter says what a particular value loses.
    In a loop over many keys, use Planner(target).plan(payload): the same answer, decided once per signature.
    """
    return Planner(target).plan(payload)


class Planner:
    """plan_conversion for one target, deciding once per (type byte, version) (throughput: bench/dump_convert.py)."""

    def __init__(self, target: Capabilities) -> None:
        self.target = target
        self._decisions: dict[tuple[int, int], tuple[Action, str, tuple[str, ...]]] = {}

    def plan(self, payload: bytes) -> Conversion:
        version, _ = _checked(payload)
        type_byte = payload[0]
        if type_byte in MODULE_TYPES:
            return Conversion(Action.UNSUPPORTED, None, _module_reason(payload), (), type_byte, version)
        decision = self._decisions.get((type_byte, version))
        if decision is None:
            decision = self._decisions[(type_byte, version)] = decide(self.target, type_byte, version)
        action, reason, losses = decision
        out = payload if action is Action.AS_IS else None
        if action is Action.RESTAMP and self.target.rdb_version is not None:
            out = _stamped(payload[:-FOOTER_LEN], self.target.rdb_version)
        return Conversion(action, out, reason, losses, type_byte, version)


def decide(target: Capabilities, type_byte: int, version: int) -> tuple[Action, str, tuple[str, ...]]:
    """The action for every payload of this type byte and RDB version, why, and what a rewrite loses."""
    dialect = dialect_of_version(version)
    what = f"type {type_byte} ({type_name(type_byte, version)})"
    if target.reads_type(type_byte, dialect):
        if target.accepts_rdb(version):
            return Action.AS_IS, f"{target.label} reads {what}", ()
        if target.rdb_version is not None and same_meaning(type_byte, dialect, dialect_of_version(target.rdb_version)):
            return Action.RESTAMP, f"{target.label} reads {what} but not RDB {version}: restamped", ()
    info = type_info(type_byte, version)
    if info is None or not info.readable:
        return Action.UNSUPPORTED, f"type byte {type_byte} of RDB {version} is not a type this tool can decode", ()
    lost = has_field_ttls(type_byte, version) and not target.hash_field_ttl
    return Action.REWRITE, f"{target.label} cannot restore {what}: rebuilt with commands", (
        ("field TTLs",) if lost else ())


def _module_reason(payload: bytes) -> str:
    try:
        module_id, _ = read_length(memoryview(payload)[:-FOOTER_LEN], 1)
    except (FormatProblem, IndexError, struct.error):
        return f"module value (type {payload[0]}) with an unreadable module id: no target module can take it"
    name, encver = module_type_name(module_id), module_encoding_version(module_id)
    return (f"module type {name!r} (encoding version {encver}): module values are not converted; the target needs "
            f"the same module to restore it")
