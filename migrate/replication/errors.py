"""Replication failures as migrate.errors exceptions: refused handshakes, lost links. Messages never hold a password."""

from __future__ import annotations

from redis import exceptions as rex

from migrate.config import Endpoint
from migrate.connection import translate
from migrate.errors import ConnectError, MigrateError, MigrationError, PermissionDeniedError

ACL_HINT = ("replication needs the PSYNC, SYNC and REPLCONF commands: ACL SETUSER <user> +psync +sync +replconf, "
            "or use a user that has them")


class LinkLostError(ConnectError):
    """The replication connection ended. `snapshot_complete` says whether the whole RDB had arrived (None: no
    snapshot was part of this link, a partial resync or the handshake); `offset` is the replication offset of the last
    byte received, when offsets are known."""

    default_hint = ("reconnect with ReplicaLink(..., replid=, offset=<last applied offset>, db=): it continues "
                    "partially while the source's backlog covers that offset, else it reports a full resync")

    def __init__(self, message: str, hint: str | None = None, *, snapshot_complete: bool | None = None,
                 offset: int | None = None) -> None:
        super().__init__(message, hint)
        self.snapshot_complete = snapshot_complete
        self.offset = offset


def refusal(text: str, command: str, endpoint: Endpoint, role: str = "source") -> MigrateError:
    """The error for a `-...` reply to a replication command (text without the leading '-')."""
    where = f"{role} {endpoint}"
    scrubbed = text.replace(endpoint.password, "***") if endpoint.password else text
    upper = scrubbed.upper()
    if upper.startswith("NOPERM"):
        return PermissionDeniedError(f"{where} refused {command}: {scrubbed}", ACL_HINT)
    if "UNKNOWN COMMAND" in upper:
        return MigrationError(f"{where} has no {command} command (renamed or disabled): {scrubbed}",
                              _renamed_hint(command))
    if upper.startswith("NOMASTERLINK"):
        return MigrationError(f"{where} cannot serve a replica: {scrubbed}",
                              "the source is a replica whose link to its own primary is down: point --source at "
                              "the primary, or wait until that link is up")
    if upper.startswith("LOADING"):
        return ConnectError(f"{where} is loading its dataset: {scrubbed}", "retry once the source has loaded")
    error = translate(rex.ResponseError(scrubbed), endpoint, role)
    if type(error) is MigrationError:
        return MigrationError(f"{where} refused {command}: {scrubbed}")
    return error


def _renamed_hint(command: str) -> str:
    if command == "PSYNC":
        return ("PSYNC is needed to follow the write stream with partial resyncs; a source that only allows SYNC can "
                "still give a full sync (LinkOptions(use_sync=True): no offsets, no partial resync), or use the "
                "default live-replay strategy")
    if command == "SYNC":
        return "the source allows no replication at all: use the default live-replay strategy, or --from-rdb"
    return "the source's replication commands are renamed or disabled: use the default live-replay strategy"
