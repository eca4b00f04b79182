"""The library entry: `verify(config) -> VerifyResult`. No printing: the CLI renders (migrate.verify.report)."""

from __future__ import annotations

import dataclasses
import time

from migrate.identity import refuse_same_server
from migrate.rights import Context, check_rights
from migrate.selection import with_url_databases
from migrate.server import Server
from migrate.verify.engine import Run
from migrate.verify.options import VerifyConfig
from migrate.verify.result import VerifyResult
from migrate.verify.routes import Digests


def verify(config: VerifyConfig) -> VerifyResult:
    selection = with_url_databases(config.options.selection, config.source.db, config.target.db)
    options = dataclasses.replace(config.options, selection=selection).validate()
    config = dataclasses.replace(config, options=options)
    started = time.monotonic()
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
