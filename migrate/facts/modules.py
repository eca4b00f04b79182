"""Redis modules: their MODULE LIST names, RDB type names, command prefixes and ACL categories, and their Valkey
counterparts (docs/compatibility.md, "Modules")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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


def module_for_type(type_name: str) -> ModuleFact | None:
    return next((m for m in MODULES if type_name in m.rdb_types), None)


def module_for_name(list_name: str) -> ModuleFact | None:
    lowered = list_name.lower()
    return next((m for m in MODULES if lowered in (n.lower() for n in m.list_names)), None)


def module_for_command(command: str) -> ModuleFact | None:
    module_id = next((mid for prefix, mid in MODULE_COMMAND_PREFIXES.items() if command.startswith(prefix)), None)
    return next((m for m in MODULES if m.id == module_id), None)
