"""The translation table, as data: what each command a source may write into its replication stream or AOF becomes.

Two stages, both data here, code in normalize.py (stage 1) and fit.py (stage 2):
1. Normalize, target-independent: a command that is not its own effect becomes its effect (a relative expiry becomes
   an absolute one computed from the time the command was received; HGETDEL becomes HDEL; EVALSHA becomes EVAL when
   the script body was seen), and commands that act on databases (SELECT, MOVE, SWAPDB, ...) go through the db map.
2. Fit to the target: a command the target has is sent as it is; one it lacks has an exact equivalent, a lossy
   form (what is lost is named), or none (incompatible). Commands absent from the table pass when the target's
   command set has them and are incompatible otherwise.

What the streams contain (facts behind the table; "src" = redis/redis or valkey-io/valkey source as fetched here,
"measured" = AOF of the matrix binaries with appendonly yes, aof-use-rdb-preamble no, read 2026-12-01):

- Relative expiries. Redis 6.0 propagates EXPIRE, PEXPIRE, SETEX, PSETEX, SET EX/PX and RESTORE <ttl> to replicas
  AS SENT (relative: src 6.0 expire.c expireGenericCommand only rewrites a past time into DEL/UNLINK; t_string.c
  setGenericCommand has no rewrite); only its AOF translates them (src 6.0 aof.c feedAppendOnlyFile: EXPIRE/PEXPIRE/
  EXPIREAT -> PEXPIREAT, SETEX/PSETEX/SET EX|PX -> SET key value + PEXPIREAT, options other than EX/PX dropped), and
  not RESTORE: a 6.0 AOF holds `RESTORE key <relative ms> payload` (measured). Redis 6.2 (not in the matrix) sends
  replicas SET ... PX <ms> and PEXPIRE <ms> for SET EX/PX and GETEX EX/PX, still relative (src 6.2 t_string.c
  setGenericCommand/getexCommand). Redis 7.0+ and Valkey rewrite at the
  source for both: EXPIRE* -> PEXPIREAT (src 7.0 expire.c), SET/SETEX/PSETEX with a TTL -> SET key value PXAT
  (t_string.c; GET, NX, XX dropped), GETEX -> PEXPIREAT / PERSIST / DEL (t_string.c getexCommand), RESTORE ->
  ABSTTL (cluster.c restoreCommand), and 7.0 aof.c says "No need for AOF-specific translation". measured: 6.0,
  7.0, 8.0.2, 8.0.6, Valkey 9.1 AOFs.
- Expired and evicted keys arrive as DEL, or UNLINK when lazyfree-lazy-expire is on (src 6.0 db.c propagateExpire,
  7.0 db.c deleteExpiredKeyAndPropagate/propagateDeletion; measured: Valkey 9.1 writes UNLINK by default).
- Scripts and functions propagate their effects. Redis 6.0 with lua-replicate-commands yes (the default) wraps the
  writes of a script in MULTI/EXEC (src 6.0 scripting.c: execCommandPropagateMulti at the first write, EXEC at the
  end; EVAL itself is not propagated) and still propagates SCRIPT LOAD and SCRIPT FLUSH; with `no` it propagates EVAL
  verbatim and EVALSHA as EVAL the first time, then as EVALSHA (the replication script cache; measured). Redis 7.0+
  never propagates EVAL/EVALSHA/FCALL (script.c: preventCommandPropagation) nor SCRIPT LOAD; a script's writes are
  wrapped in MULTI/EXEC when there are more than one (server.c propagatePendingCommands), and FUNCTION LOAD/DELETE/
  FLUSH/RESTORE propagate as sent.
- MULTI/EXEC: 7.0+ wraps ANY command that propagates more than one effect (e.g. XREADGROUP -> XCLAIM + XGROUP SETID,
  measured on 8.0.x) unless it touches arbitrary keys; a SELECT may sit inside a group (a script or MULTI that
  switches databases; measured). 6.0 emits MULTI lazily at the first write of EXEC.
- Streams: XREADGROUP/XCLAIM/XAUTOCLAIM propagate as XCLAIM key group consumer 0 id TIME <abs ms> RETRYCOUNT n FORCE
  JUSTID LASTID id, plus XGROUP SETID ... ENTRIESREAD n (7.0+) (src t_stream.c streamPropagateXCLAIM /
  streamPropagateGroupID / streamPropagateConsumerCreation); XADD with `*` propagates the generated id and an
  approximate MAXLEN/MINID as an exact one (measured: `MAXLEN = 2`). All of this exists on every Valkey.
- Hash field TTLs. Redis 7.4+: HEXPIRE/HPEXPIRE/HEXPIREAT -> HPEXPIREAT key <abs ms> [cond] FIELDS ..., fields that
  expire -> HDEL (src 7.4 t_hash.c). Redis 8: HSETEX EX/PX/EXAT -> HSETEX PXAT, FNX/FXX kept (measured 8.0.x; src
  t_hash.c hsetexCommand); HGETEX -> HPEXPIREAT / HPERSIST / HDEL; HGETDEL -> HDEL (src t_hash.c
  hgetexCommand / hgetdelCommand, measured). HINCRBYFLOAT -> HSET on 7.4 and 8.0.2, but -> `HSETEX key KEEPTTL
  FIELDS 1 field value` on 8.0.6 (measured; src t_hash.c of a later Redis: "replicate HINCRBYFLOAT as an HSETEX"):
  a Redis 8.0.6 stream carries HSETEX for every HINCRBYFLOAT, even on hashes without field TTLs.
  Valkey 9.1 as a source propagates HGETDEL as it is and drops FNX/FXX/NX/XX from HSETEX (src valkey t_hash.c,
  measured).
- Databases: FLUSHALL, FLUSHDB, SWAPDB, MOVE and COPY propagate as sent (FLUSHDB/FLUSHALL of empty databases are
  not propagated by 6.0: measured). PUBLISH/SPUBLISH are propagated to replicas (not to the AOF) outside cluster mode
  (src pubsub.c: forceCommandPropagation(c, PROPAGATE_REPL)). The stream also carries PING every
  repl-ping-replica-period and REPLCONF GETACK.
- Redis 8.0 vector sets (VADD, VREM, VSETATTR) propagate as sent (measured: VADD). Module commands propagate as the
  module chooses (usually verbatim).
- Not confirmed from source (Redis 8.2/8.4 are not in the fetched history): how XDELEX, XACKDEL, MSETEX, the
  KEEPREF/DELREF/ACKED options of XADD/XTRIM and BITOP DIFF/DIFF1/ANDOR/ONE propagate. The table assumes "as sent"
  (the conservative case): if Redis rewrites them, these rows are simply never hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# Which release of which product has a command: migrate.facts, reused, not restated (re-exported so the stream layer
# reads every fact through this module).
from migrate.facts.commands import COMMANDS as COMMANDS
from migrate.facts.modules import MODULE_COMMAND_PREFIXES as MODULE_COMMAND_PREFIXES


class Kind(StrEnum):
    WRITE = "write"  # its own effect: applied as it is where the target has it (stage 2 decides)
    EFFECT = "effect"  # rewritten into its effect first (stage 1 handler), then fitted like a write
    STATE = "state"  # consumed by the translator: database selection and mapping, transactions
    NO_EFFECT = "no-effect"  # no data effect: dropped and counted


@dataclass(frozen=True)
class Entry:
    kind: Kind
    handler: str = ""  # EFFECT / STATE: the stage-1 handler (normalize.HANDLERS / the translator)
    key_at: int = 1  # argv index of the key the reports name (0: the command names no key)
    plain_argc: int = -1  # EFFECT: with exactly this many arguments (name included) it is its own effect


@dataclass(frozen=True)
class Fallback:
    """What a target that lacks a command gets instead: stage-2 handler (fit.FALLBACKS) and what it may lose.
    `losses` empty: the equivalent is exact. The handler decides per command whether this one loses anything
    (e.g. HSETEX without a TTL option is an exact HSET)."""

    handler: str
    losses: tuple[str, ...] = ()
    note: str = ""


def _entries(names: str, entry: Entry) -> dict[str, Entry]:
    return {name: entry for name in names.split()}


_WRITE: Final = Entry(Kind.WRITE)
_NO_KEY: Final = Entry(Kind.WRITE, key_at=0)
_NOTHING: Final = Entry(Kind.NO_EFFECT, key_at=0)
_READ: Final = Entry(Kind.NO_EFFECT)

# Ordinary writes: every command a Redis 6.0 / 7.0 / 8.0.x server flags `write` (COMMAND, measured; a test keeps this
# list complete against the matrix) that propagates as its own effect, plus the later Redis-only writes.
_ORDINARY_WRITES: Final = """
    append bitfield blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin decr decrby del geoadd georadius
    georadiusbymember geosearchstore getset hdel hincrby hincrbyfloat hmset hset hsetnx incr incrby incrbyfloat linsert
    lmove lmpop lpop lpush lpushx lrem lset ltrim mset msetnx persist pexpireat pfadd pfdebug pfmerge rename renamenx
    rpop rpoplpush rpush rpushx sadd sdiffstore setbit setnx setrange sinterstore smove sort spop srem
    sunionstore unlink xack xadd xautoclaim xclaim xdel xgroup xreadgroup xsetid xtrim zadd zdiffstore zincrby
    zinterstore zmpop zpopmax zpopmin zrangestore zrem zremrangebylex zremrangebyrank zremrangebyscore zunionstore
    expireat hpexpireat hpersist hsetex xdelex xackdel vadd vrem vsetattr
"""

TABLE: Final[dict[str, Entry]] = {
    **_entries(_ORDINARY_WRITES, _WRITE),
    "bitop": Entry(Kind.WRITE, key_at=2),  # BITOP op destkey ...
    "xgroup": Entry(Kind.WRITE, key_at=2),  # XGROUP CREATE|SETID|... key ...
    "migrate": Entry(Kind.WRITE, key_at=3),  # never propagated (the source side propagates DEL), kept for AOF input
    # module commands whose key is not argv[1]: RediSearch 1.x documents (measured: FT.ADD propagates as FT.SAFEADD)
    "ft.add": Entry(Kind.WRITE, key_at=2),
    "ft.safeadd": Entry(Kind.WRITE, key_at=2),
    "ft.del": Entry(Kind.WRITE, key_at=2),
    # relative or indirect forms: rewritten into their effect first (normalize.py)
    "set": Entry(Kind.EFFECT, "set", plain_argc=3),  # SET key value: no option to normalize (the hot path)
    "setex": Entry(Kind.EFFECT, "setex"),
    "psetex": Entry(Kind.EFFECT, "psetex"),
    "expire": Entry(Kind.EFFECT, "expire"),
    "pexpire": Entry(Kind.EFFECT, "pexpire"),
    "getex": Entry(Kind.EFFECT, "getex"),
    "getdel": Entry(Kind.EFFECT, "getdel"),
    "restore": Entry(Kind.EFFECT, "restore"),
    "restore-asking": Entry(Kind.EFFECT, "restore"),
    "hexpire": Entry(Kind.EFFECT, "hexpire"),
    "hpexpire": Entry(Kind.EFFECT, "hpexpire"),
    "hexpireat": Entry(Kind.EFFECT, "hexpireat"),
    "hgetex": Entry(Kind.EFFECT, "hgetex"),
    "hgetdel": Entry(Kind.EFFECT, "hgetdel"),
    "msetex": Entry(Kind.EFFECT, "msetex", key_at=2),
    # scripts: bodies are remembered so a later EVALSHA can be sent as EVAL (the target may not have the script)
    "eval": Entry(Kind.EFFECT, "eval", key_at=3),
    "evalsha": Entry(Kind.EFFECT, "evalsha", key_at=3),
    "script": Entry(Kind.EFFECT, "script", key_at=0),  # SCRIPT LOAD / FLUSH (6.0); SCRIPT LOAD is sent on
    "function": Entry(Kind.WRITE, key_at=0),  # FUNCTION LOAD / DELETE / FLUSH / RESTORE (7.0+)
    # databases and transactions: the translator's own state
    "select": Entry(Kind.STATE, "select", key_at=0),
    "multi": Entry(Kind.STATE, "multi", key_at=0),
    "exec": Entry(Kind.STATE, "exec", key_at=0),
    "discard": Entry(Kind.STATE, "discard", key_at=0),
    "flushall": Entry(Kind.STATE, "flushall", key_at=0),
    "flushdb": Entry(Kind.STATE, "flushdb", key_at=0),
    "swapdb": Entry(Kind.STATE, "swapdb", key_at=0),
    "move": Entry(Kind.STATE, "move"),
    "copy": Entry(Kind.STATE, "copy"),
    # no data effect: dropped and counted. PUBLISH is dropped unless the translator is told to forward it: messages
    # are not data, a resumed stream would deliver them twice, and nobody should be subscribed to a target before the
    # cutover (a relay that wants replica-side subscribers served turns forwarding on).
    "ping": _NOTHING,
    "replconf": _NOTHING,
    "publish": Entry(Kind.EFFECT, "publish", key_at=0),
    "spublish": Entry(Kind.EFFECT, "publish", key_at=0),
    # Redis-only reads: never propagated (no data effect); dropped if an input holds them anyway
    **_entries("digest httl hpttl hexpiretime hpexpiretime vcard vdim vemb vgetattr vinfo vlinks vrandmember vsim "
               "vrange", _READ),
}
"""Command name (lower case) -> entry. Not in the table: passed when the target has it, else incompatible."""

FIELD_TTL_LOSS: Final = "field TTLs"

FALLBACKS: Final[dict[str, Fallback]] = {
    # exact on a target without field TTLs when no TTL is given (KEEPTTL too: the target keeps none); lossy otherwise
    "hsetex": Fallback("hsetex_as_hset", (FIELD_TTL_LOSS,),
                       "HSET of the same fields; FNX/FXX dropped (the source applied the command, so its condition "
                       "held); a PXAT/EX/... TTL is lost"),
    "hpexpireat": Fallback("nothing", (FIELD_TTL_LOSS,),
                           "nothing: the fields keep no TTL on the target; when they expire on the source, the "
                           "stream carries their HDEL"),
    "hpersist": Fallback("nothing", (), "nothing: a target without field TTLs has none to remove (exact)"),
    "msetex": Fallback("msetex_as_set", (), "SET key value [PXAT ms | KEEPTTL] per key, in one unit (exact)"),
    "xdelex": Fallback("xdelex_as_xdel", ("consumer group references",),
                       "KEEPREF (the default) is XDEL (exact); DELREF/ACKED have no equivalent"),
    "xackdel": Fallback("xackdel_as_xack_xdel", ("consumer group references",),
                        "KEEPREF (the default) is XACK + XDEL (exact); DELREF/ACKED have no equivalent"),
}
"""Target lacks the command (by its command set, or by the facts for its release) -> what it gets instead. A
command without a fallback is incompatible on that target: never applied under skip and lossy, named either way."""

OPTIONS_VALKEY_LACKS: Final[dict[str, dict[bytes, str]]] = {
    # Redis 8.2 stream deletion policies (UNCONFIRMED propagation form). KEEPREF is the behaviour Valkey always has.
    "xadd": {b"keepref": "", b"delref": "XADD ... DELREF (Redis 8.2)", b"acked": "XADD ... ACKED (Redis 8.2)"},
    "xtrim": {b"keepref": "", b"delref": "XTRIM ... DELREF (Redis 8.2)", b"acked": "XTRIM ... ACKED (Redis 8.2)"},
    # Redis 8.2 BITOP operations (argv[1])
    "bitop": {b"diff": "BITOP DIFF (Redis 8.2)", b"diff1": "BITOP DIFF1 (Redis 8.2)",
              b"andor": "BITOP ANDOR (Redis 8.2)", b"one": "BITOP ONE (Redis 8.2)"},
}
"""Options of commands every Valkey has that no Valkey release takes: an empty text means "drop the option, exact";
otherwise the command is incompatible and the text says why."""
