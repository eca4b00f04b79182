"""The library entry: `verify(config) -> VerifyResult`. No printing: the CLI renders (migrate.verify.report)."""

from __future__ import annotations

import dataclasses
import time

from migrate.cluster.sides import Side, check_cluster_dbs, discover_side, refuse_same_cluster, require_ready
from migrate.cluster.topology import Topology
from migrate.identity import refuse_same_server
from migrate.rights import Context, check_rights
from migrate.selection import with_url_databases
from migrate.server import Server
from migrate.verify.engine import Run
from migrate.verify.options import VerifyConfig
from migrate.verify.result import VerifyResult
from migrate.verify.routes import Digests
from migrate.verify.sides import VerifySide


def verify(config: VerifyConfig) -> VerifyResult:
    selection = with_url_databases(config.options.selection, config.source.db, config.target.db)
    options = dataclasses.replace(config.options, selection=selection).validate()
    config = dataclasses.replace(config, options=options)
    started = time.monotonic()
    source_side, target_side = discover_side(config.common, "source"), discover_side(config.common, "target")
    if isinstance(source_side, Topology) or isinstance(target_side, Topology):
        return _verify_clusters(config, source_side, target_side, started)
    servers: list[Server] = []
    try:
        servers.append(Server("source", config.source, config.connection))
        servers.append(Server("target", config.target, config.connection))
        source, target = servers
        refuse_same_server(source.identity, target.identity, selection.database_pairs())
        pairs = selection.database_pairs() or [(0, 0)]
        source.check_databases([src for src, _ in pairs], "--db / --db-map")
        target.check_databases([dst for _, dst in pairs])
        check_rights("verify", {"source": (source, pairs[0][0]), "target": (target, pairs[0][1])},
                     Context(source.identity.capabilities, target.identity.capabilities,
                             digests=options.server_digests is not Digests.NEVER))
        return Run(config, options, servers[0], servers[1], started).execute()
    finally:
        for server in servers:
            server.close()


def _verify_clusters(config: VerifyConfig, source: Side, target: Side, started: float) -> VerifyResult:
    """A cluster on either side: every key read on the node that holds it (verify/sides.py)."""
    settings, options = config.connection, config.options
    for side, role in ((source, "source"), (target, "target")):
        if isinstance(side, Topology):
            require_ready(side, role, settings)
    refuse_same_cluster(source, target)
    sides: list[VerifySide] = []
    run: Run | None = None
    try:
        for side, role in ((source, "source"), (target, "target")):
            endpoint = side.shards[0].primary.endpoint if isinstance(side, Topology) else side.endpoint
            sides.append(VerifySide(Server(role, endpoint, settings), side if isinstance(side, Topology) else None))
        pairs = options.selection.database_pairs() or [(0, 0)]
        for side, view, dbs, flag in ((source, sides[0], [s for s, _ in pairs], "--db"),
                                      (target, sides[1], [t for _, t in pairs], "--db-map")):
            if isinstance(side, Topology):
                check_cluster_dbs(side, dbs, view.role, settings, flag)
        check_rights("verify", {"source": (sides[0].server, pairs[0][0]), "target": (sides[1].server, pairs[0][1])},
                     Context(sides[0].server.identity.capabilities, sides[1].server.identity.capabilities,
                             source_cluster=sides[0].cluster, target_cluster=sides[1].cluster,
                             digests=options.server_digests is not Digests.NEVER))
        run = Run(config, options, sides[0], sides[1], started)
        return run.execute()
    finally:
        if run is not None:
            run.close()
        for view in sides:
            view.server.close()
