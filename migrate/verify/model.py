"""What `verify` found: reasons, per-key differences, per-database summaries and the frozen result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from migrate.verify.options import Level, VerifyOptions


class Reason(StrEnum):
    """Why a key differs. The values are part of the JSON schema (docs/verify.md): never rename them."""

    MISSING = "missing_on_target"  # in the source, not in the target
    EXTRA = "extra_on_target"  # in the target, not in the source
    IN_OTHER_DB = "in_other_target_db"  # missing where expected, present in another target database
    TYPE = "type_mismatch"
    VALUE = "value_mismatch"
    TTL = "ttl_mismatch"  # key TTL differs by more than --ttl-tolerance (or one side has none)
    FIELD_TTL = "field_ttl_mismatch"  # hash field TTLs differ
    # Not divergence, but not proven equal either (reported and counted, never silent):
    MODULE_VALUE = "module_value_not_compared"  # module type: serialized forms differ, no type-native reads
    FIELD_TTL_UNSUPPORTED = "field_ttls_not_storable_on_target"  # source hash has field TTLs, target cannot


NOT_COMPARED = frozenset({Reason.MODULE_VALUE, Reason.FIELD_TTL_UNSUPPORTED})


@dataclass(frozen=True)
class KeyDiff:
    source_db: int
    target_db: int
    key: bytes
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class DbSummary:
    source_db: int
    target_db: int
    source_keys: int  # DBSIZE when verification started
    target_keys: int
    in_scope: int = 0  # source keys the scan found after --match/--exclude (before sampling)
    compared: int = 0  # source keys compared (after sampling and --type)
    target_scanned: int = 0  # target keys the reverse pass looked at (after filters and sampling)
    divergent: int = 0
    changed: int = 0  # differed at first, converged during the recheck rounds
    not_compared: int = 0
    count_match: bool = True  # --level count: DBSIZE equal
    sampled: int = 0  # source keys picked by the sample (all in scope when not sampling)
    # How extra target keys were ruled out: scan (the reverse pass read every target key) or count (neither server
    # changed during the forward pass and the counts prove there is none: verify/stillness.py).
    extra_check: str = "scan"


@dataclass(frozen=True)
class NonKeyDiff:
    kind: str  # function | acl_user | config
    name: str
    reason: str  # missing_on_target | extra_on_target | differs
    detail: str
    severity: str  # divergence (fails verification) | warning


@dataclass(frozen=True)
class SampleInfo:
    mode: str  # all | count | percent
    requested: float | None
    seed: int
    in_scope: int  # keys matching the filters
    sampled: int  # keys compared in the forward pass

    @property
    def fraction(self) -> float:
        return 1.0 if self.mode == "all" else (self.sampled / self.in_scope if self.in_scope else 0.0)


@dataclass(frozen=True)
class Listing:
    """Up to --max-report-keys entries of one category, and how many there were in all."""

    keys: tuple[KeyDiff, ...] = ()
    total: int = 0

    @property
    def omitted(self) -> int:
        return self.total - len(self.keys)


@dataclass(frozen=True)
class VerifyResult:
    level: Level
    source: str  # redacted endpoint
    target: str
    source_server: str
    target_server: str
    databases: tuple[DbSummary, ...]
    divergent: Listing
    changed: Listing
    not_compared: Listing
    by_reason: dict[str, int]  # divergent and not-compared keys per reason
    nonkey: tuple[NonKeyDiff, ...]
    nonkey_notes: tuple[str, ...]  # what non-key state could not be checked, and why
    sample: SampleInfo
    rounds_run: int
    unrechecked: int  # mismatches beyond recheck_limit, counted as divergent without recheck
    duration_s: float
    options: VerifyOptions = field(repr=False, default_factory=VerifyOptions)

    @property
    def count_mismatches(self) -> tuple[DbSummary, ...]:
        return tuple(db for db in self.databases if not db.count_match)

    @property
    def nonkey_divergent(self) -> tuple[NonKeyDiff, ...]:
        return tuple(d for d in self.nonkey if d.severity == "divergence")

    @property
    def ok(self) -> bool:
        return self.divergent.total == 0 and not self.count_mismatches and not self.nonkey_divergent
