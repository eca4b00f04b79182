"""What `verify` found: reasons, per-key differences, per-database summaries, the frozen result and its JSON
form.

JSON schema `migrate.verify/1` (documented in docs/verify.md; fields are only ever added, never renamed):

    {
      "schema": "migrate.verify/1",
      "ok": bool,                         # parity: no divergent key, no count mismatch, no non-key divergence
      "level": "count" | "keys" | "full",
      "source": {"endpoint": str, "server": str}, "target": {...},   # endpoints are redacted
      "sample": {"mode": "all" | "count" | "percent", "requested": number | null, "seed": int,
                 "keys_in_scope": int, "keys_sampled": int, "fraction": number},
      "ttl_tolerance_ms": int,
      "rounds": {"requested": int, "run": int, "interval_s": number},
      "totals": {"source_keys", "target_keys", "compared", "target_scanned", "divergent",
                 "changed_during_verification", "not_compared", "unrechecked": int},
      "methods": {"dump-body": int, "decoded-dump": int, "digest": int, "native": int},  # --level full: keys
                                          # whose values each method compared ({} at other levels)
      "by_reason": {reason: int},         # divergent and not-compared keys per reason
      "databases": [{"source_db", "target_db", "source_keys", "target_keys", "keys_in_scope", "keys_sampled",
                     "compared", "target_scanned", "divergent", "changed_during_verification", "not_compared": int,
                     "count_match": bool, "extra_keys_check": "scan" | "count", "methods": {method: int}}],
      "divergent_keys": [KEY], "divergent_keys_omitted": int,
      "changed_keys": [KEY], "changed_keys_omitted": int,
      "not_compared_keys": [KEY], "not_compared_keys_omitted": int,
      "nonkey": [{"kind": "function" | "acl_user" | "config", "name", "reason", "detail",
                  "severity": "divergence" | "warning"}],
      "notes": [str],
      "duration_s": number
    }
    KEY = {"source_db": int, "target_db": int, "key": str (printable, escaped), "key_base64": str,
           "reason": str, "detail": str}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from migrate.render import display_key
from migrate.verify.options import Level, VerifyOptions
from migrate.verify.routes import Method

SCHEMA = "migrate.verify/1"


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
    # --level full: keys whose values each method compared (verify/routes.py Method), forward and reverse passes.
    methods: dict[str, int] = field(default_factory=dict)


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
    def methods(self) -> dict[str, int]:
        """Keys whose values each method compared, all databases (every method named, in the order of Method)."""
        if self.level is not Level.FULL:
            return {}
        return {m.value: sum(db.methods.get(m.value, 0) for db in self.databases) for m in Method}

    @property
    def count_mismatches(self) -> tuple[DbSummary, ...]:
        return tuple(db for db in self.databases if not db.count_match)

    @property
    def nonkey_divergent(self) -> tuple[NonKeyDiff, ...]:
        return tuple(d for d in self.nonkey if d.severity == "divergence")

    @property
    def ok(self) -> bool:
        return self.divergent.total == 0 and not self.count_mismatches and not self.nonkey_divergent

    def verdict(self) -> str:
        """One line: PARITY or DIVERGENT and why."""
        if self.ok:
            extra = f"; {self.changed.total} keys changed during verification" if self.changed.total else ""
            return f"PARITY: the target matches the source at level {self.level.value}{extra}"
        parts = []
        if self.divergent.total:
            parts.append(f"{self.divergent.total} divergent keys")
        if self.count_mismatches:
            parts.append(f"{len(self.count_mismatches)} databases with different key counts")
        if self.nonkey_divergent:
            parts.append(f"{len(self.nonkey_divergent)} non-key differences")
        return "DIVERGENT: " + ", ".join(parts)

    def notes(self) -> tuple[str, ...]:
        """What the report must say beside the counts (limits of this verification)."""
        out = list(self.nonkey_notes)
        if self.unrechecked:
            out.append(f"{self.unrechecked} mismatching keys beyond the recheck limit "
                       f"({self.options.recheck_limit}) were counted as divergent without a recheck")
        counted = [d for d in self.databases if d.extra_check == "count"]
        if counted:
            dbs = ", ".join(f"db {d.target_db}" for d in counted)
            out.append(f"extra keys on the target ({dbs}): ruled out by counting, not scanned: neither server changed "
                       "during the pass, the source SCAN returned as many keys as the source holds, all were found on "
                       "the target and the target holds no more (--reverse-scan always scans anyway)")
        if self.level is not Level.FULL and self.level is not Level.COUNT:
            out.append("values were not compared (--level keys): existence, type and TTL only")
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data, schema `migrate.verify/1` (module docstring, docs/verify.md)."""
        opts = self.options
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "level": self.level.value,
            "source": {"endpoint": self.source, "server": self.source_server},
            "target": {"endpoint": self.target, "server": self.target_server},
            "sample": {"mode": self.sample.mode, "requested": self.sample.requested, "seed": self.sample.seed,
                       "keys_in_scope": self.sample.in_scope, "keys_sampled": self.sample.sampled,
                       "fraction": round(self.sample.fraction, 6)},
            "ttl_tolerance_ms": opts.ttl_tolerance_ms,
            "rounds": {"requested": opts.rounds, "run": self.rounds_run, "interval_s": opts.interval},
            "totals": self.totals(),
            "methods": self.methods,
            "by_reason": dict(self.by_reason),
            "databases": [_db_json(db) for db in self.databases],
            **_listing_json("divergent_keys", self.divergent),
            **_listing_json("changed_keys", self.changed),
            **_listing_json("not_compared_keys", self.not_compared),
            "nonkey": [{"kind": d.kind, "name": d.name, "reason": d.reason, "detail": d.detail,
                        "severity": d.severity} for d in self.nonkey],
            "notes": list(self.notes()),
            "duration_s": self.duration_s,
        }

    def totals(self) -> dict[str, int]:
        dbs = self.databases
        return {"source_keys": sum(d.source_keys for d in dbs), "target_keys": sum(d.target_keys for d in dbs),
                "compared": sum(d.compared for d in dbs), "target_scanned": sum(d.target_scanned for d in dbs),
                "divergent": self.divergent.total, "changed_during_verification": self.changed.total,
                "not_compared": self.not_compared.total, "unrechecked": self.unrechecked}


def _db_json(db: DbSummary) -> dict[str, Any]:
    return {"source_db": db.source_db, "target_db": db.target_db, "source_keys": db.source_keys,
            "target_keys": db.target_keys, "keys_in_scope": db.in_scope, "keys_sampled": db.sampled,
            "compared": db.compared, "target_scanned": db.target_scanned, "divergent": db.divergent,
            "changed_during_verification": db.changed, "not_compared": db.not_compared,
            "count_match": db.count_match, "extra_keys_check": db.extra_check, "methods": dict(db.methods)}


def _listing_json(name: str, listing: Listing) -> dict[str, Any]:
    return {name: [_key_json(k) for k in listing.keys], f"{name}_omitted": listing.omitted}


def _key_json(diff: KeyDiff) -> dict[str, Any]:
    return {"source_db": diff.source_db, "target_db": diff.target_db, "key": display_key(diff.key, limit=10_000),
            "key_base64": base64.b64encode(diff.key).decode("ascii"), "reason": diff.reason.value,
            "detail": diff.detail}
