"""Build the frozen Profile: both servers, the keyspace census of the source, and the RDB / AOF files given.

Read-only on the source. The source is required when given (an unreachable source is an error); an unreachable target
leaves a partial profile (source facts only) that the report marks as such.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import redis
from redis import exceptions as rex

from migrate.cluster.sides import Side, discover_side
from migrate.cluster.topology import Topology
from migrate.config import CommonConfig, Endpoint
from migrate.connection import open_client, translate
from migrate.errors import BadInputError, ConfigError, ConnectError, MigrateError
from migrate.facts.releases import parse_version, rdb_version_written
from migrate.identity import ServerIdentity
from migrate.logs import get_logger
from migrate.preflight.aof import read_aof_dir
from migrate.preflight.census import take_census, take_cluster_census
from migrate.preflight.cluster import cluster_facts, merged_profile, spread
from migrate.preflight.options import PreflightConfig
from migrate.preflight.probe import Prober
from migrate.preflight.profile import (
    Census,
    ClusterFacts,
    Gap,
    Profile,
    RightsGap,
    ServerProfile,
    SpreadFacts,
)
from migrate.preflight.rdbfile import read_rdb_file
from migrate.preflight.server import command_support, gather_server, read_keyspace
from migrate.rights import Context, Probe, Right, needed, probe, sample_key
from migrate.wire import Channel

log = get_logger(__name__)
TRANSPORT = (rex.ConnectionError, rex.TimeoutError, OSError)


def gather(config: PreflightConfig) -> Profile:
    options, common = config.options, config.common
    if common.source is None and options.rdb_file is None and options.aof_dir is None:
        raise ConfigError("nothing to check: give --source URL, --rdb-file FILE or --aof-dir PATH",
                          "preflight needs a live source, an RDB file or an AOF (and a --target or --target-version)")
    source_side = discover_side(common, "source", unknown_ok=True) if common.source else None
    target_side = _target_side(config)
    source = _source(common.source, config, source_side) if common.source else None
    target = _target(common.target, config, target_side)
    if source is not None and target is not None and target.live:
        target = _with_command_support(target, source, common.target, config)
    census: Census | None = None
    if source is not None and source.identity is not None and source.total_keys:
        census, census_gaps = _census(common.source, source, target, config, source_side)
        source = dataclasses.replace(source, gaps=source.gaps + census_gaps)
    clusters = _clusters(config, source_side, target_side, target)
    target_identity = target.identity if target else None
    rdb = read_rdb_file(options.rdb_file, target_identity, options) if options.rdb_file else None
    if rdb is not None and rdb.error and source is None and (target is None or not target.live):
        raise BadInputError(f"RDB file {rdb.path} is unreadable: {rdb.error}")
    aof = read_aof_dir(options.aof_dir, target_identity, options) if options.aof_dir else None
    if aof is not None and aof.error and source is None and (target is None or not target.live):
        raise BadInputError(f"AOF {aof.directory} is unusable: {aof.error}", aof.hint)
    rights = _rights(common, source, target, source_side, target_side) if source is not None and source.live else ()
    profile = Profile(source, target, census, rdb, aof, rights, (), *clusters)
    return dataclasses.replace(profile, partial=partial_reasons(profile))


def _target_side(config: PreflightConfig) -> Side | None:
    """The target as its seeds say; None when not given or unreachable (the profile then says so)."""
    if config.common.target is None:
        return None
    try:
        return discover_side(config.common, "target", unknown_ok=True)
    except ConnectError:
        return None


def _nodes(side: Side | None, endpoint: Endpoint) -> list[Endpoint]:
    """The servers a side's profile is read from: every primary of a cluster, else the server."""
    if isinstance(side, Topology):
        return [s.primary.endpoint for s in side.shards]
    return [endpoint]


def _profile(endpoints: list[Endpoint], config: PreflightConfig, role: str, side: Side | None) -> ServerProfile:
    profiles = []
    for endpoint in endpoints:
        client = open_client(endpoint, config.common.connection, role)
        try:
            profiles.append(gather_server(client, role, str(endpoint)))
        except TRANSPORT as exc:
            raise translate(exc, endpoint, role) from exc
        finally:
            client.close()
    if not isinstance(side, Topology):
        return profiles[0]
    return merged_profile(profiles, f"cluster of {len(side.shards)} shards via {side.seed}")


def _source(endpoint: Endpoint, config: PreflightConfig, side: Side | None) -> ServerProfile:
    return _profile(_nodes(side, endpoint), config, "source", side)


def _target(endpoint: Endpoint | None, config: PreflightConfig, side: Side | None) -> ServerProfile | None:
    assumed = assumed_identity(config.options.target_version) if config.options.target_version else None
    if endpoint is None:
        return ServerProfile("target", "(assumed)", assumed, assumed=True) if assumed else None
    try:
        return _profile(_nodes(side, endpoint), config, "target", side)
    except (MigrateError, *TRANSPORT) as exc:
        error = exc if isinstance(exc, MigrateError) else translate(exc, endpoint, "target")
        if not isinstance(error, ConnectError):
            raise error from exc
        log.warning("target unreachable; continuing with the source alone", error=error.message)
        return ServerProfile("target", str(endpoint), assumed, assumed=assumed is not None,
                             unreachable=error.message)


def _with_command_support(target: ServerProfile, source: ServerProfile, endpoint: Endpoint | None,
                          config: PreflightConfig) -> ServerProfile:
    """Ask the target about every command the source's applications called and its ACL rules name."""
    names = [name for name, calls in (source.commandstats or {}).items() if calls]
    names += [c for user in source.acl_users or () for c in user.commands if c not in ("all",)]
    if endpoint is None or not names:
        return target
    client = open_client(endpoint, config.common.connection, "target")
    try:
        prober = Prober(client, "target")
        support = command_support(prober, names, "COMMAND INFO (source commands)")
    except TRANSPORT as exc:
        return dataclasses.replace(target, unreachable=translate(exc, endpoint, "target").message)
    finally:
        client.close()
    return dataclasses.replace(target, command_support=support or {}, gaps=target.gaps + tuple(prober.gaps))


def _census(endpoint: Endpoint | None, source: ServerProfile, target: ServerProfile | None,
            config: PreflightConfig, side: Side | None = None) -> tuple[Census, tuple[Gap, ...]]:
    assert endpoint is not None and source.identity is not None
    target_identity = target.identity if target is not None else None
    if isinstance(side, Topology):
        nodes = []
        for node in _nodes(side, endpoint):
            client = open_client(node, config.common.connection, "source")
            try:
                own = read_keyspace(Prober(client, "source"), source.identity)
            finally:
                client.close()
            nodes.append((partial(_db_client, node, config), own))
        return take_cluster_census(nodes, source.keyspace, source.identity, target_identity, config.options)
    client_for = partial(_db_client, endpoint, config)
    return take_census(client_for, source.keyspace, source.identity, target_identity, config.options)


def _db_client(endpoint: Endpoint, config: PreflightConfig, db: int) -> redis.Redis:
    return open_client(endpoint, config.common.connection, "source", db=db)


def _clusters(config: PreflightConfig, source: Side | None, target: Side | None, target_profile: ServerProfile | None
              ) -> tuple[ClusterFacts | None, ClusterFacts | None, SpreadFacts | None]:
    """The cluster facts of each side, and the key spread when either side is a cluster."""
    settings = config.common.connection
    facts = [cluster_facts(side, role, settings) if isinstance(side, Topology) else None
             for side, role in ((source, "source"), (target, "target"))]
    spread_facts = None
    if source is not None and (isinstance(source, Topology) or isinstance(target, Topology)):
        spread_facts = spread(source, target, settings, config.options, facts[1])
    return facts[0], facts[1], spread_facts


STRATEGIES = ("replay", "reload", "replicaof", "sync", "verify")


def _rights(common: CommonConfig, source: ServerProfile, target: ServerProfile | None, source_side: Side | None = None,
            target_side: Side | None = None) -> tuple[RightsGap, ...]:
    """Every right each way of migrating lacks, on both sides, in one pass (nothing is executed: migrate.rights). A
    cluster is probed on its first primary."""
    assert source.identity is not None and common.source is not None
    live_target = target is not None and target.live and common.target is not None
    ctx = Context(source.identity.capabilities, target.identity.capabilities if target and target.identity else None,
                  source_cluster=isinstance(source_side, Topology), target_cluster=isinstance(target_side, Topology))
    db = min(source.keyspace, default=0)
    channels = {"source": Channel(_nodes(source_side, common.source)[0], common.connection, "source", db)}
    if live_target and common.target is not None:
        channels["target"] = Channel(_nodes(target_side, common.target)[0], common.connection, "target", db)
    gaps = []
    try:
        key = sample_key(channels["source"])
        for strategy in STRATEGIES:
            for role, channel in channels.items():
                found = probe(channel, role, needed(strategy, role, ctx), key)
                gap = _gap(strategy, role, found)
                if gap is not None:
                    gaps.append(gap)
    except (MigrateError, *TRANSPORT) as exc:
        log.warning("rights not probed", error=str(exc)[:160])
    finally:
        for channel in channels.values():
            channel.close()
    return tuple(gaps)


def _gap(strategy: str, role: str, found: Probe) -> RightsGap | None:
    def names(rights: tuple[Right, ...], required: bool) -> tuple[str, ...]:
        return tuple(sorted({r.command for r in rights if r.required is required}))

    gap = RightsGap(strategy, role, names(found.denied, True), names(found.unknown, True),
                    names(found.denied + found.unknown, False), tuple(sorted({r.command for r in found.unchecked})))
    return gap if gap.denied or gap.unknown or gap.optional or gap.unchecked else None


def assumed_identity(spec: str) -> ServerIdentity:
    """'valkey:8.1', 'valkey-9.1.2' or 'valkey:9.1:relaxed' -> the identity such a server would report."""
    parts = spec.replace("-", ":").replace(" ", ":").split(":")
    product, version_text = parts[0].lower(), parts[1] if len(parts) > 1 else ""
    version = parse_version(version_text)
    rdb = rdb_version_written(product, version)
    if not version_text or rdb is None:
        raise ConfigError(f"bad --target-version {spec!r}",
                          "use PRODUCT:VERSION, e.g. valkey:8.1 or valkey:9.1:relaxed")
    check = parts[2] if len(parts) > 2 else ("strict" if product == "valkey" and version >= (8, 1) else None)
    return ServerIdentity(product, version, version_text, rdb, "standalone", "master", None,
                          rdb_version_check=check)


def partial_reasons(profile: Profile) -> tuple[str, ...]:
    reasons = []
    if profile.source is None:
        files = " and ".join(what for what, given in (("the RDB file", profile.rdb_file), ("the AOF", profile.aof))
                             if given is not None)
        reasons.append(f"no live source: facts come from {files or 'the files'} only")
    target = profile.target
    if target is None:
        reasons.append("no target given: target checks were not run (give --target or --target-version)")
    elif target.unreachable:
        reasons.append(f"target unreachable ({target.unreachable}): only the source was checked")
    elif target.assumed:
        reasons.append(f"target assumed from --target-version ({target.identity.label if target.identity else '?'})"
                       ": its configuration was not checked")
    census = profile.census
    if census is not None and census.note:
        reasons.append(census.note)
    if profile.spread is not None and profile.spread.unsampled:
        reasons.append("key spread: not sampled on " + "; ".join(profile.spread.unsampled)
                       + ": the projected share of each target shard leaves their keys out")
    return tuple(reasons)
