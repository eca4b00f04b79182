"""The topology of a Redis/Valkey Cluster read from any node, as one frozen value; a standalone server is told apart.

What each server says (read in redis/redis src/cluster.c at 6.0.16 and 7.0.15, src/cluster_legacy.c at unstable
2024-10, and valkey-io/valkey src/cluster.c + src/cluster_legacy.c at 8.0.1+; checked against every server of the
matrix by tests/test_cluster_topology.py):

- INFO cluster: `cluster_enabled:0|1`, on every server (standalone included).
- CLUSTER INFO: cluster_state (ok|fail), cluster_slots_assigned / _ok / _pfail / _fail, cluster_known_nodes,
  cluster_size (primaries serving slots), cluster_current_epoch.
- CLUSTER NODES, every version: one line per known node,
  `<id> <ip>:<port>@<bus-port>[,<hostname>] <flags> <primary id|-> <ping-sent> <pong-recv> <config-epoch>
  <link-state> <slot|start-end>...`. Flags: myself, master, slave, fail? (pfail: this node's suspicion), fail
  (agreed by a majority), handshake, noaddr, nofailover. The hostname part exists from Redis 7.0 / every Valkey. Only
  the answering node's own line also lists its open slot migrations, `[<slot>->-<id>]` (migrating to) and
  `[<slot>-<-<id>]` (importing from). A node that never met another lists its own ip empty (`:<port>@<bus>`); the ip
  shown is the one the peers saw (or cluster-announce-ip; Valkey 8.1+ also announce-client-ipv4/ipv6 per client).
  The port is the TLS port to a TLS client when the cluster runs TLS (Redis 7.0+, Valkey).
- CLUSTER SHARDS, Redis 7.0+ and every Valkey: per shard `slots` (flat start, end pairs) and `nodes`, each a map of
  id, port and/or tls-port, ip, endpoint (the preferred endpoint: the ip; the hostname, or "?" when it has none, with
  cluster-preferred-endpoint-type hostname; "" with unknown-endpoint, meaning "the host you reached me by"),
  hostname (when set), role (master|replica), replication-offset, health (online|loading|fail). RESP2 maps are flat
  arrays. Redis 7.0 lists a shard per primary; Redis 7.2+ and Valkey group nodes by shard id, so a failed old
  primary is listed in the shard of the replica that replaced it (tests/test_cluster_topology.py checks both): so
  ownership and roles are taken from CLUSTER NODES on every version, and SHARDS only adds the address to dial and
  the health. A failed primary that lost its slots is still flagged `master,fail`: it is reported in
  `empty_primaries` and in `health.failing`. SHARDS health and offsets of other nodes come through gossip (seconds
  late): an in-sync replica of a primary that took no write yet reads `loading` (offset 0) on Redis 7.0-8.0 and
  Valkey 8.x.
- CLUSTER SLOTS is not used: it omits replicas that failed or have not synced (replication offset 0), and primaries
  without slots.

Addresses: every node's Endpoint is the seed's (scheme, user, password, TLS options, db) with the node's host and
port. The host is, in order: the seed's own host for the node that answered (the URL the user gave); the seed's host
for a node announcing "" (unknown-endpoint); `host_map[announced]` when the caller maps it (NAT, containers); the seed's
host for a node announcing the same ip as the answering node (same machine: `localhost` stays `localhost`, so a TLS
certificate for that name keeps matching); else the announced endpoint (an ip, or a hostname when the cluster prefers
hostnames; "?" falls back to the ip). With TLS and certificate checks, nodes announced by ip need certificates that
name the ip, or the cluster should announce hostnames, or `host_map` should map them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from redis import exceptions as rex

from migrate.cluster.errors import ClusterUnavailableError, ClusterUnhealthyError, NotAClusterError
from migrate.cluster.links import NodeLink
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import translate, with_retries
from migrate.errors import ConnectError, MigrateError
from migrate.identity import product_of
from migrate.logs import get_logger
from migrate.rdb.rewrite import key_slot
from migrate.wire import is_error, pack_all

log = get_logger(__name__)

SLOTS: Final = 16384
NO_OWNER: Final = -1
_QUERIES: Final = (("INFO", "server"), ("INFO", "cluster"), ("CLUSTER", "INFO"), ("CLUSTER", "NODES"),
                   ("CLUSTER", "SHARDS"))
_PROBE: Final = pack_all(_QUERIES)


class NodeRole(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class SlotRange:
    start: int
    end: int  # inclusive

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and self.start <= slot <= self.end

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def ranges_text(ranges: Sequence[SlotRange]) -> str:
    return ",".join(str(r) for r in ranges) or "-"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    endpoint: Endpoint  # what to dial: the seed's credentials, TLS and db with this node's host and port
    announced: str  # host:port as the cluster announces it (the preferred endpoint)
    ip: str
    hostname: str | None
    role: NodeRole
    primary_id: str | None  # a replica's primary
    flags: frozenset[str]
    health: str  # online | loading | pfail | fail | handshake | noaddr
    link: str  # the answering node's bus link to it: connected | disconnected
    replication_offset: int | None  # CLUSTER SHARDS only

    @property
    def address(self) -> str:
        return self.endpoint.address

    @property
    def failing(self) -> bool:
        return self.health in ("pfail", "fail")

    def __str__(self) -> str:
        return f"{self.role.value} {self.node_id[:8]} ({self.address}, {self.health})"


@dataclass(frozen=True)
class Shard:
    primary: NodeInfo
    replicas: tuple[NodeInfo, ...]
    ranges: tuple[SlotRange, ...]

    @property
    def slot_count(self) -> int:
        return sum(r.count for r in self.ranges)

    @property
    def identity(self) -> str:
        """Stable name for checkpoints: the primary's node id and its slots. A failover or a resharding changes it,
        on purpose: a SCAN cursor is only meaningful on the node (and the slots) it came from."""
        return f"{self.primary.node_id}:{ranges_text(self.ranges)}"

    def owns(self, slot: int) -> bool:
        return any(slot in r for r in self.ranges)

    def __str__(self) -> str:
        return f"shard {ranges_text(self.ranges)} on {self.primary.address} (+{len(self.replicas)} replicas)"


@dataclass(frozen=True)
class SlotMigrationState:
    """An open slot migration as one node reports it about itself (CLUSTER NODES, `[slot->-id]` / `[slot-<-id]`)."""

    slot: int
    node_id: str
    direction: str  # migrating | importing
    peer_id: str


@dataclass(frozen=True)
class ClusterHealth:
    state: str  # ok | fail (the answering node's cluster_state)
    slots_assigned: int
    slots_ok: int
    slots_pfail: int
    slots_fail: int
    known_nodes: int
    size: int  # primaries serving slots
    current_epoch: int
    failing: tuple[str, ...]  # "<id> <address> <pfail|fail>" of nodes flagged fail? or fail
    uncovered: tuple[SlotRange, ...]  # slots no primary owns

    @property
    def ok(self) -> bool:
        return self.state == "ok" and not self.failing and not self.uncovered

    def problems(self) -> list[str]:
        out = []
        if self.state != "ok":
            out.append(f"cluster_state is {self.state}")
        if self.uncovered:
            count = sum(r.count for r in self.uncovered)
            out.append(f"{count} slots not covered ({ranges_text(self.uncovered[:5])}"
                       f"{', ...' if len(self.uncovered) > 5 else ''})")
        if self.failing:
            out.append("nodes failing: " + "; ".join(self.failing))
        if self.slots_pfail or self.slots_fail:
            out.append(f"slots on failing primaries: {self.slots_pfail} pfail, {self.slots_fail} fail")
        return out


@dataclass(frozen=True)
class Standalone:
    """A server with cluster support disabled."""

    endpoint: Endpoint
    product: str
    version: str


@dataclass(frozen=True)
class Topology:
    """One node's view of the cluster. `owner(slot)` is a table lookup (16384 entries)."""

    seed: Endpoint  # the seed that answered
    answered_by: str  # its node id
    product: str
    version: str
    shards: tuple[Shard, ...]  # primaries owning slots, by first slot
    empty_primaries: tuple[NodeInfo, ...]  # primaries without slots (new, or emptied by resharding)
    others: tuple[NodeInfo, ...]  # nodes in handshake or without address: known, not usable
    health: ClusterHealth
    migrations: tuple[SlotMigrationState, ...]  # the answering node's own open migrations
    read_with: str  # which commands the view comes from
    host_map: tuple[tuple[str, str], ...] = ()  # TopologyOptions.host_map, for addresses met later (MOVED, ASK)
    _owners: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_owners", owner_table(self.shards))

    @property
    def owners(self) -> tuple[int, ...]:
        """Per slot, the index of its shard in `shards` (NO_OWNER when uncovered): the router's table."""
        return self._owners

    def owner(self, slot: int) -> Shard | None:
        index = self._owners[slot]
        return None if index == NO_OWNER else self.shards[index]

    def owner_of_key(self, key: bytes) -> Shard | None:
        return self.owner(key_slot(key))

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        """Every usable node: primaries with slots, their replicas, primaries without slots."""
        return tuple(n for s in self.shards for n in (s.primary, *s.replicas)) + self.empty_primaries

    def node(self, node_id: str) -> NodeInfo:
        for candidate in self.nodes:
            if candidate.node_id == node_id:
                return candidate
        raise KeyError(node_id)

    def node_at(self, host: str, port: int) -> NodeInfo | None:
        """The node announced or dialled at host:port (MOVED and ASK name the announced endpoint)."""
        for candidate in self.nodes:
            hosts = (candidate.endpoint.host, candidate.ip, candidate.hostname, candidate.announced.rpartition(":")[0])
            if candidate.endpoint.port == port and host in hosts:
                return candidate
        return None

    def endpoint_for(self, host: str, port: int) -> Endpoint:
        """The Endpoint to dial for an address the cluster names (MOVED / ASK): a known node's, else one derived from
        the seed by the same rules as the nodes' (an empty host is resolved by the caller: the replying node's)."""
        known = self.node_at(host, port)
        if known is not None:
            return known.endpoint
        answering_ip = next((n.ip for n in self.nodes if n.node_id == self.answered_by), "")
        return _endpoint(self.seed, _dial_host(host, answering_ip, self.seed, dict(self.host_map)), port)

    @property
    def covered(self) -> bool:
        return not self.health.uncovered

    def require_healthy(self, role: str = "cluster") -> None:
        """Raise ClusterUnhealthyError naming every problem (state, uncovered slots, failing nodes)."""
        problems = self.health.problems()
        if problems:
            raise ClusterUnhealthyError(f"{role} cluster at {self.seed} is not healthy: " + "; ".join(problems))

    def seeds(self) -> list[Endpoint]:
        """Endpoints to read the topology again from: primaries, then replicas, then the seed."""
        primaries = [s.primary.endpoint for s in self.shards]
        replicas = [r.endpoint for s in self.shards for r in s.replicas]
        return [*primaries, *replicas, *(n.endpoint for n in self.empty_primaries), self.seed]

    def describe(self) -> str:
        lines = [f"{self.product} {self.version} cluster, {len(self.shards)} shards, state {self.health.state} "
                 f"(view of {self.answered_by[:8]} via {self.read_with})"]
        lines += [f"  {s}" for s in self.shards]
        return "\n".join(lines)


def owner_table(shards: Sequence[Shard]) -> tuple[int, ...]:
    """Per slot, the index of the shard owning it, or NO_OWNER."""
    owners = [NO_OWNER] * SLOTS
    for index, shard in enumerate(shards):
        for r in shard.ranges:
            owners[r.start:r.end + 1] = [index] * r.count
    return tuple(owners)


@dataclass(frozen=True)
class TopologyOptions:
    host_map: tuple[tuple[str, str], ...] = ()  # (announced host, host to dial) pairs
    use_shards: bool = True  # read CLUSTER SHARDS where the server has it (False: CLUSTER NODES only)

    @staticmethod
    def mapping(hosts: Mapping[str, str], use_shards: bool = True) -> TopologyOptions:
        return TopologyOptions(tuple(sorted(hosts.items())), use_shards)


# ---- reading --------------------------------------------------------------------------------------------------------

def discover(seeds: Endpoint | Sequence[Endpoint], settings: ConnectionSettings | None = None,
             options: TopologyOptions = TopologyOptions(), role: str = "server") -> Topology | Standalone:
    """The topology from the first seed that answers, or Standalone when that server has cluster support disabled.

    Seeds that cannot be reached are logged and skipped. When none answers: the error itself when every seed failed
    the same way and it is not a plain connection failure (AuthError, TlsError: their hints are the useful ones), else
    ClusterUnavailableError listing each seed's reason.
    """
    settings = settings or ConnectionSettings()
    endpoints = [seeds] if isinstance(seeds, Endpoint) else list(seeds)
    if not endpoints:
        raise ValueError("discover needs at least one seed endpoint")
    failures: list[MigrateError] = []
    # One seed: its transient failures are retried like any connection (--retries); several: the next seed is the retry.
    retries = settings.retries if len(endpoints) == 1 else 1
    for seed in endpoints:
        try:
            return _read(seed, settings, options, role, retries)
        except MigrateError as exc:
            if len(endpoints) > 1:  # one seed: its error is the answer, said once
                log.warning("cluster seed did not answer", role=role, seed=str(seed), error=exc.message)
            failures.append(exc)
    if len(failures) == 1 or (len({type(f) for f in failures}) == 1 and type(failures[0]) is not ConnectError):
        raise failures[0]  # one seed, or every seed failed the same way (credentials, TLS): that error and its hint
    reasons = "; ".join(f.message for f in failures)
    raise ClusterUnavailableError(f"no node of the {role} cluster answered: {reasons}")


def read_topology(seeds: Endpoint | Sequence[Endpoint], settings: ConnectionSettings | None = None,
                  options: TopologyOptions = TopologyOptions(), role: str = "server") -> Topology:
    """Like discover, for callers that need a cluster: a standalone server raises NotAClusterError."""
    found = discover(seeds, settings, options, role)
    if isinstance(found, Standalone):
        raise NotAClusterError(f"{role} {found.endpoint} is not a cluster node ({found.product} {found.version})")
    return found


def _read(seed: Endpoint, settings: ConnectionSettings, options: TopologyOptions, role: str,
          retries: int = 1) -> Topology | Standalone:
    # The probe's read timeout is the connect timeout: a node that accepts but never answers must not stall discovery.
    probe_settings = ConnectionSettings(settings.connect_timeout, settings.connect_timeout, retries)
    link = NodeLink(seed, probe_settings, role, 0)
    try:
        replies = with_retries(lambda: link.call(_PROBE, len(_QUERIES)), probe_settings,
                               f"connect to {role} {seed}", seed, role)
    except (rex.RedisError, OSError) as exc:
        raise translate(exc, seed, role) from exc
    finally:
        link.close()
    for reply in replies[:2]:
        if is_error(reply):
            raise translate(rex.ResponseError(str(reply)), seed, role)
    product, version = product_of(_info(replies[0]))
    if _info(replies[1]).get("cluster_enabled") != "1":
        return Standalone(seed, product, version)
    for reply in replies[2:4]:
        if is_error(reply):
            raise translate(rex.ResponseError(str(reply)), seed, role)
    shards = replies[4] if options.use_shards and not is_error(replies[4]) else None
    return build(seed, product, version, _text(replies[2]), _text(replies[3]), shards, options)


def build(seed: Endpoint, product: str, version: str, cluster_info: str, nodes_text: str, shards_reply: Any,
          options: TopologyOptions = TopologyOptions()) -> Topology:
    """The Topology from the answering node's CLUSTER INFO, CLUSTER NODES and (or None) CLUSTER SHARDS replies."""
    lines = [parse_node_line(line) for line in nodes_text.splitlines() if line.strip()]
    details = shard_node_details(shards_reply) if shards_reply is not None else {}
    me = next((line for line in lines if "myself" in line.flags), None)
    if me is None:
        raise ClusterUnavailableError(f"{seed} answered CLUSTER NODES without its own line")
    hosts = dict(options.host_map)
    infos = {line.node_id: _node_info(line, details.get(line.node_id, {}), seed, me, hosts) for line in lines}
    usable = {i: n for i, n in infos.items() if not {"handshake", "noaddr"} & n.flags}
    shards, empty = _shards(lines, usable)
    info = dict(line.split(":", 1) for line in cluster_info.split() if ":" in line)
    health = ClusterHealth(
        state=info.get("cluster_state", "unknown"),
        slots_assigned=_int(info.get("cluster_slots_assigned")),
        slots_ok=_int(info.get("cluster_slots_ok")),
        slots_pfail=_int(info.get("cluster_slots_pfail")),
        slots_fail=_int(info.get("cluster_slots_fail")),
        known_nodes=_int(info.get("cluster_known_nodes")),
        size=_int(info.get("cluster_size")),
        current_epoch=_int(info.get("cluster_current_epoch")),
        failing=tuple(f"{n.node_id} {n.address} {n.health}" for n in infos.values() if n.failing),
        uncovered=_uncovered(owner_table(shards)),
    )
    others = tuple(n for i, n in infos.items() if i not in usable)
    read_with = "CLUSTER NODES + CLUSTER SHARDS" if details else "CLUSTER NODES"
    return Topology(seed, me.node_id, product, version, shards, empty, others, health, me.migrations, read_with,
                    options.host_map)


def _shards(lines: Sequence[NodeLine], usable: Mapping[str, NodeInfo]) -> tuple[tuple[Shard, ...],
                                                                                 tuple[NodeInfo, ...]]:
    shards, empty = [], []
    for line in lines:
        node = usable.get(line.node_id)
        if node is None or node.role is not NodeRole.PRIMARY:
            continue
        replicas = tuple(sorted((n for n in usable.values() if n.primary_id == node.node_id and
                                 n.role is NodeRole.REPLICA), key=lambda n: n.node_id))
        if line.ranges:
            shards.append(Shard(node, replicas, line.ranges))
        else:
            empty.append(node)
    shards.sort(key=lambda s: s.ranges[0].start)
    empty.sort(key=lambda n: n.node_id)
    return tuple(shards), tuple(empty)


def _uncovered(owners: Sequence[int]) -> tuple[SlotRange, ...]:
    out: list[SlotRange] = []
    start = None
    for slot, owner in enumerate([*owners, 0]):
        if owner == NO_OWNER and start is None:
            start = slot
        elif owner != NO_OWNER and start is not None:
            out.append(SlotRange(start, slot - 1))
            start = None
    return tuple(out)


# ---- CLUSTER NODES and CLUSTER SHARDS -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES."""

    node_id: str
    ip: str
    port: int
    bus_port: int
    hostname: str | None
    flags: frozenset[str]
    primary_id: str | None
    config_epoch: int
    link: str
    ranges: tuple[SlotRange, ...]
    migrations: tuple[SlotMigrationState, ...]


def parse_node_line(line: str) -> NodeLine:
    parts = line.split()
    address, *extra = parts[1].split(",")
    host_port, _, bus = address.partition("@")
    ip, _, port = host_port.rpartition(":")  # an IPv6 address is printed without brackets: the port is last
    hostname = next((x for x in extra if x and "=" not in x), None)
    ranges, migrations = [], []
    for token in parts[8:]:
        if token.startswith("["):
            migrations.append(_migration(token, parts[0]))
        else:
            start, _, end = token.partition("-")
            ranges.append(SlotRange(int(start), int(end or start)))
    return NodeLine(parts[0], ip, int(port or 0), int(bus or 0), hostname, frozenset(parts[2].split(",")),
                    None if parts[3] == "-" else parts[3], _int(parts[6]), parts[7], tuple(ranges), tuple(migrations))


def _migration(token: str, node_id: str) -> SlotMigrationState:
    body = token.strip("[]")
    if "->-" in body:
        slot, _, peer = body.partition("->-")
        return SlotMigrationState(int(slot), node_id, "migrating", peer)
    slot, _, peer = body.partition("-<-")
    return SlotMigrationState(int(slot), node_id, "importing", peer)


def shard_node_details(reply: Any) -> dict[str, dict[str, Any]]:
    """Per node id, its CLUSTER SHARDS fields (text keys; bytes values decoded)."""
    out: dict[str, dict[str, Any]] = {}
    for shard in reply or ():
        fields = _pairs(shard)
        for node in fields.get("nodes") or ():
            details = _pairs(node)
            if "id" in details:
                out[str(details["id"])] = details
    return out


def _pairs(reply: Any) -> dict[str, Any]:
    """A map reply: a dict under RESP3, a flat key/value array under RESP2."""
    items = list(reply.items()) if isinstance(reply, dict) else list(zip(reply[0::2], reply[1::2], strict=True))
    return {_text(k): (_text(v) if isinstance(v, bytes) else v) for k, v in items}


# ---- node endpoints --------------------------------------------------------------------------------------------------

def _node_info(line: NodeLine, details: Mapping[str, Any], seed: Endpoint, me: NodeLine,
               hosts: Mapping[str, str]) -> NodeInfo:
    ip = str(details.get("ip", line.ip))
    announced_host = str(details.get("endpoint", ip))
    if announced_host == "?":  # preferred endpoint hostname, but this node has none
        announced_host = ip
    port = _port(details, line.port, seed.uses_tls)
    is_me = line.node_id == me.node_id
    endpoint = seed if is_me else _endpoint(seed, _dial_host(announced_host, me.ip, seed, hosts),
                                                             port)
    role = NodeRole.PRIMARY if "master" in line.flags else NodeRole.REPLICA
    offset = details.get("replication-offset")
    return NodeInfo(line.node_id, endpoint, f"{announced_host}:{port}", ip, line.hostname or details.get("hostname"),
                    role, line.primary_id if role is NodeRole.REPLICA else None, line.flags,
                    _health(line, details), line.link, offset if isinstance(offset, int) else None)


def _port(details: Mapping[str, Any], nodes_port: int, tls: bool) -> int:
    if tls and isinstance(details.get("tls-port"), int):
        return int(details["tls-port"])
    if isinstance(details.get("port"), int):
        return int(details["port"])
    return nodes_port


def _dial_host(announced: str, answering_ip: str, seed: Endpoint, hosts: Mapping[str, str]) -> str:
    if announced in hosts:
        return hosts[announced]
    seed_host = seed.host if not seed.path else "127.0.0.1"
    if announced == "":  # unknown-endpoint: "the same host you reached me by"
        return seed_host
    if announced == answering_ip and not seed.path:
        return seed_host  # the same machine as the seed: keep the name the user gave
    return announced


def _endpoint(seed: Endpoint, host: str, port: int) -> Endpoint:
    scheme = "redis" if seed.scheme == "unix" else seed.scheme
    return Endpoint(scheme, host, port, None, seed.username, seed.password, seed.db, seed.tls)


def _health(line: NodeLine, details: Mapping[str, Any]) -> str:
    for flag, health in (("fail", "fail"), ("fail?", "pfail"), ("handshake", "handshake"), ("noaddr", "noaddr")):
        if flag in line.flags:
            return health
    return str(details.get("health", "online"))


def _info(reply: Any) -> dict[str, str]:
    out = {}
    for line in _text(reply).splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[name.strip()] = value.strip()
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
