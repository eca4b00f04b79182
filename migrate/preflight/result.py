"""The result of a preflight run: the profile gathered, the findings, the recommended strategy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrate.preflight.findings import Finding, Severity
from migrate.preflight.profile import Profile, ServerProfile
from migrate.preflight.strategy import Strategy
from migrate.render import jsonable

SCHEMA_VERSION = 1  # of the JSON report (docs/preflight.md); bumped only on an incompatible change


@dataclass(frozen=True)
class PreflightResult:
    profile: Profile
    findings: tuple[Finding, ...]
    strategy: Strategy
    started_at: str  # ISO 8601, UTC
    duration_s: float
    tool_version: str

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == Severity.BLOCKER)

    @property
    def ok(self) -> bool:
        return not self.blockers

    @property
    def partial(self) -> bool:
        return bool(self.profile.partial)

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data. Field names and meanings are documented in docs/preflight.md; only
        additions between schema versions."""
        p = self.profile
        return {
            "schema": f"migrate.preflight/{SCHEMA_VERSION}",
            "tool_version": self.tool_version,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "ok": self.ok,
            "exit_code": 0 if self.ok else 5,
            "partial": self.partial,
            "partial_reasons": list(p.partial),
            "summary": {s.value: self.count(s) for s in Severity},
            "source": _server(p.source),
            "target": _server(p.target),
            "strategy": jsonable(self.strategy) | {"recommended": self.strategy.name},
            "census": jsonable(p.census) if p.census else None,
            "rdb_file": jsonable(p.rdb_file) if p.rdb_file else None,
            "aof": jsonable(p.aof) if p.aof else None,
            "clusters": {"source": jsonable(p.source_cluster) if p.source_cluster else None,
                         "target": jsonable(p.target_cluster) if p.target_cluster else None,
                         "spread": jsonable(p.spread) if p.spread else None},
            "findings": [jsonable(f) for f in self.findings],
        }


def _server(server: ServerProfile | None) -> dict[str, Any] | None:
    if server is None:
        return None
    ident = server.identity
    doc = {
        "endpoint": server.endpoint, "reachable": server.unreachable is None, "unreachable": server.unreachable,
        "assumed": server.assumed,
        "product": ident.product if ident else None, "version": ident.version_text if ident else None,
        "rdb_version": ident.rdb_version if ident else None, "mode": ident.mode if ident else None,
        "replication_role": ident.role if ident else None, "databases": ident.databases if ident else None,
        "rdb_version_check": ident.rdb_version_check if ident else None,
        "keys": server.total_keys,
    }
    fields: dict[str, Any] = jsonable(server)
    for name in ("role", "endpoint", "identity", "assumed", "unreachable"):
        fields.pop(name, None)
    return doc | fields
