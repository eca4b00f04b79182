"""`migrate identify`: show what each server is (product, version, RDB version, mode, databases)."""

from __future__ import annotations

import json
from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.config import common_config
from migrate.identity import ServerIdentity, connect
from migrate.settings import build


@click.command("identify")
@options()
@click.pass_context
def identify_cmd(ctx: click.Context, /, **flags: Any) -> None:
    """Detect product, version and RDB version of the source and/or target."""
    values = resolve_for(ctx, "identify", flags)
    config = common_config(values)
    report: ReportOptions = build(ReportOptions, values)
    found: dict[str, ServerIdentity] = {}
    for role, endpoint in (("source", config.source), ("target", config.target)):
        if endpoint is not None:
            found[role] = connect(endpoint, config.connection, role)[1]
    if not found:
        raise click.UsageError("give --source and/or --target")
    emit(render(found, report.format), report.output)


def render(found: dict[str, ServerIdentity], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({role: _as_dict(ident) for role, ident in found.items()}, indent=2)
    lines = [f"{role}: {ident.describe()}, databases={ident.databases}, keys={sum(ident.keyspace.values())}"
             for role, ident in found.items()]
    return "\n".join(f"- {line}" for line in lines) if fmt == "markdown" else "\n".join(lines)


def _as_dict(ident: ServerIdentity) -> dict[str, Any]:
    return {"product": ident.product, "version": ident.version_text, "rdb_version": ident.rdb_version,
            "mode": ident.mode, "role": ident.role, "databases": ident.databases,
            "keyspace": {str(k): v for k, v in ident.keyspace.items()}, "rdb_version_check": ident.rdb_version_check}
