"""Facts for the checks, as data: what each Valkey release lacks (commands, ACL categories, modules, type bytes).

Version facts shared with the rest of the tool live elsewhere and are reused, not copied: RDB versions written and
accepted and hash field TTL support in migrate/facts.py, type bytes each release reads in migrate/rdb/compat.py and
their names in migrate/rdb/constants.py. Sources: ../shared/reference/compatibility.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from migrate.facts import Version


@dataclass(frozen=True)
class CommandFact:
    redis_since: Version
    valkey_since: Version | None  # None: no Valkey release has it
    family: str


def _family(names: str, redis: Version, valkey: Version | None, family: str) -> dict[str, CommandFact]:
    return {name: CommandFact(redis, valkey, family) for name in names.split()}


# Redis commands that Valkey lacks, by the first Valkey release that has them (None: none has).
COMMANDS_VALKEY_LACKS: Final[dict[str, CommandFact]] = {
    **_family("hexpire hpexpire hexpireat hpexpireat httl hpttl hexpiretime hpexpiretime hpersist",
              (7, 4), (9, 0), "hash field TTL"),
    **_family("hgetex hsetex", (8, 0), (9, 0), "hash field TTL"),
    **_family("hgetdel", (8, 0), (9, 1), "hash"),
    **_family("msetex", (8, 4), (9, 1), "string"),
    **_family("xdelex xackdel", (8, 2), None, "stream"),
    **_family("digest", (8, 4), None, "string"),
    **_family("vadd vcard vdim vemb vgetattr vinfo vlinks vrandmember vrem vsetattr vsim", (8, 0), None,
              "vector set"),
    **_family("vrange", (8, 4), None, "vector set"),
}

# Command name prefixes of module commands (INFO commandstats shows them as e.g. cmdstat_json.set) -> module id.
MODULE_COMMAND_PREFIXES: Final[dict[str, str]] = {
    "json.": "redisjson", "ft.": "redisearch", "ts.": "timeseries", "bf.": "redisbloom", "cf.": "redisbloom",
    "cms.": "redisbloom", "topk.": "redisbloom", "tdigest.": "redisbloom", "graph.": "redisgraph",
    "rg.": "redisgears", "tfcall": "redisgears",
}

# ACL categories Redis 8 adds (module categories) that no Valkey release defines by itself.
ACL_CATEGORIES_VALKEY_LACKS: Final[dict[str, str]] = {
    "search": "Redis Query Engine (FT.*)", "json": "JSON (JSON.*)", "timeseries": "time series (TS.*)",
    "bloom": "Bloom filters (BF.*)", "cuckoo": "cuckoo filters (CF.*)", "cms": "count-min sketch (CMS.*)",
    "topk": "top-k (TOPK.*)", "tdigest": "t-digest (TDIGEST.*)",
}


@dataclass(frozen=True)
class ModuleFact:
    id: str
    title: str
    list_names: tuple[str, ...]  # names MODULE LIST shows on Redis
    rdb_types: tuple[str, ...]  # module type names (TYPE of its keys, and in RDB files)
    counterpart: str | None  # the Valkey module that replaces it (MODULE LIST name), None: none
    counterpart_types: tuple[str, ...] = ()
    keys_portable: bool = False  # its keys load unchanged into the counterpart
    note: str = ""


MODULES: Final[tuple[ModuleFact, ...]] = (
    ModuleFact("redisjson", "RedisJSON", ("ReJSON",), ("ReJSON-RL",), "json", ("ReJSON-RL",), True,
               "valkey-json loads ReJSON-RL encoding version <= 3 (RedisJSON before 8.8)"),
    ModuleFact("redisearch", "RediSearch", ("search", "ft"),
               ("ft_index0", "ft_invidx", "numericdx", "ft_tagidx", "trietype0", "scdtype00"), "search",
               ("Vk-Search",), False,
               "valkey-search (vector, numeric, tag, text) does not read RediSearch data: recreate the indexes"),
    ModuleFact("timeseries", "RedisTimeSeries", ("timeseries",), ("TSDB-TYPE",), None),
    ModuleFact("redisbloom", "RedisBloom", ("bf",), ("MBbloom--", "MBbloomCF", "CMSk-TYPE", "TopK-TYPE", "TDIS-TYPE"),
               "bf", ("bloomfltr",), False, "valkey-bloom has BF.* only and does not read RedisBloom data"),
    ModuleFact("redisgraph", "RedisGraph", ("graph",), ("graphdata", "graphmeta"), None),
    ModuleFact("redisgears", "RedisGears", ("rg", "redisgears_2"), ("GEARS_DT0", "GearsType"), None),
    ModuleFact("vectorset", "Redis vector sets", ("vectorset",), ("vectorset",), None,
               note="built into Redis 8; no Valkey release has vector sets"),
)

# Logical types every server has; any other TYPE reply names a module type.
CORE_TYPES: Final = ("string", "list", "set", "zset", "hash", "stream")

# Commands every supported release has. One that COMMAND INFO does not know was renamed or disabled
# (rename-command), which breaks the tools or applications that call it.
STANDARD_COMMANDS: Final = (
    "get", "set", "del", "type", "pttl", "scan", "keys", "select", "dump", "restore", "object", "memory",
    "migrate", "info", "config", "client", "command", "acl", "flushall", "flushdb", "swapdb", "save", "bgsave",
    "bgrewriteaof", "shutdown", "debug", "monitor", "replicaof", "slaveof", "sync", "psync", "eval", "evalsha",
    "script", "multi", "exec", "publish", "subscribe", "module", "latency", "slowlog", "xinfo", "wait",
)

# What each way of migrating needs from each side (a renamed or disabled command here rules that way out).
STRATEGY_COMMANDS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "replication": {"source": ("psync", "sync"), "target": ("replicaof",)},
    "replay": {"source": ("scan", "dump", "pttl", "type"), "target": ("restore", "select")},
    "reload": {"source": (), "target": ("restore", "flushall", "select")},
}

def module_for_type(type_name: str) -> ModuleFact | None:
    return next((m for m in MODULES if type_name in m.rdb_types), None)


def module_for_name(list_name: str) -> ModuleFact | None:
    lowered = list_name.lower()
    return next((m for m in MODULES if lowered in (n.lower() for n in m.list_names)), None)


def module_for_command(command: str) -> ModuleFact | None:
    module_id = next((mid for prefix, mid in MODULE_COMMAND_PREFIXES.items() if command.startswith(prefix)), None)
    return next((m for m in MODULES if m.id == module_id), None)
