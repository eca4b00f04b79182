"""How keys reach the target, decided by the RDB engine (migrate.rdb.dump.plan_conversion): one place, one rule set.

Live keys are classified from their DUMP payloads; the keys of an RDB file from their type bytes, through the same
planner (a payload is only its type byte and footer as far as the planner's choice goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from migrate.facts.types import MODULE_TYPES, has_field_ttls
from migrate.identity import ServerIdentity
from migrate.rdb.dump import build_dump, parse_dump, plan_conversion
from migrate.rdb.errors import RdbFormatError

# From the cheapest to the worst; a kind whose payloads disagree takes the worst.
ACTION_ORDER: Final = ("as-is", "restamp", "rewrite", "unsupported")


@dataclass(frozen=True)
class Verdict:
    action: str  # one of ACTION_ORDER
    reason: str
    losses: tuple[str, ...]
    type_byte: int


def classify_payload(payload: bytes, target: ServerIdentity) -> Verdict:
    try:
        plan = plan_conversion(payload, target.capabilities)
    except RdbFormatError as exc:
        return Verdict("unsupported", f"DUMP payload unreadable: {exc.message}", (), payload[0] if payload else -1)
    return Verdict(plan.action.value, plan.reason, plan.losses, plan.type_byte)


def classify_type_byte(type_byte: int, rdb_version: int, target: ServerIdentity) -> Verdict:
    """The planner's choice for any value of this type byte (module values: unsupported, their module decides)."""
    if type_byte in MODULE_TYPES:
        return Verdict("unsupported", "module value: the target needs the same module to restore it", (), type_byte)
    return classify_payload(build_dump(type_byte, b"", rdb_version), target)


def is_field_ttl_type(payload: bytes) -> bool:
    """Whether a DUMP payload is a hash form that carries field TTLs (by type byte and the writer's dialect)."""
    try:
        dump = parse_dump(payload)
    except RdbFormatError:
        return False
    return has_field_ttls(dump.type_byte, dump.rdb_version)
