"""The library entry: run(config) -> RunResult, one strategy per call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from migrate.errors import ConfigError
from migrate.run.options import RunConfig, Strategy
from migrate.run.result import RunResult
from migrate.run.sync.control import SyncControl
from migrate.selection import with_url_databases
from migrate.verify.result import VerifyResult


def run(config: RunConfig, on_plan: Callable[[tuple[str, ...]], None] | None = None,
        control: SyncControl | None = None) -> RunResult:
    """Copy the source into the target as the options say; raises a MigrateError subclass on failure.

    reload and replicaof produce a plan first and hand it to `on_plan` before executing (only with options.yes);
    sync and relay follow the source until their cutover, which `control` (or --cutover auto) asks for.
    """
    config = with_url_databases_applied(config)
    options = config.options.validate()
    if options.verify and config.common.source is None:
        raise ConfigError("--verify compares the target with a live source: give --source too")
    if options.strategy is Strategy.RELOAD:
        from migrate.run.reload import reload

        result = reload(config, on_plan)
    elif options.strategy is Strategy.SYNC:
        from migrate.run.sync.api import sync

        result = sync(config, control)
    elif options.strategy is Strategy.RELAY:
        from migrate.run.relay.api import relay

        _refuse_clusters(config, "relay")
        result = relay(config, control)
    elif options.strategy is Strategy.REPLICAOF:
        from migrate.run.replicaof import replicaof

        _refuse_clusters(config, "replicaof")
        result = replicaof(config, on_plan)
    else:
        result = _replay(config)
    if options.verify and result.executed and not options.dry_run:
        result = dataclasses.replace(result, verify=_verify(config))
    return result


def _refuse_clusters(config: RunConfig, strategy: str) -> None:
    """Native replication is between two standalone servers: a cluster node replicates within its cluster only."""
    from migrate.cluster.sides import discover_side
    from migrate.cluster.topology import Topology

    for role in ("source", "target"):
        if isinstance(discover_side(config.common, role), Topology):
            raise ConfigError(f"--strategy {strategy} needs standalone servers: the {role} is a cluster (a cluster "
                              "node only replicates from a primary of its own cluster)",
                              "use --strategy replay (one worker per shard) or --strategy reload")


def _replay(config: RunConfig) -> RunResult:
    """A standalone pair: the replay of migrate.run.replay; a cluster on either side: one unit per shard."""
    from migrate.cluster.sides import discover_side
    from migrate.cluster.topology import Standalone

    source, target = discover_side(config.common, "source"), discover_side(config.common, "target")
    if isinstance(source, Standalone) and isinstance(target, Standalone):
        from migrate.run.replay import replay

        return replay(config)
    from migrate.run.sharded import replay_sharded

    return replay_sharded(config, source, target)


def with_url_databases_applied(config: RunConfig) -> RunConfig:
    """A database named in --source or --target selects it (migrate.selection.with_url_databases)."""
    common = config.common
    selection = with_url_databases(config.options.selection, common.source.db if common.source else 0,
                                   common.target.db if common.target else 0)
    return dataclasses.replace(config, options=dataclasses.replace(config.options, selection=selection))


def _verify(config: RunConfig) -> VerifyResult:
    """`migrate verify` on the same servers and selection, once the copy is done."""
    from migrate.verify import VerifyConfig, VerifyOptions, verify

    options = config.options
    return verify(VerifyConfig(config.common, VerifyOptions(selection=options.selection,
                                                            batch_size=options.batch_size)))
