"""Identify a server: product, version, the RDB version it writes, mode, role and databases."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from redis import exceptions as rex

from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import open_client, with_retries
from migrate.errors import ConfigError
from migrate.facts.capabilities import Capabilities
from migrate.facts.releases import Version, parse_version, rdb_version_written


@dataclass(frozen=True)
class ServerIdentity:
    product: str  # redis | valkey | keydb | dragonfly
    version: Version
    version_text: str
    rdb_version: int | None  # the RDB version this server writes (None: unknown release)
    mode: str  # standalone | cluster | sentinel
    role: str  # master | slave
    databases: int | None  # CONFIG GET databases (None: not permitted)
    keyspace: dict[int, int] = field(default_factory=dict)  # db -> keys, from INFO keyspace
    rdb_version_check: str | None = None  # Valkey 8.1+: strict | relaxed
    os: str = ""
    run_id: str = ""  # INFO server run_id: a new one at every start of the process

    @property
    def label(self) -> str:
        return f"{self.product.capitalize()} {self.version_text}"

    @property
    def relaxed(self) -> bool:
        return self.rdb_version_check == "relaxed"

    @cached_property
    def capabilities(self) -> Capabilities:
        """What this server's release can take (the facts the RDB engine and converters are given)."""
        return Capabilities(self.product, self.version, self.relaxed, self.label)

    @property
    def hash_field_ttl(self) -> bool:
        return self.capabilities.hash_field_ttl

    def describe(self) -> str:
        rdb = self.rdb_version if self.rdb_version is not None else "?"
        return f"{self.label} (RDB {rdb}, {self.mode}, {self.role})"


def product_of(info: dict[str, Any]) -> tuple[str, str]:
    """Tell servers apart by INFO server fields (Valkey freezes redis_version at 7.2.4)."""
    if "dragonfly_version" in info:
        return "dragonfly", str(info["dragonfly_version"]).lstrip("df-v")
    if str(info.get("server_name", "")).lower() == "valkey" or "valkey_version" in info:
        return "valkey", str(info.get("valkey_version", info.get("redis_version", "0")))
    if any(str(k).lower().startswith("keydb") for k in info) or "mvcc_depth" in info:
        return "keydb", str(info.get("redis_version", "0"))
    return "redis", str(info.get("redis_version", "0"))


def keyspace_of(info: dict[str, Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for key, value in info.items():
        if str(key).startswith("db") and str(key)[2:].isdigit() and isinstance(value, dict):
            out[int(str(key)[2:])] = int(value.get("keys", 0))
    return out


def config_value(client: redis.Redis, name: str) -> str | None:
    """CONFIG GET one parameter; None when unknown or not permitted (least-privileged users)."""
    try:
        reply = client.config_get(name)
    except rex.ResponseError:
        return None
    value: object = reply.get(name) if isinstance(reply, dict) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def identify(client: redis.Redis) -> ServerIdentity:
    info: dict[str, Any] = client.info("server")
    product, version_text = product_of(info)
    version = parse_version(version_text)
    full: dict[str, Any] = {}
    for section in ("replication", "keyspace"):
        with contextlib.suppress(rex.ResponseError):
            full.update(client.info(section))
    databases = config_value(client, "databases")
    check = config_value(client, "rdb-version-check") if product == "valkey" else None
    return ServerIdentity(
        product=product,
        version=version,
        version_text=version_text,
        rdb_version=rdb_version_written(product, version),
        mode=str(info.get("redis_mode") or info.get("server_mode") or "standalone"),
        role=str(full.get("role", "master")),
        databases=int(databases) if databases and databases.isdigit() else None,
        keyspace=keyspace_of(full),
        rdb_version_check=check,
        os=str(info.get("os", "")),
        run_id=str(info.get("run_id", "")),
    )


def connect(endpoint: Endpoint, settings: ConnectionSettings, role: str) -> tuple[redis.Redis, ServerIdentity]:
    """Open a client to db 0 of a server and identify it, both with the bounded retries of migrate.connection."""
    client = open_client(endpoint, settings, role, db=0)
    identity = with_retries(lambda: identify(client), settings, f"identify the {role}", endpoint, role)
    return client, identity


def same_server(a: ServerIdentity, b: ServerIdentity) -> bool:
    """Whether two connections reach the same server process, whatever the URLs say (localhost vs 127.0.0.1, a
    proxy, a DNS alias): compared by run_id."""
    return bool(a.run_id) and a.run_id == b.run_id


def refuse_same_server(source: ServerIdentity, target: ServerIdentity,
                       pairs: list[tuple[int, int]] | None) -> None:
    """Refuse (exit 1) to work with the source as its own target: a flush, a reload or a replica of itself would
    destroy the source's data, and a verification would compare the data with itself. Between different databases
    of one server (`pairs` given, each source db mapped elsewhere) replay and verify are allowed."""
    if not same_server(source, target):
        return
    if pairs is not None and pairs and all(src != dst for src, dst in pairs):
        return
    raise ConfigError(f"the source and the target are the same server ({source.describe()}, run_id "
                      f"{source.run_id[:12]}...): it would be migrated onto itself",
                      "check --source and --target; to copy between databases of one server, map them with "
                      "--db-map SRC:DST to other databases")


def refuse_same_cluster(source_nodes: frozenset[str], target_nodes: frozenset[str]) -> None:
    """Clusters are told apart by their nodes' ids (CLUSTER NODES), not by URLs or run_ids: a source and a target
    sharing a node id are one cluster, which would be migrated onto itself (exit 1)."""
    shared = sorted(source_nodes & target_nodes)
    if shared:
        raise ConfigError(f"the source and the target are the same cluster (node {shared[0][:12]}... is in both)",
                          "check --source and --target: each names a node of its own cluster")
