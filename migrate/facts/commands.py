"""Commands per release: the first Redis and Valkey release of each command (or command option) whose presence
matters to a migration, the command set every supported release has, and what each migration strategy needs.

Sources: docs/compatibility.md ("Commands on Redis that Valkey lacks"), and measurements marked below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from migrate.facts.releases import Version

VALKEY_FORK: Final[Version] = (7, 2)  # Valkey forked Redis 7.2.4: it has every Redis command up to 7.2


@dataclass(frozen=True)
class CommandFact:
    family: str
    redis: Version | None  # first Redis release that has it (None: no release)
    valkey: Version | None  # first Valkey release that has it (None: no release)
    keydb: Version | None = None

    def since(self, product: str) -> Version | None:
        return {"redis": self.redis, "valkey": self.valkey, "keydb": self.keydb}.get(product)


def _family(names: str, family: str, redis: Version, valkey: Version | None,
            keydb: Version | None = None) -> dict[str, CommandFact]:
    return {name: CommandFact(family, redis, valkey, keydb) for name in names.split(",")}


COMMANDS: Final[dict[str, CommandFact]] = {
    # Hash field TTLs. Measured: Redis 7.0.15 and Valkey 8.0.1/8.1.1 lack HPEXPIRETIME/HPEXPIREAT; Redis 8.0.x and
    # Valkey 9.1.2 have them.
    **_family("hexpire,hpexpire,hexpireat,hpexpireat,httl,hpttl,hexpiretime,hpexpiretime,hpersist",
              "hash field TTL", (7, 4), (9, 0)),
    **_family("hgetex,hsetex", "hash field TTL", (8, 0), (9, 0)),
    **_family("hgetdel", "hash", (8, 0), (9, 1)),
    **_family("msetex", "string", (8, 4), (9, 1)),
    **_family("xdelex,xackdel", "stream", (8, 2), None),
    **_family("digest", "string", (8, 4), None),
    **_family("vadd,vcard,vdim,vemb,vgetattr,vinfo,vlinks,vrandmember,vrem,vsetattr,vsim", "vector set", (8, 0), None),
    **_family("vrange", "vector set", (8, 4), None),
    # Options the stream rewriter uses. Measured: Redis 6.0.16 lacks XGROUP CREATECONSUMER (`Unknown subcommand`)
    # and XSETID options (`wrong number of arguments`); Redis 7.0.15 and every Valkey have them.
    **_family("xgroup createconsumer", "stream", (6, 2), VALKEY_FORK, (6, 2)),
    **_family("xsetid entriesadded,xgroup create entriesread", "stream", (7, 0), VALKEY_FORK),
    **_family("pexpiretime", "generic", (7, 0), VALKEY_FORK),
    **_family("function", "functions", (7, 0), VALKEY_FORK),
    # The sync cutover's write pause. Redis 6.2.0 release notes: CLIENT PAUSE got its WRITE mode (writes wait, reads
    # go on; expiry and eviction are paused too) and CLIENT UNPAUSE; on 6.0 a pause holds every client and only its
    # timeout ends it. Measured: Redis 6.0.16 answers `ERR Unknown subcommand or wrong
    # number of arguments for 'PAUSE'` to CLIENT PAUSE 10 WRITE, and the same for 'UNPAUSE'.
    **_family("client pause write,client unpause", "connection", (6, 2), VALKEY_FORK),
}
"""Command (lower case; "command option" for options) -> first release per product. Unknown products get none."""


def has_command(product: str, version: Version, command: str) -> bool:
    fact = COMMANDS.get(command.lower())
    first = fact.since(product) if fact is not None else None
    return first is not None and version >= first


def supports_hash_field_ttl(product: str, version: Version) -> bool:
    """Whether a release stores hash field TTLs: the release that has HPEXPIREAT (the rewriter's command for them)."""
    return has_command(product, version, "hpexpireat")


def valkey_lacks(command: str) -> CommandFact | None:
    """The fact of a Redis command that Valkey 7.2 (the fork) does not have, else None."""
    fact = COMMANDS.get(command.lower())
    if fact is None or fact.redis is None or fact.redis <= VALKEY_FORK:
        return None
    return fact


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
    "reload": {"source": ("sync",), "target": ("restore", "flushall", "select")},  # source: without an RDB file
    "sync": {"source": ("psync",), "target": ("restore", "select", "multi", "exec")},  # source: else the fallback
}


# Commands that take several keys (COMMAND INFO: more than one key spec, or a key range), which a cluster runs only
# when all their keys hash to one slot (else -CROSSSLOT), and the commands that group others (MULTI/EXEC, scripts,
# functions) whose keys must share a slot too. Source: COMMAND INFO key specs of Redis 7.0 / Valkey 8.1 (key-spec
# counts and `RANGE` last-key -1), and the cluster specification (cluster.c getNodeByQuery: CROSSSLOT when the keys
# of one command, or of a MULTI block, are in different slots). Listed by the name INFO commandstats uses.
MULTI_KEY_COMMANDS: Final = frozenset({
    "mget", "mset", "msetnx", "del", "unlink", "exists", "touch", "watch", "rename", "renamenx", "copy", "smove",
    "sdiff", "sdiffstore", "sinter", "sinterstore", "sintercard", "sunion", "sunionstore", "zdiff", "zdiffstore",
    "zinter", "zinterstore", "zintercard", "zunion", "zunionstore", "zrangestore", "lmove", "blmove", "rpoplpush",
    "brpoplpush", "lmpop", "blmpop", "zmpop", "bzmpop", "blpop", "brpop", "bzpopmin", "bzpopmax", "pfcount",
    "pfmerge", "bitop", "geosearchstore", "georadius", "georadiusbymember", "sort", "sort_ro", "xread",
    "xreadgroup", "object|freq",
})
GROUPING_COMMANDS: Final = frozenset({"multi", "exec", "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall",
                                      "fcall_ro"})
