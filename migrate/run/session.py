"""What every strategy checks before it writes: who the servers are, that the target can be written, that the
databases exist, that the target databases are empty (or --replace / --flush-target says otherwise)."""

from __future__ import annotations

from typing import Final

from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import ConfigError, MigrationError, TargetNotEmptyError
from migrate.identity import ServerIdentity, config_value
from migrate.logs import get_logger
from migrate.run.options import RunConfig
from migrate.selection import KeySelection
from migrate.server import Server

log = get_logger(__name__)

DEFAULT_PROTO_MAX_BULK_LEN: Final = 512 * 1024 * 1024
DEFAULT_DATABASES: Final = 16


def check_writable_target(target: Server) -> None:
    if target.identity.role != "master":
        raise MigrationError(f"target {target.endpoint} is a read-only replica ({target.identity.describe()})",
                             "point --target at a primary, or run REPLICAOF NO ONE on it first")


def source_dbs(selection: KeySelection, source: ServerIdentity) -> list[int]:
    """Source databases to copy: the ones named, else every one that has keys."""
    chosen = selection.source_dbs(source.keyspace)
    _check_indexes(chosen, source, "source", "--db / --db-map")
    return chosen


def check_target_dbs(dbs: list[int], target: ServerIdentity) -> None:
    _check_indexes(dbs, target, "target", "--db-map")


def _check_indexes(dbs: list[int], ident: ServerIdentity, role: str, flag: str) -> None:
    limit = ident.databases if ident.databases is not None else DEFAULT_DATABASES
    wrong = [db for db in dbs if db >= limit]
    if wrong:
        raise ConfigError(f"{role} has {limit} databases (0-{limit - 1}): db {', '.join(map(str, wrong))} does not "
                          f"exist", f"fix {flag}, or raise `databases` in the {role}'s configuration")


def proto_max_bulk_len(side: Server) -> int:
    """The biggest single argument the target takes (RESTORE payloads must fit); the default when not readable."""
    value = config_value(side.client, "proto-max-bulk-len")
    return int(value) if value and value.isdigit() else DEFAULT_PROTO_MAX_BULK_LEN


def prepare_target_dbs(target: Server, settings: ConnectionSettings, dbs: list[int],
                       config: RunConfig) -> dict[int, bool]:
    """Refuse non-empty target databases unless --replace; flush them with --flush-target. Returns db -> was empty."""
    options = config.options
    sizes = {db: _dbsize(target, settings, db) for db in dbs}
    busy = {db: n for db, n in sizes.items() if n}
    if busy and options.flush_target:
        if not options.yes:
            raise ConfigError("--flush-target empties target databases: confirm with --yes")
        if not options.dry_run:
            for db in busy:
                _flushdb(target, settings, db)
                log.warning("flushed", target=str(target.endpoint), db=db, keys=busy[db])
        return dict.fromkeys(dbs, True)
    if busy and not options.replace:
        listed = ", ".join(f"db {db} holds {n} keys" for db, n in sorted(busy.items()))
        raise TargetNotEmptyError(f"target is not empty: {listed}")
    return {db: not sizes[db] for db in dbs}


def _dbsize(target: Server, settings: ConnectionSettings, db: int) -> int:
    client = target.db_client(db)
    try:
        return int(with_retries(client.dbsize, settings, f"DBSIZE of target db {db}", target.endpoint, "target"))
    finally:
        client.close()


def _flushdb(target: Server, settings: ConnectionSettings, db: int) -> None:
    client = target.db_client(db)
    try:
        with_retries(client.flushdb, settings, f"FLUSHDB on target db {db}", target.endpoint, "target")
    finally:
        client.close()
