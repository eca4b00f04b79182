"""The Profile: every fact preflight gathered about the source, the target and the given files.

Checks read only this (never a server), so they are plain functions that tests can reason about. A fact that could
not be gathered is None and a Gap says why; "not gathered" is never confused with "absent".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.identity import ServerIdentity

CONVERSION_ACTIONS = ("as-is", "restamp", "rewrite", "unsupported", "unclassified")  # migrate.rdb.dump.Action values


@dataclass(frozen=True)
class Gap:
    """A fact that could not be gathered."""

    role: str  # source | target | rdb-file | aof
    what: str  # e.g. "CONFIG GET maxmemory"
    reason: str  # "permission denied", "unknown command", or the server's error

    @property
    def denied(self) -> bool:
        return self.reason == "permission denied"


@dataclass(frozen=True)
class Persistence:
    save: str | None = None  # CONFIG GET save ("" = no RDB snapshots)
    appendonly: bool | None = None
    appendfsync: str | None = None
    aof_use_rdb_preamble: bool | None = None
    appenddirname: str | None = None
    last_bgsave_status: str | None = None  # INFO persistence rdb_last_bgsave_status
    last_save_time: int | None = None
    changes_since_last_save: int | None = None
    aof_last_write_status: str | None = None


@dataclass(frozen=True)
class Memory:
    used_memory: int | None = None
    used_memory_dataset: int | None = None
    maxmemory: int | None = None  # 0 = unlimited
    maxmemory_policy: str | None = None


@dataclass(frozen=True)
class Module:
    name: str
    version: int
    path: str = ""


@dataclass(frozen=True)
class AclUser:
    name: str
    rule: str  # the full ACL LIST line (passwords appear only as hashes there, never in clear)
    categories: tuple[str, ...]  # categories named in +@cat / -@cat
    commands: tuple[str, ...]  # commands named in +cmd / -cmd (lower case, "container|sub" form)


@dataclass(frozen=True)
class KeyspaceDb:
    keys: int
    expires: int = 0
    subexpiry: int | None = None  # keys with hash field TTLs (Redis 7.4+ INFO keyspace); None: not reported


@dataclass(frozen=True)
class ServerProfile:
    role: str  # source | target
    endpoint: str  # redacted
    identity: ServerIdentity | None
    assumed: bool = False  # identity given by --target-version, not read from a live server
    unreachable: str | None = None  # the connection error when the server could not be reached
    keyspace: dict[int, KeyspaceDb] = field(default_factory=dict)
    persistence: Persistence | None = None
    memory: Memory | None = None
    modules: tuple[Module, ...] | None = None
    commandstats: dict[str, int] | None = None  # command -> calls (INFO commandstats)
    acl_users: tuple[AclUser, ...] | None = None
    acl_categories: tuple[str, ...] | None = None  # ACL CAT
    functions: tuple[str, ...] | None = None  # FUNCTION LIST library names
    function_engines: tuple[str, ...] = ()
    notify_keyspace_events: str | None = None
    proto_max_bulk_len: int | None = None
    command_count: int | None = None  # COMMAND COUNT
    missing_standard: tuple[str, ...] | None = None  # standard commands this server does not know (renamed/disabled)
    command_support: dict[str, bool] = field(default_factory=dict)  # target: does it know each source command
    gaps: tuple[Gap, ...] = ()

    @property
    def live(self) -> bool:
        return self.identity is not None and not self.assumed and self.unreachable is None

    @property
    def total_keys(self) -> int:
        return sum(db.keys for db in self.keyspace.values())

    def gap(self, what: str) -> Gap | None:
        return next((g for g in self.gaps if g.what == what), None)


@dataclass(frozen=True)
class TypeStats:
    keys: int = 0  # keys examined
    estimated: int = 0  # keys in the whole db (= keys in a full census; scaled up from a sample)
    with_ttl: int = 0
    memory: int = 0  # MEMORY USAGE summed over examined keys
    encodings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DbCensus:
    total: int  # keys in the db
    examined: int
    types: dict[str, TypeStats] = field(default_factory=dict)


@dataclass(frozen=True)
class BigKey:
    db: int
    key: str  # display form
    type: str
    memory: int  # MEMORY USAGE (or serialized size from an RDB file)
    payload: int | None = None  # DUMP length when known


@dataclass(frozen=True)
class KeyGroup:
    """Keys sharing one property: how many were seen (and estimated), with a few examples."""

    count: int = 0
    estimated: int = 0
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversion:
    """How the examined keys would move to this target (migrate.rdb.dump.plan_conversion over DUMP payloads)."""

    by_type: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> action -> keys (estimated)
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # action -> example keys
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)  # action -> distinct reasons
    losses: dict[str, KeyGroup] = field(default_factory=dict)  # what is lost -> keys
    type_bytes: dict[str, dict[int, int]] = field(default_factory=dict)  # type -> type byte -> keys (estimated)
    dumped: int = 0  # payloads classified
    not_dumped: int = 0  # examined keys of kinds with no classified payload (too big for --dump-limit, DUMP refused)

    def total(self, action: str) -> int:
        return sum(per.get(action, 0) for per in self.by_type.values())


@dataclass(frozen=True)
class Census:
    mode: str  # sample | full | rdb-file
    dbs: dict[int, DbCensus] = field(default_factory=dict)
    biggest: tuple[BigKey, ...] = ()
    field_ttl: KeyGroup = KeyGroup()  # hashes with field TTLs
    module_keys: dict[str, KeyGroup] = field(default_factory=dict)  # module type name -> keys
    streams_with_groups: KeyGroup = KeyGroup()
    consumer_groups: int = 0
    pending_entries: int = 0
    with_ttl: int = 0
    conversion: Conversion = Conversion()
    vanished: int = 0  # keys that expired or were deleted between SCAN and inspection
    duration_s: float = 0.0
    complete: bool = True  # False: a sample, or interrupted by an error
    note: str = ""

    @property
    def examined(self) -> int:
        return sum(db.examined for db in self.dbs.values())

    @property
    def total(self) -> int:
        return sum(db.total for db in self.dbs.values())

    def type_totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for db in self.dbs.values():
            for name, stats in db.types.items():
                out[name] = out.get(name, 0) + stats.estimated
        return out

    @property
    def memory_estimate(self) -> int:
        """Bytes of data (MEMORY USAGE), scaled up from the sample."""
        total = 0.0
        for db in self.dbs.values():
            scale = db.total / db.examined if db.examined else 0.0
            total += scale * sum(stats.memory for stats in db.types.values())
        return int(total)


@dataclass(frozen=True)
class RdbFileFacts:
    path: str
    size: int
    rdb_version: int | None = None
    writer: ServerIdentity | None = None  # from the redis-ver / valkey-ver AUX field
    census: Census | None = None
    functions: tuple[str, ...] = ()
    error: str | None = None  # one line when the file could not be read
    empty: EmptyKeys | None = None  # empty collections in the file


@dataclass(frozen=True)
class EmptyKeys:
    """Empty collections in a file: a server loading it skips them (`skipped`), or refuses the whole file for an
    empty intset or zipmap (`refused`, Redis 7.0+ and Valkey); `migrate run` skips both and names them."""

    skipped: int
    refused: int
    examples: tuple[str, ...]  # "db N key (TYPE)" of the first few

    @property
    def keys(self) -> int:
        return self.skipped + self.refused


@dataclass(frozen=True)
class AofFile:
    name: str
    kind: str  # base | incr | single (history files are never loaded: AofFacts.history)
    size: int | None
    format: str | None = None  # rdb (an RDB part, then commands) | aof (commands) | empty
    rdb_version: int | None = None
    commands: int = 0  # commands a server replays from this file


@dataclass(frozen=True)
class AofTruncation:
    """The torn tail of the last file, which a server (and `migrate run --from-aof`) does not load."""

    file: str
    loaded_up_to: int
    size: int
    reason: str  # incomplete-command | open-transaction
    dropped_commands: int


@dataclass(frozen=True)
class AofFacts:
    """An AOF input read as a server loads it (migrate.aof.summarize_aof), offline."""

    directory: str  # the path given
    manifest: str | None
    files: tuple[AofFile, ...] = ()  # load order
    commands: dict[str, int] = field(default_factory=dict)  # command name -> commands the server replays
    error: str | None = None  # one line when a server would refuse the input
    hint: str | None = None  # how to fix what `error` says
    layout: str = ""  # multi-part | single-file
    history: tuple[str, ...] = ()  # files the manifest lists as history: never loaded
    transactions: int = 0  # MULTI/EXEC blocks replayed
    databases: tuple[int, ...] = ()  # databases the commands run in
    truncation: AofTruncation | None = None
    rdb_keys: int = 0  # keys in the RDB part (base file or preamble)
    census: Census | None = None  # of the RDB part (the commands add keys no census counts)
    writer: ServerIdentity | None = None  # from the RDB part's aux fields
    empty: EmptyKeys | None = None  # empty collections in the RDB part

    @property
    def base_rdb_version(self) -> int | None:
        return next((f.rdb_version for f in self.files if f.kind == "base" and f.rdb_version), None)


@dataclass(frozen=True)
class RightsGap:
    """What one side's user lacks for one way of migrating (migrate.rights: probed, nothing executed)."""

    strategy: str  # replay | reload | replicaof | verify
    role: str  # source | target
    denied: tuple[str, ...]  # required commands the ACL user may not run
    unknown: tuple[str, ...]  # required commands the server does not know (renamed or disabled)
    optional: tuple[str, ...] = ()  # optional commands missing: the verb works, degraded
    unchecked: tuple[str, ...] = ()  # could not be probed (MULTI refused)


@dataclass(frozen=True)
class NodeFacts:
    """One cluster node as preflight read it (its own INFO, not the cluster's gossip)."""

    node_id: str
    address: str
    role: str  # primary | replica
    health: str  # the cluster's view: online | loading | pfail | fail | ...
    version: str | None = None  # product and version the node reports; None: it could not be read
    link: str | None = None  # a replica's master_link_status (up | down)
    error: str | None = None  # why the node could not be read


@dataclass(frozen=True)
class ShardFacts:
    slots: str  # slot ranges, e.g. "0-5460"
    slot_count: int
    primary: NodeFacts
    replicas: tuple[NodeFacts, ...] = ()
    keys: int | None = None  # keys on the primary (every database)
    used_memory: int | None = None
    maxmemory: int | None = None  # 0: unlimited


@dataclass(frozen=True)
class ClusterFacts:
    """A cluster side: health, and every shard with its primary and replicas."""

    role: str  # source | target
    product: str
    version: str
    state: str  # cluster_state of the node that answered
    problems: tuple[str, ...]  # what makes it unfit: state, uncovered slots, failing nodes, slots migrating
    shards: tuple[ShardFacts, ...]
    databases: int = 1  # databases a node has (Valkey 9.0+: cluster-databases)


@dataclass(frozen=True)
class ProjectedShard:
    """A target shard and the share of the source's data its slots will hold (estimated from sampled key names)."""

    slots: str
    keys: int
    memory: int  # bytes of MEMORY USAGE, scaled up from the sample
    maxmemory: int | None  # the shard primary's maxmemory (0: unlimited)


@dataclass(frozen=True)
class SpreadFacts:
    """Where the source's keys land: key names sampled on every source node, hashed to their slots."""

    sampled: int
    hash_tagged: KeyGroup = KeyGroup()  # keys with a {hash tag}
    target_shards: tuple[ProjectedShard, ...] = ()  # empty when the target is not a cluster
    unsampled: tuple[str, ...] = ()  # node databases left out of the projection, each with why


@dataclass(frozen=True)
class Profile:
    source: ServerProfile | None  # None: offline (--rdb-file only)
    target: ServerProfile | None  # None: no target given
    census: Census | None = None  # of the live source
    rdb_file: RdbFileFacts | None = None
    aof: AofFacts | None = None
    rights: tuple[RightsGap, ...] = ()  # only the strategies and sides with something missing
    partial: tuple[str, ...] = ()  # why this profile is incomplete
    source_cluster: ClusterFacts | None = None  # the source is a cluster
    target_cluster: ClusterFacts | None = None  # the target is a cluster
    spread: SpreadFacts | None = None  # a cluster on either side: how the source's keys spread over slots

    @property
    def source_identity(self) -> ServerIdentity | None:
        if self.source is not None and self.source.identity is not None:
            return self.source.identity
        if self.rdb_file is not None:
            return self.rdb_file.writer
        return self.aof.writer if self.aof else None

    @property
    def target_identity(self) -> ServerIdentity | None:
        return self.target.identity if self.target is not None else None

    @property
    def key_census(self) -> Census | None:
        """The live census, else the one read from the RDB file."""
        if self.census is not None:
            return self.census
        if self.rdb_file is not None:
            return self.rdb_file.census
        return self.aof.census if self.aof else None
