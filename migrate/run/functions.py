"""Function libraries (Redis 7.0+): FUNCTION DUMP on the source, restamped when the target refuses its RDB version,
FUNCTION RESTORE on the target. Libraries are server-wide, not per database."""

from __future__ import annotations

from typing import Any

from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import MigrationError, PermissionDeniedError
from migrate.facts.releases import accepts_rdb_version
from migrate.rdb.dump import restamp
from migrate.rdb.errors import RdbFormatError
from migrate.run.result import FunctionsReport
from migrate.server import Server


def has_functions(side: Server) -> bool:
    ident = side.identity
    return (ident.product == "redis" and ident.version >= (7, 0)) or (ident.product == "valkey")


def copy_functions(source: Server, target: Server, settings: ConnectionSettings, *, replace: bool,
                   dry_run: bool) -> FunctionsReport | None:
    """Copy every library; None when the source cannot have any (Redis < 7.0)."""
    if not has_functions(source):
        return None
    if not has_functions(target):
        return FunctionsReport(0, f"{target.identity.label} has no functions: not copied")
    try:
        libraries = _call(source, settings, "FUNCTION", "LIST")
        if not libraries:
            return FunctionsReport(0)
        payload = _call(source, settings, "FUNCTION", "DUMP")
    except PermissionDeniedError as exc:
        return FunctionsReport(0, f"not copied: {exc.message}")
    if dry_run:
        return FunctionsReport(len(libraries))
    payload = _for_target(payload, target)
    try:
        _call(target, settings, "FUNCTION", "RESTORE", payload, "REPLACE" if replace else "APPEND")
    except MigrationError as exc:  # refused (permission, a library of the same name, memory): reported
        hint = "" if replace else "; use --replace to overwrite libraries of the same name"
        return FunctionsReport(0, f"not copied: {exc.message}{hint}")
    return FunctionsReport(len(libraries))


def _for_target(payload: bytes, target: Server) -> bytes:
    version = int.from_bytes(payload[-10:-8], "little")
    ident = target.identity
    if accepts_rdb_version(ident.product, ident.version, version, ident.relaxed) or ident.rdb_version is None:
        return payload
    try:
        return restamp(payload, ident.rdb_version)
    except RdbFormatError:
        return payload  # the target will say what is wrong with it


def _call(side: Server, settings: ConnectionSettings, *args: Any) -> Any:
    def call() -> Any:
        return side.client.execute_command(*args)  # type: ignore[no-untyped-call]

    return with_retries(call, settings, " ".join(str(a) for a in args[:2]), side.endpoint, side.role)
