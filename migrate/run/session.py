"""What every strategy checks before it writes: who the servers are, that the target can be written, that the
databases exist, that the target databases are empty (or --replace / --flush-target says otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from migrate.connection import with_retries
from migrate.errors import ConfigError, MigrationError, TargetNotEmptyError
from migrate.identity import config_value, refuse_same_server
from migrate.logs import get_logger
from migrate.run.options import RunConfig
from migrate.selection import KeySelection
from migrate.server import Server

log = get_logger(__name__)

DEFAULT_PROTO_MAX_BULK_LEN: Final = 512 * 1024 * 1024


def open_servers(config: RunConfig) -> tuple[Server, Server]:
    """Connect to the source and the target, and refuse a target that is the source itself (exit 1, nothing done)."""
    common = config.common
    source = Server("source", common.require_source(), common.connection)
    try:
        target = Server("target", common.require_target(), common.connection)
    except BaseException:
        source.close()
        raise
    try:
        refuse_same_server(source.identity, target.identity, config.options.selection.database_pairs())
    except BaseException:
        source.close()
        target.close()
        raise
    return source, target


def check_writable_target(target: Server) -> None:
    if target.identity.role != "master":
        raise MigrationError(f"target {target.endpoint} is a read-only replica ({target.identity.describe()})",
                             "point --target at a primary, or run REPLICAOF NO ONE on it first")


def source_dbs(selection: KeySelection, source: Server) -> list[int]:
    """Source databases to copy: the ones named, else every one that has keys."""
    chosen = selection.source_dbs(source.identity.keyspace)
    source.check_databases(chosen, "--db / --db-map")
    return chosen


def proto_max_bulk_len(side: Server) -> int:
    """The biggest single argument the target takes (RESTORE payloads must fit); the default when not readable."""
    value = config_value(side.client, "proto-max-bulk-len")
    return int(value) if value and value.isdigit() else DEFAULT_PROTO_MAX_BULK_LEN


@dataclass(frozen=True)
class TargetDbs:
    """What the target's databases hold at the start: the ones empty (any key found there later is this run's), and
    the ones --flush-target will empty right before the first key is written into them (never one the selection
    writes nothing into)."""

    empty: frozenset[int]
    to_flush: tuple[int, ...]


def prepare_target_dbs(target: Server, dbs: list[int], config: RunConfig) -> TargetDbs:
    """Refuse non-empty target databases unless --replace or --flush-target (with --yes)."""
    return judge_target_dbs({db: dbsize(target, db) for db in sorted(set(dbs))}, config)


def judge_target_dbs(sizes: dict[int, int], config: RunConfig) -> TargetDbs:
    """prepare_target_dbs over key counts already read (a cluster's: summed over its primaries)."""
    options = config.options
    dbs = sorted(sizes)
    busy = {db: n for db, n in sizes.items() if n}
    if busy and options.flush_target:
        if not options.yes:
            raise ConfigError("--flush-target empties target databases: confirm with --yes")
        return TargetDbs(frozenset(dbs), tuple(sorted(busy)))
    if busy and not options.replace:
        listed = ", ".join(f"db {db} holds {n} keys" for db, n in sorted(busy.items()))
        raise TargetNotEmptyError(f"target is not empty: {listed}")
    return TargetDbs(frozenset(db for db, n in sizes.items() if not n), ())


def dbsize(server: Server, db: int) -> int:
    channel = server.channels.channel(db)
    return int(with_retries(lambda: channel.command("DBSIZE"), server.settings, f"DBSIZE of {server.role} db {db}",
                            server.endpoint, server.role))


def flush_dbs(target: Server, dbs: list[int] | None) -> None:
    """Empty target databases: FLUSHALL when `dbs` is None (every database), else FLUSHDB in each."""
    settings = target.settings
    if dbs is None:
        with_retries(target.client.flushall, settings, "FLUSHALL on the target", target.endpoint, "target")
        log.warning("flushed", target=str(target.endpoint), dbs="all")
        return
    target.check_databases(dbs)
    for db in dbs:
        client = target.db_client(db)
        try:
            with_retries(client.flushdb, settings, f"FLUSHDB on target db {db}", target.endpoint, "target")
        finally:
            client.close()
    log.warning("flushed", target=str(target.endpoint), dbs=dbs)


def flushdb(target: Server, db: int) -> None:
    channel = target.channels.channel(db)
    with_retries(lambda: channel.command("FLUSHDB"), target.settings, f"FLUSHDB on target db {db}", target.endpoint,
                 "target")
    log.warning("flushed", target=str(target.endpoint), db=db)


# -- what the source holds that a target may not take -----------------------------------------------------------

# Modules whose data lives only in keys of these types (no module aux data in the RDB): without such keys, an RDB
# has nothing of theirs. Redis 8 bundles vectorset (redis/modules/vector-sets). Any other module is assumed to write
# data (RediSearch, for one, saves index definitions as aux data).
KEYS_ONLY_MODULES: Final[dict[str, tuple[str, ...]]] = {"vectorset": ("vectorset",)}

def has_field_ttls(source: Server) -> bool:
    info: dict[str, Any] = source.client.info("keyspace")
    return any(isinstance(v, dict) and int(v.get("subexpiry", 0)) > 0 for v in info.values())


def has_module_data(source: Server, module: str) -> bool:
    """Whether the source's RDB would carry data of this module (unknown modules: assume it does)."""
    types = KEYS_ONLY_MODULES.get(module)
    if types is None:
        return True
    for db, count in source.identity.keyspace.items():
        if not count:
            continue
        client = source.db_client(db)
        try:
            if any(next(client.scan_iter(_type=kind, count=10_000), None) is not None for kind in types):
                return True
        finally:
            client.close()
    return False


def modules_of(side: Server) -> set[str]:
    try:
        reply = side.client.execute_command("MODULE", "LIST")  # type: ignore[no-untyped-call]
    except Exception:  # no MODULE command, or not permitted: no modules we can see
        return set()
    names = set()
    for module in reply or []:
        entry = module if isinstance(module, dict) else {module[i]: module[i + 1] for i in range(0, len(module), 2)}
        name = entry.get(b"name", entry.get("name"))
        if name is not None:
            names.add(name.decode() if isinstance(name, bytes) else str(name))
    return names


def doomed_stream(source: Server, target: Server) -> str | None:
    """Why the source's snapshot would hold keys the target cannot take, judged without reading it, or None."""
    missing = sorted(m for m in modules_of(source) - modules_of(target) if has_module_data(source, m))
    if missing:
        return f"the source loads module(s) {', '.join(missing)} whose data the target cannot hold"
    if has_field_ttls(source) and not target.identity.hash_field_ttl:
        return f"the source holds hashes with field TTLs, which {target.identity.label} cannot keep"
    return None
