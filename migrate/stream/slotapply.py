"""Apply a translated stream into a cluster target exactly once: per batch, one MULTI ... EXEC per slot, each ending
with that slot's marker; then the floor marker.

A cluster runs a transaction only when all its keys are in one slot (CROSSSLOT otherwise), so the one marker of
migrate.stream.applier cannot commit together with a batch that spans slots. Here there are two kinds of marker
(values as marker.py writes them):

- the slot marker `__migrate:stream-applied:<stream>{<tag>}`, the tag hashing to the slot (rdb.rewrite.slot_tag):
  written in the same transaction as the slot's commands of a batch, with the batch's end offset. Every command of
  that slot up to that offset is on the target.
- the floor marker `__migrate:stream-applied:<stream>`: the end offset of the last batch whose every slot committed.
  Every command of every slot up to it is on the target.

A stream resumed from the floor (or lower) skips each command whose slot marker is at or past its unit's end offset:
nothing is applied twice (INCR, RPUSH), nothing is lost. A source MULTI/EXEC group whose keys are in several slots is
split by slot (the target is not read before the cutover: every key ends as the source's).

Keyless commands (FLUSHALL, FLUSHDB, FUNCTION ...) go to every primary once the batches before them are committed;
FLUSHALL and FLUSHDB delete the markers too, so the floor is written again right after (a crash in between leaves no
floor: the caller resyncs in full).

Replies (valkey-io/valkey src/cluster.c getNodeByQuery, src/multi.c): MOVED or ASK on a queued command makes the
EXEC refuse (EXECABORT: nothing ran), so the slot's transaction is sent again once the slot map is read again (with
ASKING before MULTI after an ASK); TRYAGAIN, CLUSTERDOWN, LOADING and READONLY the same, with back-off. A connection
that broke before the EXEC's reply: the slot's marker says whether the transaction committed. A marker older than
what the slot had acknowledged means the node lost acknowledged writes: TargetLostError. Any other refusal when a
command is queued (CROSSSLOT: one command with keys in several slots, OOM, unknown command, NOPERM) stops the stream,
naming the command; errors inside EXEC are the applier's per-command errors (named in tally.failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Self

from redis import exceptions as rex

from migrate.cluster.links import NodeLink
from migrate.cluster.topology import Topology, read_topology
from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import MigrationError
from migrate.logs import get_logger
from migrate.rdb.rewrite import key_slot, slot_tag
from migrate.render import display_key
from migrate.run.tally import KeyIssue
from migrate.stream import table
from migrate.stream.applier import FATAL_PREFIXES, TargetLostError, command_name, describe, key_of
from migrate.stream.marker import Marker, marker_key, marker_value, parse_marker
from migrate.stream.model import Argv, StreamTally, Unit
from migrate.wire import pack_argv

log = get_logger("migrate.stream")

RETRY_SECONDS: Final = 60.0  # a slot that cannot be written this long (cluster down, endless migration) stops
RETRIED: Final = ("MOVED", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY", "MASTERDOWN")
FLUSHES: Final = frozenset({b"flushall", b"flushdb"})
MULTI: Final = pack_argv((b"MULTI",))
EXEC: Final = pack_argv((b"EXEC",))
ASKING: Final = pack_argv((b"ASKING",))
QUEUED: Final = b"QUEUED"


def slot_marker_key(stream_id: str, slot: int) -> bytes:
    return marker_key(stream_id) + b"{" + slot_tag(slot) + b"}"


def command_slot(argv: Argv) -> int | None:
    """The slot of the command's (first) key, None for a command without one."""
    at = _key_at(argv[0])
    return key_slot(argv[at]) if 0 < at < len(argv) else None


@cache
def _key_at(name: bytes) -> int:
    """Where a command's first key is (0: none); once per spelling of a command name (the stream's are few)."""
    entry = table.TABLE.get(name.decode("latin-1").lower())
    return entry.key_at if entry is not None else 1


@dataclass
class _Slot:
    """A slot's commands of the batch being built."""

    packed: list[bytes] = field(default_factory=list)
    argvs: list[Argv] = field(default_factory=list)


class ClusterNodes:
    """Connections to the target's primaries and the slot map, read again on demand; `one` runs a single-key command
    on its slot's owner, following redirections."""

    def __init__(self, topology: Topology, settings: ConnectionSettings) -> None:
        self.topology = topology
        self.settings = settings
        self.links: dict[str, NodeLink] = {}

    def refresh(self) -> Topology:
        self.topology = read_topology(self.topology.seeds(), self.settings, role="target")
        return self.topology

    def owner(self, slot: int) -> Endpoint | None:
        shard = self.topology.owner(slot)
        return None if shard is None else shard.primary.endpoint

    def primaries(self) -> list[Endpoint]:
        return [s.primary.endpoint for s in self.topology.shards]

    def link(self, endpoint: Endpoint) -> NodeLink:
        link = self.links.get(endpoint.address)
        if link is None:
            link = self.links[endpoint.address] = NodeLink(endpoint, self.settings, "target")
        return link

    def one(self, key: bytes, argv: Argv) -> Any:
        """One single-key command on the owner of `key`'s slot, following MOVED/ASK and waiting out a failover."""
        patience = _Patience(self)
        while True:
            reply = self.attempt(key, argv)
            if not _retried(reply):
                if isinstance(reply, Exception):
                    raise MigrationError(f"the target refused {describe(argv)}: {reply}")
                return reply
            patience.wait(describe(argv), reply)

    def attempt(self, key: bytes, argv: Argv) -> Any:
        """One try of a single-key command on the owner of `key`'s slot: its reply, a refusal that may pass (MOVED,
        CLUSTERDOWN ...) or a lost connection as an exception instance."""
        slot = key_slot(key)
        endpoint = self.owner(slot)
        if endpoint is None:
            return rex.ConnectionError(f"no primary owns slot {slot}")
        try:
            return self.link(endpoint).call(pack_argv(argv), 1)[0]
        except rex.ConnectionError as exc:
            return exc

    def each_primary(self, argv: Argv) -> list[Any]:
        """The command on every primary (keyless commands: FLUSHALL, FUNCTION ...), replies in order."""
        return [self.link(endpoint).call(pack_argv(argv), 1)[0] for endpoint in self.primaries()]

    def refresh_quietly(self) -> None:
        try:
            self.refresh()
        except MigrationError as exc:  # every node unreachable for now: the caller's deadline decides
            log.warning("target cluster map not readable", error=exc.message)
        except Exception as exc:
            log.warning("target cluster map not readable", error=str(exc))

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_markers(nodes: ClusterNodes, stream_id: str) -> tuple[Marker | None, dict[int, int]]:
    """The floor marker and every slot marker of the stream (slot -> offset), read on the primaries owning them."""
    value = nodes.one(marker_key(stream_id), (b"GET", marker_key(stream_id)))
    floor = parse_marker(stream_id, value) if isinstance(value, bytes) else None
    slots = {slot: parse_marker(stream_id, reply).offset for slot, reply in _each_slot_marker(nodes, stream_id, b"GET")
             if isinstance(reply, bytes)}
    return floor, slots


def remove_markers(nodes: ClusterNodes, stream_id: str) -> int:
    """Delete the floor and every slot marker of the stream; how many there were."""
    removed = int(nodes.one(marker_key(stream_id), (b"DEL", marker_key(stream_id))) or 0)
    return removed + sum(r for _, r in _each_slot_marker(nodes, stream_id, b"DEL") if isinstance(r, int))


def _each_slot_marker(nodes: ClusterNodes, stream_id: str, command: bytes) -> Iterator[tuple[int, Any]]:
    """`command` (GET, DEL) on the marker of every slot, pipelined on the primary owning it: (slot, reply)."""
    for shard in nodes.topology.shards:
        owned = [s for r in shard.ranges for s in range(r.start, r.end + 1)]
        data = b"".join(pack_argv((command, slot_marker_key(stream_id, s))) for s in owned)
        yield from zip(owned, nodes.link(shard.primary.endpoint).call(data, len(owned)), strict=True)


class SlotApplier:
    """Applier for a cluster target (same calls as migrate.stream.Applier but raw runs); `applied_offset` is the end
    offset of the last batch every slot of which committed (the floor)."""

    def __init__(self, nodes: ClusterNodes, stream_id: str, *, tally: StreamTally,
                 on_applied: Callable[[int, int], None] | None = None, slot_markers: Mapping[int, int] | None = None,
                 floor_held: bool = True, batch_commands: int = 1000, batch_bytes: int = 1 << 20) -> None:
        """`slot_markers`: what the target's slot markers hold (read_markers); `floor_held`: the target holds the
        floor marker already (the caller wrote it after a snapshot, or read it)."""
        self.nodes = nodes
        self.stream_id = stream_id
        self.tally = tally
        self.on_applied = on_applied
        self.done: dict[int, int] = dict(slot_markers or {})  # slot -> end offset its marker holds
        self.batch_commands = batch_commands
        self.batch_bytes = batch_bytes
        self.pending: dict[int, _Slot] = {}
        self.count = 0
        self.nbytes = 0
        self.end_offset: int | None = None
        self.source_db = 0
        self.applied_offset: int | None = None
        self.floor_held = floor_held
        self.reconnects = 0
        self._marker_heads: dict[int, bytes] = {}  # slot -> the packed SET and key of its marker (value apart)

    # -- public -----------------------------------------------------------------------------------------------------

    def apply(self, unit: Unit) -> None:
        done, pending = self.done, self.pending
        for db, argv in unit.commands:
            if db:
                raise MigrationError(f"the stream writes {describe(argv)} into db {db}: a cluster target takes db 0 "
                                     "only", "map the source database onto db 0 (--db-map N:0), or leave it out")
            slot = command_slot(argv)
            if slot is None:
                self._keyless(argv, unit)
                continue
            if unit.end_offset <= done.get(slot, -1):
                continue  # on the target already: committed before a lost connection or a kill
            entry = pending.get(slot)
            if entry is None:
                entry = pending[slot] = _Slot()
            data = pack_argv(argv)
            entry.packed.append(data)
            entry.argvs.append(argv)
            self.count += 1
            self.nbytes += len(data)
        self.end_offset, self.source_db = unit.end_offset, unit.source_db
        if self.count >= self.batch_commands or self.nbytes >= self.batch_bytes:
            self._send()

    def apply_all(self, units: Iterable[Unit]) -> int | None:
        for unit in units:
            self.apply(unit)
        return self.flush()

    def flush(self) -> int | None:
        if self.end_offset is not None and (self.pending or self.end_offset != self.applied_offset):
            self._send()
        return self.applied_offset

    def marker_count(self) -> int:
        """The marker keys this stream holds on the target now (after a flush): the floor and the slot markers."""
        return int(self.floor_held) + len(self.done)

    def close(self) -> None:
        self.nodes.close()

    # -- batches ----------------------------------------------------------------------------------------------------

    def _send(self) -> None:
        assert self.end_offset is not None
        end, db = self.end_offset, self.source_db
        value = marker_value(end, db, int(time.time() * 1000))
        todo, self.pending = self.pending, {}
        self._commit(todo, value)
        for slot in todo:
            self.done[slot] = end
        floor = marker_key(self.stream_id)
        self.nodes.one(floor, (b"SET", floor, value))
        self.floor_held = True
        self.tally.applied_commands += self.count
        self.count = self.nbytes = 0
        self.applied_offset = self.tally.applied_offset = end
        if self.on_applied is not None:
            self.on_applied(end, db)

    def _keyless(self, argv: Argv, unit: Unit) -> None:
        """A command without a key, on every primary, once what came before it is committed."""
        self.flush()
        replies = self.nodes.each_primary(argv)
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            text = str(failed[0])
            if text.startswith(FATAL_PREFIXES):
                raise MigrationError(f"the target refused {describe(argv)}: {text}")
            self.tally.failed.add(KeyIssue(0, key_of(argv), text))
        if argv[0].lower() in FLUSHES:
            self.done.clear()  # the slot markers went with the keys
            self.floor_held = False
        self.end_offset, self.source_db = unit.end_offset, unit.source_db
        self._send()  # the floor again, past this command

    def _commit(self, todo: dict[int, _Slot], value: bytes) -> None:
        """Every slot's transaction committed, whatever the cluster does meanwhile (bounded by RETRY_SECONDS)."""
        patience = _Patience(self.nodes)
        asking: dict[int, Endpoint] = {}
        send = dict(todo)
        unsure: dict[int, _Slot] = {}  # sent, outcome unknown (connection lost): never sent again before it is known
        while True:
            why = ""
            if send:
                retry, uncertain, why = self._round(send, value, asking)
                unsure.update((slot, send[slot]) for slot in uncertain)
                send = {slot: send[slot] for slot in retry}
            if unsure:
                send.update(self._settle(unsure, value))
            if not send and not unsure:
                return
            patience.wait(f"{len(send) + len(unsure)} slot transaction(s)", why or "the connection was lost")

    def _round(self, left: dict[int, _Slot], value: bytes,
               asking: dict[int, Endpoint]) -> tuple[list[int], list[int], str]:
        """Send each slot's transaction to its owner (all nodes first, then read): the slots to send again, the slots
        whose outcome is unknown (connection lost), and why."""
        by_node: dict[str, tuple[Endpoint, list[int]]] = {}
        retry: list[int] = []
        asked: set[int] = set()
        why = ""
        for slot in left:
            endpoint = asking.pop(slot, None)
            if endpoint is not None:
                asked.add(slot)
            else:
                endpoint = self.nodes.owner(slot)
            if endpoint is None:
                retry.append(slot)
                why = f"no primary owns slot {slot}"
                continue
            by_node.setdefault(endpoint.address, (endpoint, []))[1].append(slot)
        sent: list[tuple[NodeLink, list[int], int]] = []
        uncertain: list[int] = []
        for endpoint, slots in by_node.values():
            link = self.nodes.link(endpoint)
            parts, count = [], 0
            tail = b"$%d\r\n%s\r\n" % (len(value), value) + EXEC  # the marker's value, then EXEC
            for slot in slots:
                head = ASKING if slot in asked else b""
                parts += [head, MULTI, *left[slot].packed, self._marker_head(slot), tail]
                count += (1 if head else 0) + len(left[slot].packed) + 3
            try:
                link.send_packed(b"".join(parts), count)
            except rex.ConnectionError as exc:
                uncertain += slots
                why = str(exc)
                continue
            sent.append((link, slots, count))
        for link, slots, count in sent:
            received = link.receive(count)
            replies = received.replies or []
            at = 0
            for slot in slots:
                size = len(left[slot].packed) + 3 + (1 if slot in asked else 0)
                mine = replies[at:at + size]
                at += size
                if len(mine) < size:
                    uncertain.append(slot)
                    why = str(received.error)
                    continue
                verdict = self._judge(slot, left[slot], mine, asking)
                if verdict:
                    retry.append(slot)
                    why = verdict
            if received.error is not None:
                link.reset()
        return retry, uncertain, why

    def _marker_head(self, slot: int) -> bytes:
        """`*3 SET <slot marker key>` packed, without the value (the batch's): built once per slot."""
        head = self._marker_heads.get(slot)
        if head is None:
            key = slot_marker_key(self.stream_id, slot)
            head = self._marker_heads[slot] = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n" % (len(key), key)
        return head

    def _judge(self, slot: int, entry: _Slot, replies: list[Any], asking: dict[int, Endpoint]) -> str:
        """The replies of one slot's transaction: '' when committed, else why it must be sent again (nothing of it
        ran). A refusal that will not go away raises."""
        result = replies[-1]
        queued = replies[-(len(entry.argvs) + 2):-1]  # the commands and the marker's SET
        if type(result) is list and queued.count(QUEUED) == len(queued) and not any(
                issubclass(kind, Exception) for kind in set(map(type, result))):
            return ""  # committed, no command refused: most transactions, checked in C
        for argv, reply in zip((*entry.argvs, (b"SET", slot_marker_key(self.stream_id, slot))), queued, strict=True):
            if isinstance(reply, Exception):
                text = str(reply)
                if text.startswith(RETRIED):
                    self._follow(slot, text, asking)
                    return text
                raise MigrationError(f"the target refused {describe(argv)} (slot {slot}): {text}; nothing of the "
                                     "slot's batch was applied",
                                     _hint(text))
        if isinstance(result, Exception):
            text = str(result)
            if text.startswith(RETRIED) or text.startswith("EXECABORT"):
                return text
            raise MigrationError(f"the target refused the transaction of slot {slot}: {text}")
        if not isinstance(result, list):
            return f"EXEC answered {result!r:.60}"
        self._errors(entry, result)
        return ""

    def _follow(self, slot: int, text: str, asking: dict[int, Endpoint]) -> None:
        if text.startswith("ASK "):
            host, _, port = text.split()[2].rpartition(":")
            asking[slot] = self.nodes.topology.endpoint_for(host, int(port))

    def _errors(self, entry: _Slot, result: list[Any]) -> None:
        """Errors inside EXEC: the rest of the slot's batch ran; fatal kinds raise, the others are named."""
        for argv, reply in zip(entry.argvs, result, strict=False):
            if isinstance(reply, Exception):
                text = str(reply)
                if text.startswith(FATAL_PREFIXES):
                    raise MigrationError(f"the target refused {describe(argv)}: {text}", _hint(text))
                self.tally.failed.add(KeyIssue(0, key_of(argv), f"{command_name(argv)}: {text}"))

    def _settle(self, unsure: dict[int, _Slot], value: bytes) -> dict[int, _Slot]:
        """Slots whose connection broke before their EXEC's reply, settled by their markers where they can be read
        now (one try each; the others stay in `unsure`): committed ones are dropped, the others returned to be sent
        again. A marker older than the slot had acknowledged means lost writes."""
        again: dict[int, _Slot] = {}
        for slot in list(unsure):
            key = slot_marker_key(self.stream_id, slot)
            held = self.nodes.attempt(key, (b"GET", key))
            if _retried(held):
                return again  # the cluster cannot answer now: the rest waits for the next round
            if isinstance(held, Exception):
                raise MigrationError(f"the target refused GET {display_key(key)}: {held}")
            entry = unsure.pop(slot)
            self.reconnects += 1
            if held == value:
                log.warning("slot transaction committed before the connection was lost", slot=slot)
                continue
            offset = parse_marker(self.stream_id, held).offset if isinstance(held, bytes) else None
            before = self.done.get(slot)
            if before is not None and (offset is None or offset < before):
                raise TargetLostError(f"the target lost acknowledged writes in slot {slot}: its marker is "
                                      f"{'gone' if offset is None else f'at offset {offset}'}, it had acknowledged "
                                      f"offset {before} (a node restarted without persisting them, or a failover "
                                      "lost them)", offset, before)
            again[slot] = entry
        return again


def _retried(reply: Any) -> bool:
    return isinstance(reply, rex.ConnectionError) or (isinstance(reply, Exception) and str(reply).startswith(RETRIED))


class _Patience:
    """How long a write into the cluster may keep being refused for a passing reason (back-off, map read again)."""

    def __init__(self, nodes: ClusterNodes) -> None:
        self.nodes = nodes
        self.deadline = time.monotonic() + RETRY_SECONDS
        self.delay = 0.05

    def wait(self, what: str, why: object) -> None:
        """Back off once; MigrationError once RETRY_SECONDS have passed."""
        if time.monotonic() > self.deadline:
            raise MigrationError(f"the target cluster did not take {what} within {RETRY_SECONDS:g} s: {why}",
                                 "check the target cluster (CLUSTER INFO); the stream resumes from its markers "
                                 "(--resume)")
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 1.0)
        self.nodes.refresh_quietly()


def _hint(text: str) -> str:
    if text.startswith("CROSSSLOT"):
        return ("the source's command names keys of several slots, which a cluster refuses: the application must "
                "use hash tags for such keys, or migrate into a standalone target")
    return "the target's data differs from the source's from this command on: compare them (migrate verify)"
