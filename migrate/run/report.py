"""The result of `run` and its three renderings (human, JSON, markdown).

Counts per database, logical type and conversion path; every skipped, changed and busy key by name; the keys that
expired (or were deleted) between their read and their write. Nothing the run did not copy goes unmentioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrate.render import markdown_table, table_text, to_json
from migrate.run.tally import DbTally, KeyIssue


@dataclass(frozen=True)
class DbReport:
    source_db: int
    target_db: int
    copied: int
    bytes: int
    expired: int
    by_type: dict[str, int]
    by_route: dict[str, int]
    skipped: tuple[KeyIssue, ...]
    changed: tuple[KeyIssue, ...]
    busy: tuple[KeyIssue, ...]

    @classmethod
    def of(cls, tally: DbTally) -> DbReport:
        return cls(tally.source_db, tally.target_db, tally.copied, tally.bytes, tally.expired,
                   dict(sorted(tally.by_type.items())), dict(sorted(tally.by_route.items())), tuple(tally.skipped),
                   tuple(tally.changed), tuple(tally.busy))


@dataclass(frozen=True)
class FunctionsReport:
    libraries: int  # libraries copied (or that would be)
    note: str = ""  # why none were copied, or what went wrong


@dataclass(frozen=True)
class ReplicationReport:
    """--strategy replicaof: how the native sync went."""

    sync_seconds: float
    catch_up_seconds: float
    source_offset: int
    target_offset: int
    lag_bytes: int
    keys: int
    promoted: bool


@dataclass(frozen=True)
class RunResult:
    strategy: str
    source: str  # a description of the source (server label, or the RDB file), never a password
    target: str
    executed: bool  # False: only the plan (dry run, or reload/replicaof without --yes)
    dry_run: bool
    resumed: bool
    seconds: float
    dbs: tuple[DbReport, ...] = ()
    functions: FunctionsReport | None = None
    plan: tuple[str, ...] = ()  # reload / replicaof: what was (or would be) done, line by line
    notes: tuple[str, ...] = ()
    replication: ReplicationReport | None = None
    verify: Any = field(default=None, compare=False)  # migrate.verify's result when --verify was given

    @property
    def copied(self) -> int:
        return sum(d.copied for d in self.dbs)

    @property
    def expired(self) -> int:
        return sum(d.expired for d in self.dbs)

    @property
    def keys_per_second(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.skipped)

    @property
    def changed(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.changed)

    @property
    def busy(self) -> tuple[KeyIssue, ...]:
        return tuple(i for d in self.dbs for i in d.busy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "source": self.source, "target": self.target, "executed": self.executed,
            "dry_run": self.dry_run, "resumed": self.resumed, "seconds": round(self.seconds, 3),
            "keys_per_second": round(self.keys_per_second, 1),
            "totals": {"copied": self.copied, "expired": self.expired, "skipped": len(self.skipped),
                       "changed": len(self.changed), "busy": len(self.busy)},
            "dbs": self.dbs, "functions": self.functions, "plan": list(self.plan), "notes": list(self.notes),
            "replication": self.replication, "verify": _verify_dict(self.verify),
        }


def _verify_dict(result: Any) -> Any:
    if result is None:
        return None
    from migrate.run.verifying import verify_json

    return verify_json(result)


def render(result: RunResult, fmt: str) -> str:
    if fmt == "json":
        return to_json(result.to_dict())
    text = _markdown(result) if fmt == "markdown" else _human(result)
    if result.verify is not None:
        from migrate.run.verifying import verify_text

        text += "\n\n" + verify_text(result.verify, fmt)
    return text


def _title(result: RunResult) -> str:
    what = "dry run" if result.dry_run else ("plan" if not result.executed else "run")
    resumed = ", resumed" if result.resumed else ""
    return f"migrate {what} ({result.strategy}{resumed}): {result.source} -> {result.target}"


def _summary(result: RunResult) -> str:
    verb = "would copy" if result.dry_run else "copied"
    return (f"{verb} {result.copied} keys in {result.seconds:.2f} s ({result.keys_per_second:,.0f} keys/s); "
            f"expired mid-run {result.expired}, skipped {len(result.skipped)}, changed {len(result.changed)}, "
            f"busy {len(result.busy)}")


DB_COLUMNS = ("source db", "target db", "copied", "bytes", "expired", "skipped", "changed", "busy", "by type",
              "by path")
ISSUE_COLUMNS = ("db", "key", "reason")


def _db_rows(result: RunResult) -> list[list[Any]]:
    return [[d.source_db, d.target_db, d.copied, d.bytes, d.expired, len(d.skipped), len(d.changed), len(d.busy),
             _counts(d.by_type), _counts(d.by_route)] for d in result.dbs]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def _issue_sections(result: RunResult) -> list[tuple[str, tuple[KeyIssue, ...]]]:
    return [(title, issues) for title, issues in (("Skipped keys", result.skipped), ("Changed keys", result.changed),
                                                 ("Busy keys (exist on the target)", result.busy)) if issues]


def _human(result: RunResult) -> str:
    parts = [_title(result)]
    parts += [f"  {line}" for line in result.plan]
    if result.executed or result.dry_run:
        parts.append(_summary(result))
    if result.dbs:
        parts.append(table_text("Databases", DB_COLUMNS, _db_rows(result)))
    for title, issues in _issue_sections(result):
        parts.append(table_text(title, ISSUE_COLUMNS, [[i.db, i.key, i.reason] for i in issues]))
    parts += _extras(result)
    return "\n".join(parts)


def _markdown(result: RunResult) -> str:
    parts = [f"# {_title(result)}", ""]
    if result.plan:
        parts += [f"- {line}" for line in result.plan] + [""]
    if result.executed or result.dry_run:
        parts += [_summary(result), ""]
    if result.dbs:
        parts += ["## Databases", "", markdown_table(DB_COLUMNS, _db_rows(result)), ""]
    for title, issues in _issue_sections(result):
        parts += [f"## {title}", "", markdown_table(ISSUE_COLUMNS, [[i.db, i.key, i.reason] for i in issues]), ""]
    extras = _extras(result)
    if extras:
        parts += ["## Notes", ""] + [f"- {line}" for line in extras]
    return "\n".join(parts).rstrip()


def _extras(result: RunResult) -> list[str]:
    lines = []
    if result.functions is not None:
        note = f" ({result.functions.note})" if result.functions.note else ""
        lines.append(f"function libraries: {result.functions.libraries}{note}")
    rep = result.replication
    if rep is not None:
        lines.append(f"replication: full sync {rep.sync_seconds:.2f} s, catch-up {rep.catch_up_seconds:.2f} s, "
                     f"lag {rep.lag_bytes} bytes (source offset {rep.source_offset}, target {rep.target_offset}), "
                     f"{rep.keys} keys on the target, {'promoted' if rep.promoted else 'still a replica'}")
    lines += list(result.notes)
    if result.verify is not None:
        from migrate.run.verifying import verify_summary

        lines.append(f"verify: {verify_summary(result.verify)}")
    return lines
