"""The target as migrate's replica: `REPLICAOF <relay address>` with a one-time `masterauth` the relay checks, and
back to a primary (`REPLICAOF NO ONE`, its own masterauth again) at the cutover or when the relay fails.

The target's masterauth is a secret: it is read once and kept in memory only (never in the checkpoint, the status
file or a log). After a kill -9 of migrate the target still holds the relay's one-time password; the checkpoint
says only whether it had one of its own, so a resumed relay restores an empty one, or says that it cannot.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from migrate.config import ConnectionSettings
from migrate.connection import with_retries
from migrate.errors import MigrateError, MigrationError
from migrate.logs import get_logger
from migrate.server import Server

log = get_logger("migrate.relay")


@dataclass(frozen=True)
class Replication:
    """The target's view of its replication (INFO replication)."""

    role: str  # master | slave
    primary: tuple[str, int] | None  # the address it replicates from
    link: str | None  # up | down
    syncing: bool

    @classmethod
    def of(cls, info: dict[str, Any]) -> Replication:
        host, port = info.get("master_host"), info.get("master_port")
        primary = (str(host), int(port)) if host is not None and port is not None else None
        return cls(str(info.get("role", "")), primary, info.get("master_link_status"),
                   bool(int(info.get("master_sync_in_progress", 0) or 0)))


class TargetReplica:
    def __init__(self, target: Server, settings: ConnectionSettings, *, had_masterauth: bool | None = None) -> None:
        """`had_masterauth`: known from a checkpoint (a resumed relay), else read from the target."""
        self.target = target
        self.settings = settings
        self.password = secrets.token_hex(20)  # what the ReplicaServer asks of the target
        self.attached: tuple[str, int] | None = None
        self._own_auth: str | None = None  # the target's masterauth before the relay (memory only)
        self.had_masterauth = had_masterauth
        self.masteruser: str | None = None

    def read_settings(self) -> None:
        """The target's masterauth and masteruser as they are now, before the relay changes anything."""
        config = self._call("CONFIG", "GET", "master*")
        values = _pairs(config)
        self.masteruser = values.get("masteruser") or None
        if self.had_masterauth is None:  # a first run: what it holds is its own
            self._own_auth = values.get("masterauth", "")
            self.had_masterauth = bool(self._own_auth)

    def replication(self) -> Replication:
        info = with_retries(lambda: self.target.client.info("replication"), self.settings, "INFO replication",
                            self.target.endpoint, "target")
        return Replication.of(dict(info))

    def attach(self, address: tuple[str, int]) -> None:
        """Make the target a replica of the relay at `address`."""
        self._call("CONFIG", "SET", "masterauth", self.password)
        self._call("REPLICAOF", address[0], str(address[1]))
        self.attached = address
        log.info("target replicates from migrate", target=str(self.target.endpoint), primary=where(address))

    def detach(self) -> str:
        """REPLICAOF NO ONE and the target's own masterauth back; what became of the masterauth, in words."""
        self._call("REPLICAOF", "NO", "ONE")
        self.attached = None
        log.info("target is a primary again", target=str(self.target.endpoint))
        return self._restore_auth()

    def detach_quietly(self) -> tuple[bool, str]:
        """detach() after a failure: (done, what happened) without raising."""
        address = self.attached
        try:
            return True, self.detach()
        except MigrateError as exc:
            shown = where(address) if address else "the relay"
            return False, (f"the target could not be made a primary again ({exc.message}): it is still a replica of "
                           f"{shown}, which is gone; run REPLICAOF NO ONE on it")

    def _restore_auth(self) -> str:
        if self._own_auth is not None:
            self._call("CONFIG", "SET", "masterauth", self._own_auth)
            return "restored" if self._own_auth else "restored (empty)"
        if not self.had_masterauth:
            self._call("CONFIG", "SET", "masterauth", "")
            return "restored (empty)"
        return ("not restored: the relay that replaced it was killed before it could put it back, and a password is "
                "never saved: set masterauth on the target again (CONFIG SET masterauth ...)")

    def _call(self, *args: str) -> Any:
        try:
            return with_retries(lambda: self.target.client.execute_command(*args),  # type: ignore[no-untyped-call]
                                self.settings, args[0], self.target.endpoint, "target")
        except MigrateError:
            raise
        except Exception as exc:  # an error reply (redis-py ResponseError): say which command, never the password
            shown = " ".join(args[:2]) if args[0] == "CONFIG" else " ".join(args)
            raise MigrationError(f"the target refused {shown}: {' '.join(str(exc).split())[:200]}",
                                 "check the target user's rights (README \"Minimum rights\", relay)") from None


def _pairs(reply: Any) -> dict[str, str]:
    """CONFIG GET's reply (a dict from redis-py, or a flat list) as str -> str."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        flat = list(reply or [])
        items = list(zip(flat[::2], flat[1::2], strict=False))
    return {_text(k): _text(v) for k, v in items}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def where(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
