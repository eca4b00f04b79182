"""Execute pre-encoded single-key commands on the cluster primaries owning their slots: one pipelined round per node,
every node's round sent before any is read (the nodes work in parallel), replies returned in the caller's order.

Redirections (valkey-io/valkey and redis/redis src/cluster.c, getNodeByQuery and clusterRedirectClient). A node
checks a keyed command before running it, so each of these replies means the command did NOT run:

- `MOVED <slot> <host>:<port>`: the slot belongs to another primary (resharding finished, failover, stale map). The
  router points the slot at that address, reads the topology again (once per round) and resends.
- `ASK <slot> <host>:<port>`: the slot is migrating and this key is not (or no longer) on the source. The router
  sends `ASKING` + the command to that node; the slot map is not changed. (ASKING holds for the next command only, or
  for a whole MULTI ... EXEC when sent before MULTI.)
- `TRYAGAIN`: a multi-key command whose keys are split between source and destination of a migrating slot (or all
  missing on the importing node); retried with back-off until the migration ends.
- `CLUSTERDOWN` (the cluster is down / hash slot not served / only accepts reads), `LOADING`: retried with back-off.
- `READONLY` (a write reached a replica): the map is stale; read again and resend.
- A node that goes away (connection refused, reset, timed out): the topology is read again from any other node,
  and the node's commands are resent to whoever owns their slots, waiting (back-off) for a failover if needed.

Every kind of retry is bounded: `max_redirects` per command, `retry_seconds` of back-off per call; then one of
migrate.cluster.errors (ClusterDownError, RedirectLoopError, ...). Every round with a retry is logged with counts,
and `stats` keeps the totals.

Guarantees of `execute`:
- Replies in the caller's order, each the reply of the command's one execution on the owner of its slot.
- Exactly once for every command refused by a redirection or a transient error above (it did not run: it is sent
  again). At least once for a command whose connection broke before its reply arrived: it may have run. Those
  indexes are in `BatchResult.uncertain`, and they are resent as `resend(i)` when the caller gives it (e.g. RESTORE
  ... REPLACE instead of RESTORE, which would answer BUSYKEY to its own earlier execution; REPLACE is only right when
  the target held no such key before the run: the caller knows that). Idempotent commands (SET, RESTORE REPLACE, DEL,
  PEXPIREAT, HSET/SADD/ZADD of fixed members) need nothing; RPUSH, APPEND, INCR, XADD would be applied twice.
- Order: commands of the same slot go to one node on one connection in the caller's order, and a resent command
  goes after every command of its round. Commands of one key stay in order as long as they form one run of
  redirections (a later command of the key is refused too when an earlier one was: the same slot state); a key that
  needs several commands applied together should use `execute_unit`.
- Writes a primary acknowledged but had not replicated when it crashed are lost with it (asynchronous replication);
  `RouterOptions.wait_replicas` adds a WAIT per node round to make a round durable on that many replicas.

`execute_unit` sends MULTI + commands + EXEC (commands all in one slot, e.g. a temporary key + RENAME) to the slot's
owner, follows the same redirections (a redirected EXEC, or EXECABORT after a redirected queued command, ran
nothing), and never resends a unit whose outcome is unknown: UncertainWriteError.

Not thread-safe: one router per writing thread (its connections are its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Final

from redis import exceptions as rex

from migrate.cluster.errors import (
    ClusterDownError,
    ClusterUnavailableError,
    RedirectLoopError,
    UncertainWriteError,
)
from migrate.cluster.links import NodeLink
from migrate.cluster.topology import Topology, TopologyOptions, read_topology
from migrate.config import ConnectionSettings, Endpoint
from migrate.connection import translate
from migrate.errors import MigrateError, MigrationError
from migrate.logs import get_logger
from migrate.wire import Reply, is_error, pack

log = get_logger(__name__)

ASKING: Final = pack(("ASKING",))
MULTI: Final = pack(("MULTI",))
EXEC: Final = pack(("EXEC",))
OK_REPLY: Final = b"OK"
NodeKey = tuple[str, int]  # the dialled host and port

_NODE_DOWN: Final = (rex.ConnectionError, rex.TimeoutError, OSError)


@dataclass(frozen=True)
class RouterOptions:
    max_redirects: int = 16  # MOVED + ASK per command and call
    retry_seconds: float = 30.0  # back-off budget per call for TRYAGAIN, CLUSTERDOWN, LOADING and nodes down
    backoff_first: float = 0.05
    backoff_max: float = 1.0
    wait_replicas: int = 0  # > 0: WAIT <n> <wait_timeout_ms> closes every node round
    wait_timeout_ms: int = 1000


@dataclass
class RouterStats:
    """Totals since the router was made (what happened, for tests, logs and reports)."""

    batches: int = 0
    commands: int = 0
    units: int = 0
    moved: int = 0
    ask: int = 0
    tryagain: int = 0
    clusterdown: int = 0
    loading: int = 0
    readonly: int = 0
    node_errors: int = 0
    refreshes: int = 0
    resent: int = 0
    uncertain: int = 0
    wait_short: int = 0  # WAIT acknowledged by fewer replicas than asked

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class BatchResult:
    replies: list[Reply] | None  # None: every reply was +OK (execute with expect_ok)
    uncertain: frozenset[int]  # indexes sent again after an attempt whose outcome is unknown


@dataclass(frozen=True, slots=True)
class Redirect:
    kind: str  # MOVED | ASK | TRYAGAIN | CLUSTERDOWN | LOADING | READONLY
    slot: int | None = None
    host: str = ""
    port: int = 0


_TRANSIENT: Final = ("TRYAGAIN", "CLUSTERDOWN", "LOADING")


def redirect_of(reply: Reply) -> Redirect | None:
    """The redirection an error reply asks for, or None for a reply that is the command's own result."""
    if not is_error(reply):
        return None
    text = str(reply)
    kind = text.split(" ", 1)[0]
    if kind in ("MOVED", "ASK"):
        _, slot, address = text.split(" ", 2)
        host, _, port = address.strip().rpartition(":")
        return Redirect(kind, int(slot), host, int(port))
    if kind in (*_TRANSIENT, "READONLY"):
        return Redirect(kind)
    return None


@dataclass
class _Round:
    """One node's share of a round: the indexes it was sent, whether with ASKING, and how many replies to read."""

    key: NodeKey
    indexes: list[int]
    asking: bool
    sent: bool = False  # the connection was open and the commands were written (or partly: broken)
    broken: bool = False  # writing failed: some of the commands may have reached the node, no reply will come


class SlotRouter:
    def __init__(self, topology: Topology, settings: ConnectionSettings | None = None, *, db: int | None = None,
                 options: RouterOptions = RouterOptions(), role: str = "target",
                 topology_options: TopologyOptions | None = None) -> None:
        self.settings = settings or ConnectionSettings()
        self.db = topology.seed.db if db is None else db  # Redis clusters have db 0 only; Valkey 9.0+ can have more
        self.options = options
        self.role = role
        self.stats = RouterStats()
        self._topology_options = topology_options or TopologyOptions(topology.host_map)
        self._links: dict[NodeKey, NodeLink] = {}
        self._endpoints: dict[NodeKey, Endpoint] = {}
        self._down: set[NodeKey] = set()
        self._owners: list[NodeKey | None] = []
        self._adopt(topology)

    # ---- topology ---------------------------------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        return self._topology

    def _adopt(self, topology: Topology) -> None:
        self._topology = topology
        keys: list[NodeKey | None] = []
        for shard in topology.shards:
            keys.append(self._register(shard.primary.endpoint))
        self._owners = [None if i < 0 else keys[i] for i in topology.owners]

    def _register(self, endpoint: Endpoint) -> NodeKey:
        key = (endpoint.host, endpoint.port)
        self._endpoints.setdefault(key, endpoint)
        return key

    def refresh(self) -> Topology:
        """Read the topology again from the nodes that did not fail lately first, then the others and the seed."""
        seeds = self._topology.seeds()
        ordered = [s for s in seeds if (s.host, s.port) not in self._down] + \
                  [s for s in seeds if (s.host, s.port) in self._down]
        topology = read_topology(ordered, self.settings, self._topology_options, self.role)
        self.stats.refreshes += 1
        self._adopt(topology)
        log.info("cluster topology read again", role=self.role, shards=len(topology.shards),
                 state=topology.health.state, answered_by=topology.answered_by[:8])
        return topology

    def owner_endpoint(self, slot: int) -> Endpoint | None:
        key = self._owners[slot]
        return None if key is None else self._endpoints[key]

    # ---- single-key batches ------------------------------------------------------------------------------------------

    def execute(self, slots: Sequence[int], commands: Sequence[bytes], *,
                resend: Callable[[int], bytes] | None = None, expect_ok: bool = False) -> BatchResult:
        """Run commands[i] (one pre-encoded single-key command) on the owner of slots[i]; see the module docstring."""
        count = len(commands)
        self.stats.batches += 1
        self.stats.commands += count
        replies: list[Reply] = [OK_REPLY] * count
        explicit = False  # some node returned its replies one by one (not the all-+OK fast path)
        state = _CallState(self.options)
        todo = list(range(count))
        while todo:
            rounds = self._plan(todo, slots, state)
            self._send(rounds, commands, state, resend)
            todo = []
            for part in rounds:
                explicit |= self._collect(part, replies, todo, state, expect_ok)
            self._after_round(todo, state, slots)
        if expect_ok and not explicit:
            return BatchResult(None, frozenset(state.uncertain))
        return BatchResult(replies, frozenset(state.uncertain))

    def _plan(self, todo: list[int], slots: Sequence[int], state: _CallState) -> list[_Round]:
        groups: dict[tuple[NodeKey, bool], list[int]] = {}
        owners = self._owners
        asks = state.asks
        for i in todo:
            ask = asks.get(i) if asks else None
            key = ask or owners[slots[i]]
            if key is None:
                state.unowned.add(i)
                continue
            group = groups.get((key, ask is not None))
            if group is None:
                groups[(key, ask is not None)] = group = []
            group.append(i)
        return [_Round(key, indexes, asking) for (key, asking), indexes in groups.items()]

    def _send(self, rounds: list[_Round], commands: Sequence[bytes], state: _CallState,
              resend: Callable[[int], bytes] | None) -> None:
        uncertain = state.uncertain
        for part in rounds:
            if resend is not None and uncertain:
                parts = [resend(i) if i in uncertain else commands[i] for i in part.indexes]
            else:
                parts = [commands[i] for i in part.indexes]
            data = (ASKING + ASKING.join(parts) if part.asking else b"".join(parts)) + state.wait
            link = self._link(part.key)
            try:
                link.connect()  # nothing is sent when this fails: the commands did not run
            except rex.AuthenticationError as exc:
                raise translate(exc, self._endpoints[part.key], self.role) from exc
            except rex.ResponseError as exc:  # SELECT refused, ...
                raise translate(exc, self._endpoints[part.key], self.role) from exc
            except _NODE_DOWN as exc:
                self._node_down(part.key, exc, state)
                continue
            part.sent = True
            try:
                link.send_packed(data, 0)  # receive() reads the replies and counts them
            except _NODE_DOWN as exc:
                part.broken = True
                self._node_down(part.key, exc, state)

    def _collect(self, part: _Round, replies: list[Reply], todo: list[int], state: _CallState,
                 expect_ok: bool) -> bool:
        """Read one node's replies into `replies`; queue what must be sent again. True: replies came one by one."""
        if not part.sent:  # could not connect: nothing ran
            todo.extend(part.indexes)
            return True
        if part.broken:
            self._lost(part.indexes, todo, state)
            return True
        per_command = 2 if part.asking else 1
        expected = len(part.indexes) * per_command + (1 if state.wait else 0)
        received = self._links[part.key].receive(expected, expect_ok=expect_ok and not part.asking
                                                 and not state.wait)
        if received.error is None:
            self._down.discard(part.key)
        if received.replies is None:
            return False
        got = received.replies
        if state.wait and len(got) == expected:
            self._check_wait(got.pop(), part.key)
        for position, i in enumerate(part.indexes):
            at = position * per_command + per_command - 1
            if at >= len(got):  # the connection broke before this reply: it may or may not have run
                self._lost([i], todo, state)
                continue
            reply = got[at]
            redirect = redirect_of(reply)
            if redirect is None:
                replies[i] = reply
                state.asks.pop(i, None)
            else:
                self._redirected(i, redirect, part.key, state)
                todo.append(i)
        if received.error is not None:
            self._node_down(part.key, received.error, state)
        return True

    def _lost(self, indexes: list[int], todo: list[int], state: _CallState) -> None:
        """Commands whose outcome is unknown: sent again (as resend(i) when the caller gave it)."""
        state.uncertain.update(indexes)
        self.stats.uncertain += len(indexes)
        todo.extend(indexes)

    def _redirected(self, index: int, redirect: Redirect, replied: NodeKey, state: _CallState) -> None:
        kind = redirect.kind
        state.kinds[kind] = state.kinds.get(kind, 0) + 1
        setattr(self.stats, kind.lower(), getattr(self.stats, kind.lower()) + 1)
        if kind in ("MOVED", "ASK"):
            state.count_redirect(index)
            target = self._address(redirect, replied)
            if kind == "MOVED":
                assert redirect.slot is not None
                self._owners[redirect.slot] = target
                state.moved_slots[redirect.slot] = target
                state.asks.pop(index, None)
                state.refresh = True
            else:
                state.asks[index] = target
        elif kind == "READONLY":  # a stale map pointing at a replica: read it again, bounded like the others
            state.refresh = state.transient = True
            state.asks.pop(index, None)
        else:
            state.transient = True
            state.refresh |= kind == "CLUSTERDOWN"

    def _address(self, redirect: Redirect, replied: NodeKey) -> NodeKey:
        host = redirect.host or replied[0]  # "" (unknown-endpoint): the host of the node that answered
        endpoint = self._topology.endpoint_for(host, redirect.port)
        if self.db != endpoint.db:
            endpoint = endpoint.with_db(self.db)
        return self._register(endpoint)

    def _after_round(self, todo: list[int], state: _CallState, slots: Sequence[int]) -> None:
        """Between rounds: log what happened, read the map again if needed, back off if needed."""
        if not todo and not state.unowned:
            return
        self.stats.resent += len(todo)
        if state.kinds or state.down:
            counts = {k.lower(): v for k, v in state.kinds.items()}
            log.info("cluster retry", role=self.role, resend=len(todo), nodes_down=len(state.down), **counts)
        if state.refresh or state.down or state.unowned:
            self._refresh_keeping(state)
        if state.unowned:
            todo.extend(state.unowned)
            state.unowned.clear()
            state.transient = True
        todo.sort()  # the caller's order again, within every node's next round
        if state.transient or state.down or any(self._owners[slots[i]] in self._down for i in todo):
            state.back_off(*self._why(state))
        state.reset_round()

    def _refresh_keeping(self, state: _CallState) -> None:
        try:
            self.refresh()
        except MigrateError as exc:
            if not isinstance(exc, ClusterUnavailableError):
                raise
            log.warning("cluster topology could not be read", role=self.role, error=exc.message)
            state.transient = True
        for slot, key in state.moved_slots.items():  # a node's MOVED is newer than another node's map
            self._owners[slot] = key
        state.refresh = False

    def _why(self, state: _CallState) -> tuple[str, type[MigrationError]]:
        """Why the call waits, and the error it ends with when the wait runs out."""
        if state.down:
            nodes = ", ".join(str(self._endpoints[k]) for k in sorted(state.down))
            return f"{self.role} cluster nodes unreachable and not replaced: {nodes}", ClusterDownError
        if not state.kinds:
            return f"{self.role} cluster slots without a reachable owner", ClusterDownError
        kinds = ", ".join(f"{k} x{v}" for k, v in state.kinds.items())
        error = ClusterDownError if "CLUSTERDOWN" in state.kinds else MigrationError
        return f"the {self.role} cluster kept answering {kinds}", error

    def _node_down(self, key: NodeKey, exc: BaseException, state: _CallState) -> None:
        self.stats.node_errors += 1
        self._down.add(key)
        state.down.add(key)
        link = self._links.get(key)
        if link is not None:
            link.close()
        log.warning("cluster node unreachable", role=self.role, node=str(self._endpoints[key]),
                    error=str(translate(exc, self._endpoints[key], self.role).message))

    def _check_wait(self, reply: Reply, key: NodeKey) -> None:
        if is_error(reply) or not isinstance(reply, int) or reply < self.options.wait_replicas:
            self.stats.wait_short += 1
            log.warning("WAIT acknowledged by fewer replicas than asked", role=self.role,
                        node=str(self._endpoints[key]), asked=self.options.wait_replicas, got=str(reply))

    def _link(self, key: NodeKey) -> NodeLink:
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = NodeLink(self._endpoints[key], self.settings, self.role, self.db)
        return link

    # ---- transactions ------------------------------------------------------------------------------------------------

    def execute_unit(self, slot: int, commands: Sequence[bytes]) -> list[Reply]:
        """MULTI + commands + EXEC on the owner of `slot`; the replies of all of them (MULTI's, one per queued
        command, EXEC's), like one pipelined call. Every command must be on a key of `slot` (else CROSSSLOT)."""
        self.stats.units += 1
        body = MULTI + b"".join(commands) + EXEC
        expected = len(commands) + 2
        state = _CallState(self.options)
        while True:
            ask = state.asks.get(0)
            key = ask or self._owners[slot]
            if key is None:
                state.unowned.add(0)
                self._after_round([0], state, [slot])
                continue
            got = self._unit_round(key, body if ask is None else ASKING + body, expected + (ask is not None), state)
            if got is None:
                self._after_round([0], state, [slot])
                continue
            replies = got[1:] if ask is not None else got
            redirect = next((r for r in map(redirect_of, (replies[-1], *replies[1:-1])) if r is not None), None)
            if redirect is None:
                return replies
            self._redirected(0, redirect, key, state)
            self._after_round([0], state, [slot])

    def _unit_round(self, key: NodeKey, data: bytes, expected: int, state: _CallState) -> list[Reply] | None:
        link = self._link(key)
        try:
            link.connect()
        except (rex.AuthenticationError, rex.ResponseError) as exc:
            raise translate(exc, self._endpoints[key], self.role) from exc
        except _NODE_DOWN as exc:
            self._node_down(key, exc, state)
            return None
        try:
            link.send_packed(data, 0)
        except _NODE_DOWN as exc:
            self._node_down(key, exc, state)
            raise self._uncertain_unit(key) from exc
        received = link.receive(expected)
        assert received.replies is not None
        if received.error is not None:
            self._node_down(key, received.error, state)
            raise self._uncertain_unit(key) from received.error
        return received.replies

    def _uncertain_unit(self, key: NodeKey) -> UncertainWriteError:
        self.stats.uncertain += 1
        return UncertainWriteError(f"lost the connection to {self.role} {self._endpoints[key]} during a transaction: "
                                   "it may or may not have been applied")

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()

    def __enter__(self) -> SlotRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CallState:
    """What one execute / execute_unit call has been through: redirections, uncertain indexes, back-off budget."""

    def __init__(self, options: RouterOptions) -> None:
        self.options = options
        self.asks: dict[int, NodeKey] = {}
        self.redirects: dict[int, int] = {}
        self.uncertain: set[int] = set()
        self.unowned: set[int] = set()
        self.moved_slots: dict[int, NodeKey] = {}
        self.wait = pack(("WAIT", options.wait_replicas, options.wait_timeout_ms)) if options.wait_replicas else b""
        self.deadline: float | None = None
        self.delay = options.backoff_first
        self.kinds: dict[str, int] = {}
        self.down: set[NodeKey] = set()
        self.refresh = False
        self.transient = False

    def reset_round(self) -> None:
        self.kinds = {}
        self.down = set()
        self.refresh = False
        self.transient = False

    def count_redirect(self, index: int) -> None:
        count = self.redirects[index] = self.redirects.get(index, 0) + 1
        if count > self.options.max_redirects:
            raise RedirectLoopError(f"a command was redirected {count} times (MOVED/ASK): the slot map keeps "
                                    "changing")

    def back_off(self, why: str, error: type[MigrationError]) -> None:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.options.retry_seconds
        if now >= self.deadline:
            raise error(f"gave up after {self.options.retry_seconds:g} s: {why}")
        time.sleep(min(self.delay, max(0.0, self.deadline - now)))
        self.delay = min(self.delay * 2, self.options.backoff_max)
