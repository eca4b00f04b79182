"""The ACL rights each verb and strategy needs on each side, as data, and a probe that finds every missing one in a
single pass, so a restricted user learns the whole list at once instead of one refusal per attempt.

The probe executes nothing: it opens a transaction (MULTI), queues one instance of each command, and DISCARDs it.
Servers check a queued command's existence (a renamed or disabled command is unknown) and the user's ACL rights,
keys included, when they queue it: a NOPERM or unknown-command reply names a missing right, QUEUED (or "not allowed
inside a transaction", for SYNC) a granted one. A user without MULTI is probed by running the read-only commands
for real (they change nothing); the others are reported as not checked.

The README's "Minimum rights" table is generated from RIGHTS (tests/test_docs.py), and tests/test_rights.py runs
every strategy as a user holding exactly those rights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from migrate.errors import PermissionDeniedError
from migrate.facts.capabilities import Capabilities
from migrate.server import Server
from migrate.wire import Channel, Reply, is_error, pack

Args = tuple[str, ...]  # after the command; "{key}" stands for a key of the data being migrated


@dataclass(frozen=True)
class Context:
    """What decides which rights apply: the two servers' releases and the run's options."""

    source: Capabilities | None
    target: Capabilities | None
    flush_target: bool = False
    from_file: bool = False  # reload from --from-rdb / --from-aof: nothing is read from the source
    selected_dbs: bool = False  # --db / --db-map
    sync_fallback: bool = False  # sync from a source that refuses replication: replay + keyspace notifications
    source_cluster: bool = False  # the source is a cluster (its topology is read; shards are read node by node)
    target_cluster: bool = False  # the target is a cluster (every key routed to the primary owning its slot)
    read_from_replica: bool = False  # --read-from replica
    digests: bool = False  # verify --server-digests big/always: DEBUG DIGEST-VALUE is tried
    from_aof: bool = False  # reload from --from-aof: the AOF's commands are replayed
    via_replication: bool = False  # reload --load-via replication: the target loads as migrate's replica


@dataclass(frozen=True)
class Right:
    command: str  # as ACL names it: "scan", "xgroup|create", "memory|usage"
    args: Args
    why: str
    required: bool = True  # False: used when granted; without it the verb degrades and its report says how
    when: str = ""  # in words, for the README: the condition under which it is needed
    applies: Callable[[Context], bool] | None = field(default=None, compare=False)

    def argv(self, key: bytes) -> tuple[bytes, ...]:
        head = tuple(part.encode() for part in self.command.split("|"))
        return head + tuple(key if a == "{key}" else a.encode() for a in self.args)

    def needed(self, context: Context) -> bool:
        return self.applies is None or self.applies(context)


@dataclass(frozen=True)
class _Sample(Right):
    """A command probed on behalf of an ACL category right."""

    category: Right = field(default_factory=lambda: Right("", (), ""))


def _source_has(command: str) -> Callable[[Context], bool]:
    return lambda c: c.source is not None and c.source.has(command)


def _source_lacks(command: str) -> Callable[[Context], bool]:
    return lambda c: c.source is None or not c.source.has(command)


def _target_has(command: str) -> Callable[[Context], bool]:
    return lambda c: c.target is not None and c.target.has(command)


K: Final = "{key}"


def _cluster_reads(role: str) -> tuple[Right, ...]:
    """What reading a cluster's topology sends (migrate.cluster.topology.discover) on every node of that side."""
    applies: Callable[[Context], bool] = (lambda c: c.source_cluster) if role == "source" else (
        lambda c: c.target_cluster)
    return tuple(Right(command, args, f"read the {role} cluster's topology, health and open slot migrations",
                       when=f"the {role} is a cluster", applies=applies)
                 for command, args in (("cluster|info", ()), ("cluster|nodes", ()), ("cluster|shards", ())))
EXPIRY_READS: Final = (
    Right("pexpiretime", (K,), "read each key's absolute expiry", when="source has PEXPIRETIME (7.0+)",
          applies=_source_has("pexpiretime")),
    Right("pttl", (K,), "read each key's expiry", when="source older than 7.0", applies=_source_lacks("pexpiretime")),
)
BIG_KEY_READS: Final = (
    *(Right(command, args, "copy keys over --big-key-threshold in chunks", when="big keys (most datasets have some)")
      for command, args in (("exists", (K,)), ("strlen", (K,)), ("getrange", (K, "0", "1")), ("llen", (K,)),
                            ("lrange", (K, "0", "1")), ("scard", (K,)), ("sscan", (K, "0")), ("zcard", (K,)),
                            ("zrange", (K, "0", "1")), ("hlen", (K,)), ("hscan", (K, "0")), ("xrange", (K, "-", "+")),
                            ("xinfo|stream", (K,)), ("xinfo|groups", (K,)), ("xinfo|consumers", (K, "g")),
                            ("xpending", (K, "g", "-", "+", "1")))),
    Right("hpexpiretime", (K, "FIELDS", "1", "f"), "copy the field TTLs of big hashes",
          when="source stores hash field TTLs (Redis 7.4+)", applies=lambda c: c.source is not None
          and c.source.hash_field_ttl),
)
REWRITES: Final = tuple(
    Right(command, args, "rebuild values the target cannot RESTORE, and big keys", when=when, applies=applies)
    for command, args, when, applies in (
        ("multi", (), "", None), ("exec", (), "", None), ("set", (K, "v"), "", None), ("append", (K, "v"), "", None),
        ("rpush", (K, "v"), "", None), ("sadd", (K, "v"), "", None), ("zadd", (K, "1", "m"), "", None),
        ("hset", (K, "f", "v"), "", None), ("xadd", (K, "1-1", "f", "v"), "", None),
        ("xsetid", (K, "1-1"), "", None), ("xgroup|create", (K, "g", "0"), "", None),
        ("xgroup|createconsumer", (K, "g", "c"), "target has it (Redis 6.2+, Valkey)",
         _target_has("xgroup createconsumer")),
        ("xclaim", (K, "g", "c", "0", "1-1"), "", None),
        ("hpexpireat", (K, "1", "FIELDS", "1", "f"), "target stores hash field TTLs (Redis 7.4+, Valkey 9.0+)",
         _target_has("hpexpireat")),
        ("pexpire", (K, "1"), "", None), ("pexpireat", (K, "1"), "", None), ("persist", (K,), "", None),
        ("rename", (K, K), "", None)))
TARGET_WRITES: Final = (
    Right("restore", (K, "0", "x"), "write each key"),
    *_cluster_reads("target"),
    Right("asking", (), "write into a slot that is migrating (ASK redirection)", when="the target is a cluster",
          applies=lambda c: c.target_cluster),
    Right("exists", (K,), "leave keys that exist on the target alone (busy keys)"),
    Right("del", (K,), "remove temporary keys of a failed chunked copy"),
    Right("dbsize", (), "refuse a non-empty target; notice a target that lost keys"),
    Right("scan", ("0",), "remove a killed run's temporary keys on --resume"),
    Right("info", (), "identify the target, notice a restart"),
    *REWRITES,
    Right("flushdb", (), "--flush-target", when="--flush-target", applies=lambda c: c.flush_target),
    Right("config|get", ("proto-max-bulk-len",), "size RESTOREs to the target's limit", required=False),
    Right("function|restore", ("x",), "copy function libraries", required=False, when="target has functions (7.0+)",
          applies=_target_has("function")),
)
SOURCE_READS: Final = (
    Right("scan", ("0",), "list the keys"),
    *_cluster_reads("source"),
    Right("readonly", (), "read a shard on its replica", when="--read-from replica on a cluster",
          applies=lambda c: c.source_cluster and c.read_from_replica),
    Right("dump", (K,), "read each value"),
    *EXPIRY_READS,
    Right("type", (K,), "type of big keys"),
    Right("info", (), "identify the source, its keyspace and whether it changed during the copy"),
    Right("memory|usage", (K,), "find big keys before reading them whole", required=False),
    *BIG_KEY_READS,  # before the size guard: a command listed twice keeps its first (required) row
    *(Right(command, args, "ask sizes safely: MEMORY USAGE of an empty list kills a Redis before 7.0 (a list's length "
            "is read first)", required=False, when="source before Redis 7.0",
            applies=lambda c: bool(c.source and c.source.memory_usage_unsafe))
      for command, args in (("llen", (K,)), ("lindex", (K, "0")))),
    Right("function|dump", (), "copy function libraries", required=False, when="source has functions (7.0+)",
          applies=_source_has("function")),
    Right("function|list", (), "copy function libraries", required=False, when="source has functions (7.0+)",
          applies=_source_has("function")),
)
SNAPSHOT: Final = (
    *_cluster_reads("source"),
    Right("sync", (), "take the snapshot over the replication protocol", when="no --from-rdb or --from-aof",
          applies=lambda c: not c.from_file),
    Right("replconf", ("capa", "eof"), "take the snapshot over the replication protocol",
          when="no --from-rdb or --from-aof", applies=lambda c: not c.from_file),
    Right("info", (), "identify the source", when="no --from-rdb or --from-aof", applies=lambda c: not c.from_file),
)
VERIFY_READS: Final = (
    Right("scan", ("0",), "list the keys"),
    Right("type", (K,), "compare types"),
    *EXPIRY_READS,
    Right("exists", (K,), "look for keys missing on one side"),
    Right("info", (), "identify the server; the counting proof"),
    Right("dump", (K,), "read small values in one command (--level full)", required=False),
    Right("memory|usage", (K,), "find values small enough to read in one command (--level full)", required=False),
    Right("debug", ("digest-value", K), "settle values by server-side digests", required=False,
          when="--server-digests big or always", applies=lambda c: c.digests),
    *(Right(command, args, "compare values at --level full", when="--level full")
      for command, args in (("get", (K,)), ("getrange", (K, "0", "1")), ("strlen", (K,)), ("lrange", (K, "0", "1")),
                            ("llen", (K,)), ("sscan", (K, "0")), ("scard", (K,)), ("zrange", (K, "0", "1")),
                            ("zcard", (K,)), ("hscan", (K, "0")), ("hlen", (K,)), ("xrange", (K, "-", "+")),
                            ("xinfo|stream", (K,)), ("xinfo|groups", (K,)), ("xinfo|consumers", (K, "g")),
                            ("xpending", (K, "g", "-", "+", "1")))),
    Right("hpexpiretime", (K, "FIELDS", "1", "f"), "compare hash field TTLs", when="both store field TTLs",
          applies=lambda c: bool(c.source and c.target and c.source.hash_field_ttl and c.target.hash_field_ttl)),
    Right("function|list", (), "compare function libraries", required=False, when="functions (7.0+)",
          applies=lambda c: bool(c.source and c.target and c.source.has("function") and c.target.has("function"))),
    Right("acl|list", (), "compare ACL users", required=False),
    Right("config|get", ("maxmemory-policy",), "compare configuration", required=False),
)

def _replicating(c: Context) -> bool:
    return not c.sync_fallback


def _fallback(right: Right) -> Right:
    """A replay read, needed by sync only when it falls back to replay + keyspace notifications."""
    def applies(context: Context) -> bool:
        return context.sync_fallback and right.needed(context)

    return Right(right.command, right.args, f"{right.why} (fallback: the source refuses replication)", right.required,
                 "the source refuses PSYNC" + (f"; {right.when}" if right.when else ""), applies)


SYNC_SOURCE: Final = (
    *_cluster_reads("source"),
    Right("psync", ("?", "-1"), "follow the source as a replica: its snapshot, then its write stream",
          when="without it: the keyspace-notification fallback", applies=_replicating),
    Right("replconf", ("listening-port", "0"), "the replication handshake and acknowledgements",
          when="without it: the keyspace-notification fallback", applies=_replicating),
    Right("info", (), "identify the source; its replication offset (lag, cutover point) and key counts"),
    Right("client|pause", ("1", "WRITE"), "pause the source's writes at the cutover",
          when="source has CLIENT PAUSE WRITE (6.2+)", applies=_source_has("client pause write")),
    Right("client|unpause", (), "end the cutover's write pause", when="source has CLIENT PAUSE WRITE (6.2+)",
          applies=_source_has("client pause write")),
    *(Right(command, (), "pause writes and read the offset in one transaction: the exact cut point",
            when="source has CLIENT PAUSE WRITE (6.2+)", applies=_source_has("client pause write"))
      for command in ("multi", "exec")),
    Right("config|get", ("notify-keyspace-events",), "check that keyspace notifications are on",
          when="the source refuses PSYNC", applies=lambda c: c.sync_fallback),
    Right("psubscribe", ("__keyevent@*__:*",), "hear every key the source writes (keyspace notifications)",
          when="the source refuses PSYNC", applies=lambda c: c.sync_fallback),
    *(_fallback(r) for r in SOURCE_READS if r.command not in ("info", "function|dump", "function|list")),
)
SYNC_TARGET: Final = (
    *(r for r in TARGET_WRITES if r.command not in ("scan", "flushdb")),
    Right("@write", (), "apply the source's write stream: whatever the application writes (any write command, as "
          "the source propagates it), so the ACL category, not a list"),
    Right("get", (K,), "read the stream marker (where the target stands) after a lost connection or a kill"),
    Right("command|list", (), "the target's command set (which commands the stream may pass as they are)",
          required=False),
    Right("flushall", (), "a full resync empties the sync's databases (keys deleted on the source must go)",
          when="no --db/--db-map", applies=lambda c: not c.selected_dbs),
    Right("flushdb", (), "a full resync empties the sync's databases; --flush-target", when="--db/--db-map",
          applies=lambda c: c.selected_dbs),
    Right("eval", ("return 1", "0"), "scripts the source propagates verbatim (Redis 6.x, lua-replicate-commands no)",
          required=False),
    Right("evalsha", ("0" * 40, "0"), "scripts the source propagates verbatim (Redis 6.x, lua-replicate-commands no)",
          required=False),
    *(Right(command, args, "a full resync of one shard, or FLUSHALL on one source primary, deletes the target's keys "
            "of that shard's slots (the other shards' stay)", when="the source is a cluster",
            applies=lambda c: c.source_cluster)
      for command, args in (("scan", ("0",)), ("unlink", (K,)))),
)

RELAY_SOURCE: Final = (
    Right("psync", ("?", "-1"), "follow the source as a replica: its snapshot, then its write stream"),
    Right("replconf", ("listening-port", "0"), "the replication handshake and acknowledgements"),
    *(r for r in SYNC_SOURCE if r.command in ("info", "client|pause", "client|unpause", "multi", "exec")),
)
RELAY_TARGET: Final = (
    Right("replicaof", ("no", "one"), "make the target a replica of migrate, then a primary again at the cutover "
          "(or when the relay fails)"),
    Right("config|get", ("masterauth",), "keep the target's masterauth (and masteruser) to restore them"),
    Right("config|set", ("masterauth", "x"), "give the target the relay's one-time password, then restore its own"),
    Right("info", (), "identify the target; follow its replication link (role, link status)"),
    Right("command|list", (), "the target's command set (which commands the stream may pass as they are)",
          required=False),
)

LOAD_VIA_REPLICATION: Final = tuple(
    Right(command, args, why, when="--load-via replication", applies=lambda c: c.via_replication)
    for command, args, why in (
        ("replicaof", ("no", "one"), "make the target migrate's replica for the load, then a primary again"),
        ("config|set", ("masterauth", "x"), "a one-time masterauth, repl-diskless-load on-empty-db (an empty target "
         "loads while the sync arrives) and a long repl-timeout (the sync's end waits for the check), for the load "
         "only")))  # CONFIG GET and INFO: reload's own rights already (a CONFIG GET refused stops the load before it)

RIGHTS: Final[dict[str, dict[str, tuple[Right, ...]]]] = {
    "replay": {"source": SOURCE_READS, "target": TARGET_WRITES},
    "reload": {"source": SNAPSHOT, "target": (
        Right("flushall", (), "empty the target before loading", when="no --db/--db-map"),
        Right("flushdb", (), "empty the selected target databases", when="--db/--db-map"),
        *(r for r in TARGET_WRITES if r.command not in ("flushdb", "scan")),
        Right("select", ("0",), "replay the AOF's commands in their databases (and the rights of every command it "
              "replays, typically +@write)", when="--from-aof", applies=lambda c: c.from_aof),
        *LOAD_VIA_REPLICATION)},
    "replicaof": {"source": (Right("info", (), "identify the source; replication offsets"),
                             Right("psync", ("?", "-1"), "the target replicates as this user (masteruser and "
                                   "masterauth come from the source URL)"),
                             Right("replconf", ("listening-port", "0"), "the target's replication handshake, as "
                                   "this user"),
                             Right("command|info", ("psync",), "refuse a source that does not accept replicas",
                                   required=False)),
                  "target": (Right("replicaof", ("no", "one"), "make the target a replica, then a primary"),
                             Right("config|set", ("masterauth", "x"), "give the target the source's password",
                                   when="the source URL has a password"),
                             Right("info", (), "follow the sync"))},
    "verify": {"source": (*_cluster_reads("source"), *VERIFY_READS),
               "target": (*_cluster_reads("target"), *VERIFY_READS)},
    "sync": {"source": SYNC_SOURCE, "target": SYNC_TARGET},
    "relay": {"source": RELAY_SOURCE, "target": RELAY_TARGET},
}

# An ACL category is probed through commands of it that every release has (the probe queues commands, not rules).
CATEGORY_SAMPLES: Final[dict[str, tuple[tuple[str, Args], ...]]] = {
    "@write": (("set", (K, "v")), ("del", (K,)), ("incr", (K,)), ("rpush", (K, "v")), ("sadd", (K, "v")),
               ("zadd", (K, "1", "m")), ("hset", (K, "f", "v")), ("xadd", (K, "*", "f", "v")),
               ("pexpireat", (K, "1")), ("setrange", (K, "0", "v")), ("swapdb", ("0", "0"))),
}


@dataclass(frozen=True)
class Probe:
    """What one side lacks: rights refused, commands unknown (renamed or disabled), and what could not be checked."""

    role: str
    denied: tuple[Right, ...] = ()
    unknown: tuple[Right, ...] = ()
    unchecked: tuple[Right, ...] = ()
    note: str = ""

    @property
    def missing_required(self) -> tuple[Right, ...]:
        return tuple(r for r in (*self.denied, *self.unknown) if r.required)

    def describe(self) -> str:
        parts = []
        if self.denied:
            parts.append("no permission for " + ", ".join(_names(self.denied)))
        if self.unknown:
            parts.append("renamed or disabled: " + ", ".join(_names(self.unknown)))
        if self.unchecked:
            parts.append(f"not checked ({self.note}): " + ", ".join(_names(self.unchecked)))
        return f"{self.role}: " + "; ".join(parts) if parts else f"{self.role}: every right granted"


def _names(rights: Iterable[Right]) -> list[str]:
    return sorted({r.command.upper().replace("|", " ") for r in rights})


def needed(verb: str, role: str, context: Context) -> tuple[Right, ...]:
    """The rights of one side that apply, each command once."""
    seen: dict[str, Right] = {}
    for right in RIGHTS[verb][role]:
        if right.needed(context) and right.command not in seen:
            seen[right.command] = right
    return tuple(seen.values())


READ_ONLY: Final = frozenset({
    "scan", "dump", "pexpiretime", "pttl", "type", "info", "memory|usage", "strlen", "getrange", "lrange", "sscan",
    "zrange", "hscan", "xrange", "xinfo|stream", "xinfo|groups", "xinfo|consumers", "xpending", "function|dump",
    "function|list", "exists", "get", "llen", "lindex", "scard", "zcard", "hlen", "object|encoding", "hpexpiretime",
    "acl|list", "config|get", "command|info", "dbsize"})


def probe(channel: Channel, role: str, rights: tuple[Right, ...], key: bytes) -> Probe:
    """Which of `rights` the channel's user lacks, checked on `key` (a key of the data, for ACL key patterns). The
    channel is left outside any transaction; give it one of its own (it is best closed afterwards)."""
    opened = channel.command("MULTI")
    if is_error(opened):
        return _probe_by_reading(channel, role, rights, key, f"MULTI refused: {opened}")
    # MULTI is probed by opening the transaction, EXEC by a bare EXEC once it is discarded ("EXEC without MULTI"
    # when granted): queued, EXEC would run the commands queued before it.
    queued = tuple(r for r in _expanded(rights) if r.command not in ("multi", "exec"))
    replies = channel.call(b"".join(pack(r.argv(key)) for r in queued) + pack(("DISCARD",)), len(queued) + 1)
    exec_rights = tuple(r for r in rights if r.command == "exec")
    if is_error(replies[-1]):  # still inside the transaction: only dropping the connection discards it safely
        channel.reset()
        return Probe(role, _categories(tuple(r for r, reply in zip(queued, replies, strict=False) if _denied(reply))),
                     _categories(tuple(r for r, reply in zip(queued, replies, strict=False) if _unknown(reply))),
                     exec_rights, f"DISCARD refused: {replies[-1]}")
    bare_exec = channel.command("EXEC") if exec_rights else None  # "EXEC without MULTI" when granted
    outcomes = [(r, _outside_multi(channel, r) if _refused_in_multi(reply) else reply)
                for r, reply in zip(queued, replies, strict=False)] + [(r, bare_exec) for r in exec_rights]
    denied = _categories(tuple(r for r, reply in outcomes if _denied(reply)))
    unknown = _categories(tuple(r for r, reply in outcomes if _unknown(reply)))
    return Probe(role, denied, unknown)


# Commands that Redis 7.0+ and Valkey refuse inside MULTI before they check the ACL (Redis 6.0 checks the ACL first;
# measured), so they are checked again outside the transaction, behind a PING: with the PING's reply still pending,
# every version refuses to start a replica after the ACL check ("SYNC and PSYNC are invalid with pending output"),
# so nothing starts. PSYNC's offset is no number either, a second guard on 6.2+ (they answer "not an integer"; 6.0
# would start a full sync on it, so there the PING alone guards: 6.0 gets here only for a user denied MULTI).
OUTSIDE_MULTI: Final[dict[str, tuple[str, ...]]] = {"psync": ("?", "not-an-offset"), "sync": ()}


def _refused_in_multi(reply: object) -> bool:
    return is_error(reply) and "not allowed inside a transaction" in str(reply)


def _outside_multi(channel: Channel, right: Right) -> Reply:
    """The reply to `right` run outside a transaction without effect (see OUTSIDE_MULTI); the MULTI reply's refusal
    when the command is not one of those (it then counts as granted, as before)."""
    args = OUTSIDE_MULTI.get(right.command)
    if args is None:
        return b"QUEUED"
    _, reply = channel.call(pack(("PING",)) + pack((right.command.upper(), *args)), 2)
    if not is_error(reply):  # a replica's session started after all: drop it before the snapshot streams
        channel.reset()
    return reply


def _expanded(rights: tuple[Right, ...]) -> tuple[Right, ...]:
    """Category rights replaced by their sample commands, each remembering its category."""
    out: list[Right] = []
    for right in rights:
        if right.command.startswith("@"):
            out += [_Sample(command, args, right.why, right.required, right.when, category=right)
                    for command, args in CATEGORY_SAMPLES[right.command]]
        else:
            out.append(right)
    return tuple(out)


def _categories(found: tuple[Right, ...]) -> tuple[Right, ...]:
    """Samples of a category reported as the category's right (once), the other rights as they are."""
    out: dict[str, Right] = {}
    for right in found:
        named = right.category if isinstance(right, _Sample) else right
        out.setdefault(named.command, named)
    return tuple(out.values())


def _denied(reply: object) -> bool:
    text = str(reply) if is_error(reply) else ""
    return text.startswith("NOPERM") or "no permissions" in text.lower()


def _unknown(reply: object) -> bool:
    text = str(reply).lower() if is_error(reply) else ""
    return "unknown command" in text or "unknown subcommand" in text


def _probe_by_reading(channel: Channel, role: str, rights: tuple[Right, ...], key: bytes, note: str) -> Probe:
    """Without MULTI: run the read-only commands for real (they change nothing) and the replication commands in the
    way that starts nothing (OUTSIDE_MULTI); report the others as unchecked."""
    readable = tuple(r for r in rights if r.command in READ_ONLY)
    replies = channel.call(b"".join(pack(r.argv(key)) for r in readable), len(readable)) if readable else []
    outcomes = [*zip(readable, replies, strict=True),
                *((r, _outside_multi(channel, r)) for r in rights if r.command in OUTSIDE_MULTI)]
    denied = tuple(r for r, reply in outcomes if _denied(reply))
    unknown = tuple(r for r, reply in outcomes if _unknown(reply))
    multi = tuple(r for r in rights if r.command == "multi")
    unchecked = tuple(r for r in rights if r.command not in READ_ONLY and r.command not in OUTSIDE_MULTI
                      and r.command != "multi")
    return Probe(role, denied + multi, unknown, unchecked, note if unchecked else "")


PROBE_KEY: Final = b"migrate:rights-probe"


def sample_key(channel: Channel) -> bytes:
    """A key of the data (ACL key patterns are checked on it), or a neutral name when the database is empty."""
    reply = channel.command("SCAN", "0", "COUNT", "100")
    if not is_error(reply) and reply[1]:
        return bytes(reply[1][0])
    return PROBE_KEY


def check_rights(verb: str, sides: dict[str, tuple[Server, int]], context: Context) -> tuple[Probe, ...]:
    """Probe each side (server, database) for the rights `verb` needs; raise PermissionDeniedError naming every
    missing required right on both sides at once. Returns the probes (optional rights missing are reported by the
    caller)."""
    probes = []
    key = PROBE_KEY
    for role in ("source", "target"):
        if role not in sides:
            continue
        server, db = sides[role]
        channel = Channel(server.endpoint, server.settings, role, db)
        try:
            if role == "source":
                key = sample_key(channel)
            probes.append(probe(channel, role, needed(verb, role, context), key))
        finally:
            channel.close()
    missing = [p for p in probes if p.missing_required]
    if missing:
        denied = sorted({r.command for p in missing for r in p.denied if r.required})
        renamed = any(r.required for p in missing for r in p.unknown)
        grant = ("grant them, e.g. ACL SETUSER <user> " + " ".join(f"+{c}" for c in denied) + "; ") if denied else ""
        raise PermissionDeniedError(
            "permission denied: the ACL users lack rights this " + ("run" if verb != "verify" else "verification")
            + " needs: " + " | ".join(_describe_required(p) for p in missing),
            grant + ("a renamed or disabled command is the server's configuration (rename-command, or the managed "
                     "service's), which no grant changes: choose another strategy; " if renamed else "")
            + "README.md, \"Minimum rights\", lists every strategy's")
    return tuple(probes)


def _describe_required(probe_: Probe) -> str:
    return Probe(probe_.role, tuple(r for r in probe_.denied if r.required),
                 tuple(r for r in probe_.unknown if r.required)).describe()


def rights_table(verb: str) -> str:
    """The README's table of one verb's rights (tests/test_docs.py keeps the README equal to it)."""
    rows = ["| side | command | needed | why |", "|---|---|---|---|"]
    for role in ("source", "target"):
        seen: set[str] = set()
        for right in RIGHTS[verb][role]:
            if right.command in seen:
                continue
            seen.add(right.command)
            need = ("required" if right.required else "optional") + (f" ({right.when})" if right.when else "")
            rows.append(f"| {role} | `+{right.command}` | {need} | {right.why} |")
    return "\n".join(rows)
