"""Which databases are compared with which, and how each side reads values there."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from migrate.facts.releases import Version
from migrate.identity import ServerIdentity
from migrate.selection import KeySelection
from migrate.verify.compare import PairPlan
from migrate.verify.digest import ReadPlan
from migrate.verify.options import VerifyOptions
from migrate.verify.routes import Digests
from migrate.verify.srvdigest import agreeing_kinds

# INFO keyspace fields counting keys that hold hash field TTLs (Redis 7.4+, Valkey 9.0+).
FIELD_TTL_KEYSPACE_FIELDS = ("subexpiry", "keys_with_volatile_items")

# First release with PEXPIRETIME (absolute expiry: equal on both sides after a migration that kept it, where PTTLs
# read a moment apart differ).
EXPIRETIME_FROM: dict[str, Version] = {"redis": (7, 0), "valkey": (7, 2)}

Keyspace = dict[int, dict[str, Any]]  # db -> INFO keyspace fields (keys, expires, subexpiry...)


@dataclass(frozen=True)
class DbPlan:
    pairs: tuple[PairPlan, ...]  # forward pass: (source db, target db)
    reverse: tuple[tuple[int, tuple[int, ...]], ...]  # reverse pass: target db and the source dbs mapped onto it


def keyspace_of(info: dict[str, Any]) -> Keyspace:
    out: Keyspace = {}
    for name, fields in info.items():
        if str(name).startswith("db") and str(name)[2:].isdigit() and isinstance(fields, dict):
            out[int(str(name)[2:])] = {str(k): v for k, v in fields.items()}
    return out


def key_count(keyspace: Keyspace, db: int) -> int:
    return int(keyspace.get(db, {}).get("keys", 0))


def plan_databases(options: VerifyOptions, src: ServerIdentity, tgt: ServerIdentity, src_ks: Keyspace,
                   tgt_ks: Keyspace, digests: bool = False) -> DbPlan:
    """With --db/--db-map: those databases only. Without: every database used on either side, each to itself."""
    selection: KeySelection = options.selection
    if selection.dbs or selection.db_map:
        source_dbs = selection.source_dbs({db: key_count(src_ks, db) for db in src_ks})
    else:
        source_dbs = sorted(set(src_ks) | set(tgt_ks))
    pairs = tuple(_pair(options, src, tgt, src_ks, tgt_ks, s, selection.target_db(s), digests) for s in source_dbs)
    reverse: dict[int, list[int]] = {}
    for pair in pairs:
        reverse.setdefault(pair.target_db, []).append(pair.source_db)
    return DbPlan(pairs, tuple((t, tuple(s)) for t, s in sorted(reverse.items())))


def _pair(options: VerifyOptions, src: ServerIdentity, tgt: ServerIdentity, src_ks: Keyspace, tgt_ks: Keyspace,
          source_db: int, target_db: int, digests: bool) -> PairPlan:
    """`digests`: both servers allow DEBUG DIGEST-VALUE and --server-digests asks for it (srvdigest.py)."""
    src_may, tgt_may = may_hold_field_ttls(src, src_ks, source_db), may_hold_field_ttls(tgt, tgt_ks, target_db)
    if src.hash_field_ttl and tgt.hash_field_ttl:
        # Both can hold them: read both sides whenever either may have some, so each difference shows.
        src_may = tgt_may = src_may or tgt_may
    base = ReadPlan(options.chunk_size, options.string_chunk_bytes, options.max_inflight_values,
                    dump_bodies=options.dump_bodies)
    expiry = b"PEXPIRETIME" if has_expiretime(src) and has_expiretime(tgt) else b"PTTL"
    if not (volatile(src_ks, source_db) or volatile(tgt_ks, target_db)):
        expiry = b""  # no key with a TTL on either side: TYPE alone tells existence and type
    # A Redis before 7.0 may hold empty lists whose MEMORY USAGE kills it: values there are read type-natively
    # (no DUMP-first or digest route, which need sizes), whatever the other side.
    sizes = not (src.capabilities.memory_usage_unsafe or tgt.capabilities.memory_usage_unsafe)
    base = replace(base, sizes=sizes)
    kinds = agreeing_kinds(src, tgt, src_may or tgt_may) if digests and sizes else frozenset()
    return PairPlan(source_db, target_db, _with_ttls(base, src_may, src.hash_field_ttl),
                    _with_ttls(base, tgt_may, tgt.hash_field_ttl), expiry, kinds,
                    options.server_digests is Digests.ALWAYS)


def volatile(keyspace: Keyspace, db: int) -> bool:
    """Whether INFO keyspace shows keys with a TTL in `db` (read once, at the start: a TTL set on a database that had
    none while verification runs is a change made after the read)."""
    return int(keyspace.get(db, {}).get("expires", 0)) > 0


def has_expiretime(ident: ServerIdentity) -> bool:
    first = EXPIRETIME_FROM.get(ident.product)
    return first is not None and ident.version >= first


def _with_ttls(plan: ReadPlan, field_ttls: bool, holds: bool) -> ReadPlan:
    return replace(plan, field_ttls=field_ttls, holds_field_ttls=holds)


def may_hold_field_ttls(ident: ServerIdentity, keyspace: Keyspace, db: int) -> bool:
    """Whether hashes in this db may carry field TTLs: the server supports them and INFO does not say none."""
    if not ident.hash_field_ttl or db not in keyspace:
        return False
    counts = [int(keyspace[db][name]) for name in FIELD_TTL_KEYSPACE_FIELDS if name in keyspace[db]]
    return any(counts) if counts else True
