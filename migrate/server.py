"""A server the verbs talk to: its endpoint, its identity (read once), a control client, and pipelined channels.

`Server` is what run and verify hold for the source and the target; `Channels` is one set of per-database channels
(a worker thread owns its own set, so threads never share a connection).
"""

from __future__ import annotations

import redis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import open_client, translate
from migrate.errors import ConfigError, MigrateError
from migrate.identity import connect
from migrate.logs import get_logger
from migrate.wire import Channel

log = get_logger(__name__)


class Channels:
    """One server's pipelined channels, one per database, connected on first use."""

    def __init__(self, role: str, endpoint: Endpoint, settings: ConnectionSettings) -> None:
        self.role = role
        self.endpoint = endpoint
        self.settings = settings
        self._by_db: dict[int, Channel] = {}

    def channel(self, db: int) -> Channel:
        channel = self._by_db.get(db)
        if channel is None:
            channel = Channel(self.endpoint, self.settings, self.role, db)
            try:
                channel.connect()
            except MigrateError:
                raise
            except (rex.RedisError, OSError) as exc:
                raise translate(exc, self.endpoint, self.role) from exc
            self._by_db[db] = channel
        return channel

    def reset(self) -> None:
        """Drop every connection (after a failure mid-round); each reconnects on its next use."""
        for channel in self._by_db.values():
            channel.reset()

    def close(self) -> None:
        for channel in self._by_db.values():
            channel.close()
        self._by_db.clear()


class Server:
    """A connected server: identified once, a control client on db 0 for server-wide commands, channels per db."""

    def __init__(self, role: str, endpoint: Endpoint, settings: ConnectionSettings) -> None:
        self.role = role
        self.endpoint = endpoint
        self.settings = settings
        self.client, self.identity = connect(endpoint, settings, role)
        self.channels = Channels(role, endpoint, settings)
        log.info("connected", role=role, server=self.identity.describe(), endpoint=str(endpoint))

    @property
    def label(self) -> str:
        return self.identity.describe()

    def db_client(self, db: int) -> redis.Redis:
        """A redis-py client on one database (proved working with PING, bounded retries)."""
        return open_client(self.endpoint, self.settings, self.role, db=db)

    def check_databases(self, dbs: list[int], flag: str = "--db-map") -> None:
        """Refuse databases this server does not have: by its `databases` setting when readable; else (CONFIG
        restricted or renamed) every database INFO keyspace shows exists, and any other is asked for with SELECT."""
        known = self.identity.databases
        if known is not None:
            missing = [db for db in dbs if db >= known]
        else:
            missing = [db for db in dbs if db not in self.identity.keyspace and not self._selectable(db)]
        if missing:
            have = f"{known} databases (0-{known - 1})" if known is not None else "fewer databases"
            raise ConfigError(f"{self.role} has {have}: db {', '.join(map(str, missing))} does not exist",
                              f"fix {flag}, or raise `databases` in the {self.role}'s configuration")

    def _selectable(self, db: int) -> bool:
        try:
            self.channels.channel(db)
        except MigrateError as exc:
            if "out of range" in exc.message.lower() or "invalid db" in exc.message.lower():
                return False
            raise
        return True

    def close(self) -> None:
        self.channels.close()
        self.client.close()

