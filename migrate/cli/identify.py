"""`migrate identify`: show what each server is (product, version, RDB version, mode, databases)."""

from __future__ import annotations

import json
from typing import Any

import click

from migrate.cli.params import ReportOptions, emit, options, resolve_for
from migrate.cluster.sides import discover_side, primary_keyspace
from migrate.cluster.topology import Topology, ranges_text
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
    topologies: dict[str, tuple[Topology, dict[int, int]]] = {}
    for role, endpoint in (("source", config.source), ("target", config.target)):
        if endpoint is None:
            continue
        side = discover_side(config, role)
        if isinstance(side, Topology):  # every node's view: never one node taken for the cluster
            topologies[role] = (side, primary_keyspace(side, config.connection, role))
            endpoint = side.shards[0].primary.endpoint if side.shards else endpoint
        found[role] = connect(endpoint, config.connection, role)[1]
    if not found:
        raise click.UsageError("give --source and/or --target")
    emit(render(found, report.format, topologies), report.output)


def render(found: dict[str, ServerIdentity], fmt: str,
           topologies: dict[str, tuple[Topology, dict[int, int]]] | None = None) -> str:
    topologies = topologies or {}
    if fmt == "json":
        return json.dumps({role: _as_dict(ident, topologies.get(role)) for role, ident in found.items()}, indent=2)
    lines = []
    for role, ident in found.items():
        if role in topologies:
            topology, keyspace = topologies[role]
            lines.append(f"{role}: {ident.label} cluster (RDB {ident.rdb_version or '?'}), {len(topology.shards)} "
                         f"shards, state {topology.health.state}, keys={sum(keyspace.values())}")
            lines += [f"  {shard}" for shard in topology.shards]
        else:
            lines.append(f"{role}: {ident.describe()}, databases={ident.databases}, "
                         f"keys={sum(ident.keyspace.values())}")
    return "\n".join(f"- {line}" for line in lines) if fmt == "markdown" else "\n".join(lines)


def _as_dict(ident: ServerIdentity, cluster: tuple[Topology, dict[int, int]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"product": ident.product, "version": ident.version_text,
                           "rdb_version": ident.rdb_version,
           "mode": ident.mode, "role": ident.role, "databases": ident.databases,
           "keyspace": {str(k): v for k, v in ident.keyspace.items()}, "rdb_version_check": ident.rdb_version_check}
    if cluster is not None:
        topology, keyspace = cluster
        out["keyspace"] = {str(k): v for k, v in keyspace.items()}  # the whole cluster's, summed over the primaries
        out["cluster"] = {
            "state": topology.health.state, "problems": topology.health.problems(),
            "shards": [{"slots": ranges_text(s.ranges), "primary": {"id": s.primary.node_id,
                                                                    "address": s.primary.address},
                        "replicas": [{"id": r.node_id, "address": r.address, "health": r.health}
                                     for r in s.replicas]} for s in topology.shards]}
    return out
