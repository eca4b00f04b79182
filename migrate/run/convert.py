"""Per-key conversion of DUMP payloads for one target, with a cache so the common case costs one dict lookup.

Whether a payload is restored as is or restamped depends only on its type byte and RDB version (see
migrate.rdb.dump.plan_conversion), so that decision is made once per (type byte, version) and cached; rewrites and
refusals depend on the value and are decided per key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from migrate.facts.capabilities import Capabilities
from migrate.facts.types import logical_type
from migrate.rdb.crc import crc64
from migrate.rdb.decode import decode_object
from migrate.rdb.dump import Action, parse_dump, plan_conversion
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.rewrite import Command, UnsupportedValueError, rewrite_commands, rewrite_losses
from migrate.run.policy import Incompatibility


class Route(StrEnum):
    """How a key reached the target (the report counts keys per route), in the planner's words (rdb.dump.Action)."""

    AS_IS = Action.AS_IS.value  # RESTORE of the source's own payload
    RESTAMP = Action.RESTAMP.value  # RESTORE of the payload with the target's RDB version and a new CRC
    REWRITE = Action.REWRITE.value  # decoded and rebuilt with commands
    CHUNKED = "chunked"  # big key, copied in pieces with type-native reads and writes
    REBUILT = "rewrite-refused"  # rewritten: the target refused the payload (e.g. `Bad data format`)

    def __str__(self) -> str:
        return self.value


Signature = tuple[int, int]  # (type byte, RDB version of the payload)


class CachedPlan:
    """A cached decision for every payload of one signature (one instance each: hashed by identity)."""

    __slots__ = ("_crc_xor", "_version", "logical", "restamp_to", "route", "source_version")

    def __init__(self, route: Route, logical: str, restamp_to: int | None, source_version: int = 0) -> None:
        self.route = route
        self.logical = logical
        self.restamp_to = restamp_to
        self.source_version = source_version
        self._version = (restamp_to or 0).to_bytes(2, "little")
        self._crc_xor = crc_delta(source_version, restamp_to) if restamp_to is not None else 0

    def restamp(self, payload: bytes) -> bytes:
        """The payload with the target's version, without computing a CRC: see crc_delta."""
        crc = int.from_bytes(payload[-8:], "little") ^ self._crc_xor
        return payload[:-10] + self._version + crc.to_bytes(8, "little")

    def __repr__(self) -> str:
        return f"CachedPlan({self.route}, {self.logical}, restamp_to={self.restamp_to})"


@functools.cache
def crc_delta(old_version: int, new_version: int) -> int:
    """What the CRC64 of a payload changes by when its 2-byte version field changes from old to new.

    Redis's CRC64 (init 0, no final xor) is linear: crc(a ^ b) = crc(a) ^ crc(b) for equal lengths, and zero bytes
    before a message leave its CRC unchanged. The payloads before and after differ only in the version field, just
    before the CRC, so new_crc = old_crc ^ crc64(old_version ^ new_version as 2 bytes). No pass over the value: a
    restamp costs the same for 100 bytes or 100 MB, and a payload whose old CRC was wrong still fails on the target.
    """
    return crc64((old_version ^ new_version).to_bytes(2, "little"))


@dataclass(frozen=True, slots=True)
class Rewrite:
    commands: tuple[Command, ...]
    logical: str
    losses: tuple[str, ...]
    chunked: bool = False  # rebuilt in pieces because the payload is too big for one RESTORE


def signature(payload: bytes) -> Signature:
    return payload[0], payload[-10] | (payload[-9] << 8)


class Converter:
    def __init__(self, target: Capabilities, max_command_bytes: int) -> None:
        self.target = target
        self.max_command_bytes = max_command_bytes
        self.cached: dict[Signature, CachedPlan] = {}

    def decide(self, key: bytes, payload: bytes, expire_at_ms: int | None) -> CachedPlan | Rewrite | Incompatibility:
        """The slow path: plan one payload; AS_IS / RESTAMP decisions are cached for the next ones."""
        try:
            conversion = plan_conversion(payload, self.target)
        except RdbFormatError as exc:
            return Incompatibility(key, f"unreadable DUMP payload: {exc.message}")
        sig = signature(payload)
        if conversion.action in (Action.AS_IS, Action.RESTAMP):
            restamp_to = self.target.rdb_version if conversion.action is Action.RESTAMP else None
            route = Route.RESTAMP if restamp_to is not None else Route.AS_IS
            decided = self.cached[sig] = CachedPlan(route, _logical(*sig), restamp_to, sig[1])
            return decided
        if conversion.action is Action.UNSUPPORTED:
            return Incompatibility(key, conversion.reason)
        return self.rewrite(key, payload, expire_at_ms)

    def rewrite(self, key: bytes, payload: bytes, expire_at_ms: int | None, *,
                chunked: bool = False) -> Rewrite | Incompatibility:
        """Decode the payload and rebuild it with commands of at most max_command_bytes each."""
        keep = self.target.hash_field_ttl
        try:
            dump = parse_dump(payload)
            value = decode_object(dump.type_byte, dump.body, rdb_version=dump.rdb_version)
            losses = rewrite_losses(value, self.target, keep_field_ttls=keep)
            commands = tuple(rewrite_commands(key, value, target=self.target, expire_at_ms=expire_at_ms,
                                              max_command_bytes=self.max_command_bytes, keep_field_ttls=keep))
        except RdbFormatError as exc:
            return Incompatibility(key, f"cannot decode the value: {exc.message}")
        except (ValueError, UnsupportedValueError) as exc:  # a module value: no command sequence rebuilds it
            return Incompatibility(key, str(exc))
        return Rewrite(commands, _logical(dump.type_byte, dump.rdb_version), losses, chunked)


def logical_of(payload: bytes) -> str:
    """The logical type of a DUMP payload, from its type byte and version ("unknown" for a byte nobody defines)."""
    return _logical(*signature(payload))


def _logical(type_byte: int, rdb_version: int) -> str:
    try:
        return logical_type(type_byte, rdb_version)
    except ValueError:
        return UNKNOWN_TYPE


UNKNOWN_TYPE: Final = "unknown"
