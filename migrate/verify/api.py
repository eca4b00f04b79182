"""The library entry: `verify(config) -> VerifyResult`. No printing: the CLI renders (migrate.verify.report)."""

from __future__ import annotations

import time

from migrate.server import Server
from migrate.verify.engine import Run
from migrate.verify.options import VerifyConfig
from migrate.verify.result import VerifyResult


def verify(config: VerifyConfig) -> VerifyResult:
    options = config.options.validate()
    started = time.monotonic()
    servers: list[Server] = []
    try:
        servers.append(Server("source", config.source, config.connection))
        servers.append(Server("target", config.target, config.connection))
        return Run(config, options, servers[0], servers[1], started).execute()
    finally:
        for server in servers:
            server.close()
