"""One side of a verification: a standalone server, or a cluster read node by node.

Verify reads every key of the source on the node that holds it (each primary's SCAN, then its keys compared), and
reads each of those keys on the target through the primary owning its slot; the reverse pass scans every target
primary and asks the source's owner of each key. A side knows its nodes to scan, the node owning a key, its key
counts (INFO keyspace summed over the primaries) and its write counters (every primary's: the counting proof of
stillness.py holds for a cluster as a whole when no primary of either side changed, since a cluster's keys are the
union of its primaries' keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from migrate.activity import Marks, read_marks
from migrate.cluster.topology import Topology
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import open_client, with_retries
from migrate.rdb.rewrite import key_slot
from migrate.server import Channels, Server
from migrate.stream.marker import MARKER_DB, SYNC_STREAM_ID, marker_key
from migrate.verify.plan import Keyspace, keyspace_of
from migrate.wire import Channel

Group = tuple[Endpoint, list[bytes]]


class VerifySide:
    def __init__(self, server: Server, topology: Topology | None = None) -> None:
        self.server = server  # identity, non-key state (a cluster: its first primary)
        self.topology = topology
        self.role = server.role
        self.settings: ConnectionSettings = server.settings
        self.nodes: tuple[Endpoint, ...] = tuple(s.primary.endpoint for s in topology.shards) if topology else (
            server.endpoint,)
        self._owners: list[int] = list(topology.owners) if topology else []
        self._pool: dict[tuple[str, int, int], Channels] = {}

    @property
    def cluster(self) -> bool:
        return self.topology is not None

    def owner(self, key: bytes) -> Endpoint:
        if self.topology is None:
            return self.nodes[0]
        index = self._owners[key_slot(key)]
        return self.nodes[index] if index >= 0 else self.nodes[0]

    def split(self, keys: Sequence[bytes]) -> list[Group]:
        """Keys grouped by the node owning them, in their order within each group."""
        if self.topology is None:
            return [(self.nodes[0], list(keys))] if keys else []
        groups: dict[Endpoint, list[bytes]] = {}
        for key in keys:
            groups.setdefault(self.owner(key), []).append(key)
        return list(groups.items())

    def channels(self, endpoint: Endpoint) -> Channels:
        """This (main) thread's channels to one node."""
        if self.topology is None:
            return self.server.channels
        key = (endpoint.host, endpoint.port, endpoint.db)
        found = self._pool.get(key)
        if found is None:
            found = self._pool[key] = Channels(self.role, endpoint, self.settings)
        return found

    def keyspace(self) -> Keyspace:
        if self.topology is None:
            return _keyspace(self.server.client, self.server)
        total: Keyspace = {}
        for endpoint in self.nodes:
            client = open_client(endpoint, self.settings, self.role)
            try:
                for db, fields in _keyspace(client, self.server, endpoint).items():
                    merged = total.setdefault(db, {})
                    for name, value in fields.items():
                        merged[name] = _sum(merged.get(name), value)
            finally:
                client.close()
        return total

    def marks(self) -> Marks:
        """The write counters of every node (a change on any moves them) and the key counts summed."""
        if self.topology is None:
            return read_marks(self.server.client, self.settings, self.server.endpoint, self.role)
        counters: list[tuple[str, str]] = []
        keys: dict[int, int] = {}
        for endpoint in self.nodes:
            client = open_client(endpoint, self.settings, self.role)
            try:
                marks = read_marks(client, self.settings, endpoint, self.role)
            finally:
                client.close()
            counters += [(f"{endpoint.address} {name}", value) for name, value in marks.counters]
            for db, count in marks.keyspace:
                keys[db] = keys.get(db, 0) + count
        return Marks(tuple(counters), tuple(sorted(keys.items())))

    def close(self) -> None:
        for channels in self._pool.values():
            channels.close()
        self._pool.clear()


def _keyspace(client: Any, server: Server, endpoint: Endpoint | None = None) -> Keyspace:
    """INFO keyspace, less the marker key a running `--strategy sync` keeps on its target (never a key to compare)."""
    where = endpoint or server.endpoint
    info = with_retries(partial(client.info, "keyspace"), server.settings, "INFO keyspace", where, server.role)
    found = keyspace_of(info)
    if found.get(MARKER_DB, {}).get("keys"):
        channel = Channel(where.with_db(MARKER_DB), server.settings, server.role, MARKER_DB)
        try:
            markers = with_retries(lambda: channel.command("EXISTS", marker_key(SYNC_STREAM_ID)), server.settings,
                                   "EXISTS", where, server.role)
        finally:
            channel.close()
        if isinstance(markers, int) and markers:  # a cluster node not owning the marker's slot answers MOVED
            found[MARKER_DB] = {**found[MARKER_DB], "keys": int(found[MARKER_DB]["keys"]) - markers}
    return found


def _sum(a: Any, b: Any) -> Any:
    if a is None:
        return b
    try:
        return int(a) + int(b)
    except (TypeError, ValueError):
        return b


Splitter = Callable[[Sequence[bytes]], list[Group]]
