"""Keyspace census of the live source: SCAN + pipelined TYPE / OBJECT ENCODING / PTTL / MEMORY USAGE.

Sampled by default (the first --sample keys SCAN returns per database: hash-table order, which does not follow key
names), or --full; rate-limited in keys per second. Payloads are classified by kind, not one by one: every key of one
kind (type, encoding, hash field TTLs or not) serializes to the same type byte, so a few DUMPs per kind
(--dumps-per-kind) tell how all its keys reach the target (plan_conversion). Memory is bounded by the batch size.
"""

from __future__ import annotations

import dataclasses
import heapq
import operator
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import redis
from redis import exceptions as rex

from migrate.facts.types import CORE_TYPES
from migrate.identity import ServerIdentity
from migrate.logs import get_logger
from migrate.preflight.classify import ACTION_ORDER, Verdict, classify_payload, is_field_ttl_type
from migrate.preflight.options import PreflightOptions
from migrate.preflight.probe import refusal
from migrate.preflight.profile import BigKey, Census, Conversion, DbCensus, Gap, KeyGroup, KeyspaceDb, TypeStats
from migrate.render import display_key
from migrate.sizes import memory_usage_commands
from migrate.wire import Channel, is_error, per_key

log = get_logger(__name__)

Kind = tuple[str, str, bool]  # (type, encoding, has hash field TTLs)
MEMORY_USAGE: Final = ("MEMORY", "USAGE")
INSPECT = (("TYPE",), ("OBJECT", "ENCODING"), ("PTTL",), MEMORY_USAGE)


@dataclass
class KeyFacts:
    key: bytes
    type: str
    encoding: str
    pttl: int
    memory: int | None
    field_ttl: bool = False


class RateLimiter:
    """At most `rate` keys per second on average (0: unlimited)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def wait(self, keys: int) -> None:
        if not self.rate:
            return
        self.done += keys
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


@dataclass
class DbTally:
    total: int
    examined: int = 0
    kinds: Counter[Kind] = field(default_factory=Counter)
    ttl: Counter[str] = field(default_factory=Counter)
    memory: Counter[str] = field(default_factory=Counter)
    field_ttl_seen: int = 0


@dataclass
class Tally:
    """Everything counted so far; per-key state is never kept beyond a batch (examples and top-N are bounded)."""

    options: PreflightOptions
    dbs: dict[int, DbTally] = field(default_factory=dict)
    verdicts: dict[Kind, list[Verdict]] = field(default_factory=dict)
    kind_examples: dict[Kind, list[str]] = field(default_factory=dict)
    biggest: list[tuple[int, int, str, str, int | None]] = field(default_factory=list)  # heap: memory, db, key...
    field_ttl_examples: list[str] = field(default_factory=list)
    module_examples: dict[str, list[str]] = field(default_factory=dict)
    streams_with_groups: list[str] = field(default_factory=list)
    streams_with_groups_count: int = 0
    groups: int = 0
    pending: int = 0
    vanished: int = 0
    not_dumped: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # command -> reason (no longer sent)

    def example(self, bucket: list[str], key: bytes) -> None:
        if len(bucket) < self.options.examples:
            bucket.append(display_key(key))


def take_census(client_for: Callable[[int], redis.Redis], keyspace: dict[int, KeyspaceDb],
                source: ServerIdentity, target: ServerIdentity | None,
                options: PreflightOptions) -> tuple[Census, tuple[Gap, ...]]:
    """The census of one server: a cluster's of one node."""
    return take_cluster_census([(client_for, keyspace)], keyspace, source, target, options)


def take_cluster_census(nodes: Sequence[tuple[Callable[[int], redis.Redis], dict[int, KeyspaceDb]]],
                        keyspace: dict[int, KeyspaceDb], source: ServerIdentity, target: ServerIdentity | None,
                        options: PreflightOptions) -> tuple[Census, tuple[Gap, ...]]:
    """The census of a cluster: each database sampled on every primary holding keys of it (the --sample split
    evenly between them, so the sample spans every shard), counted as one keyspace."""
    started = time.monotonic()
    tally = Tally(options)
    limiter = RateLimiter(options.rate_limit)
    note = ""
    for db in sorted(d for d in keyspace if keyspace[d].keys and (not options.dbs or d in options.dbs)):
        tally.dbs[db] = DbTally(keyspace[db].keys)
        holding = [(client_for, own[db]) for client_for, own in nodes if db in own and own[db].keys]
        share = -(-options.sample // max(1, len(holding)))
        for i, (client_for, own) in enumerate(holding):
            # census_db stops at --sample keys examined in the db: node i may take the shares of the nodes before
            tally.options = dataclasses.replace(options, sample=min(options.sample, share * (i + 1)))
            wire = Channel.over(client_for(db))
            try:
                census_db(wire, db, own, source, target, tally, limiter)
            except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
                note = f"census interrupted in db {db}: {' '.join(str(exc).split())[:160]}"
                log.warning("census interrupted", db=db, error=str(exc)[:160])
                break
            finally:
                wire.close()
        tally.options = options
        if note:
            break
    census = build_census(tally, options, time.monotonic() - started, note)
    gaps = tuple(Gap("source", f"{cmd} (census)", reason) for cmd, reason in tally.refused.items())
    return census, gaps


def census_db(wire: Channel, db: int, info: KeyspaceDb, source: ServerIdentity, target: ServerIdentity | None,
              tally: Tally, limiter: RateLimiter) -> None:
    options, cursor = tally.options, b"0"
    limit = None if options.full else options.sample
    probe_field_ttl = source.hash_field_ttl and info.subexpiry != 0
    while True:
        reply = wire.run([("SCAN", cursor, "COUNT", options.batch)])[0]
        if isinstance(reply, rex.ResponseError):
            raise reply
        cursor, keys = reply[0], list(reply[1])
        if limit is not None:
            keys = keys[: limit - tally.dbs[db].examined]
        inspect(wire, db, keys, probe_field_ttl, target, tally, source.capabilities.memory_usage_unsafe)
        limiter.wait(len(keys))
        if cursor in (b"0", 0) or (limit is not None and tally.dbs[db].examined >= limit):
            return


def inspect(wire: Channel, db: int, keys: list[bytes], probe_field_ttl: bool, target: ServerIdentity | None,
            tally: Tally, sizes_unsafe: bool = False) -> None:
    facts = first_round(wire, keys, tally, sizes=not sizes_unsafe)
    if sizes_unsafe:
        facts = guarded_sizes(wire, facts, tally)
    follow_up(wire, facts, probe_field_ttl, target, tally)
    for fact in facts:
        count(db, fact, tally)


def first_round(wire: Channel, keys: list[bytes], tally: Tally, sizes: bool = True) -> list[KeyFacts]:
    asked = [cmd for cmd in INSPECT if " ".join(cmd) not in tally.refused and (sizes or cmd != MEMORY_USAGE)]
    names = [" ".join(cmd) for cmd in asked]
    replies = wire.run(per_key(asked, keys))
    for i, value in enumerate(replies):
        if isinstance(value, rex.ResponseError):
            tally.refused.setdefault(names[i % len(names)], refusal(value))
            replies[i] = None
    slot = {name: names.index(name) if name in names else None for name in ("TYPE", "OBJECT ENCODING", "PTTL",
                                                                             "MEMORY USAGE")}
    width, out = len(names), []
    for i, key in enumerate(keys):
        row = replies[i * width:(i + 1) * width]
        kind = _at(row, slot["TYPE"]) or "unknown"
        if kind == "none":
            tally.vanished += 1
            continue
        out.append(KeyFacts(key, kind, _at(row, slot["OBJECT ENCODING"]) or "unknown",
                            _int(_raw(row, slot["PTTL"]), -1), _int_or_none(_raw(row, slot["MEMORY USAGE"]))))
    return out


def guarded_sizes(wire: Channel, facts: list[KeyFacts], tally: Tally) -> list[KeyFacts]:
    """MEMORY USAGE on a server an empty list would crash (migrate.sizes): LLEN first, empty lists left unsized."""
    if not facts or "MEMORY USAGE" in tally.refused:
        return facts
    commands = memory_usage_commands(wire, [f.key for f in facts], True)
    if commands is None:
        tally.refused.setdefault("MEMORY USAGE", "not asked: LLEN, which keeps it from crashing a Redis before 7.0 "
                                 "on an empty list, was refused")
        return facts
    replies = wire.call(b"".join(commands), len(commands))
    refused = next((r for r in replies if isinstance(r, rex.ResponseError)), None)
    if refused is not None:
        tally.refused.setdefault("MEMORY USAGE", refusal(refused))
        return facts
    return [dataclasses.replace(f, memory=_int_or_none(r)) for f, r in zip(facts, replies, strict=True)]


def _raw(row: list[Any], index: int | None) -> Any:
    return None if index is None else row[index]


_NAMES: dict[bytes, str] = {}  # TYPE / OBJECT ENCODING replies: a handful of distinct values, decoded once


def _at(row: list[Any], index: int | None) -> str | None:
    value = _raw(row, index)
    if isinstance(value, bytes):
        name = _NAMES.get(value)
        if name is None:
            name = value.decode("utf-8", "replace")
            if len(_NAMES) < 1000:
                _NAMES[value] = name
        return name
    return _text(value)


def follow_up(wire: Channel, facts: list[KeyFacts], probe_field_ttl: bool, target: ServerIdentity | None,
              tally: Tally) -> None:
    """Second round: XINFO GROUPS for streams, DUMP for a few keys of each kind (and for hashes that may carry
    field TTLs when the encoding cannot tell)."""
    for fact in facts:
        fact.field_ttl = probe_field_ttl and fact.type == "hash" and fact.encoding == "listpackex"
    asks: list[tuple[str, KeyFacts]] = []
    for fact in facts:
        if fact.type == "stream" and "XINFO GROUPS" not in tally.refused:
            asks.append(("XINFO GROUPS", fact))
        if _wants_dump(fact, probe_field_ttl, target, tally):
            asks.append(("DUMP", fact))
    replies = wire.run([(*what.split(), fact.key) for what, fact in asks])
    for (what, fact), reply in zip(asks, replies, strict=True):
        if isinstance(reply, rex.ResponseError):
            tally.refused.setdefault(what, refusal(reply))
        elif what == "XINFO GROUPS":
            record_groups(fact, reply, tally)
        elif reply is not None:
            record_dump(fact, reply, target, tally)
    for fact in facts:
        if probe_field_ttl and fact.type == "hash" and fact.encoding == "hashtable" and _too_big(fact, tally):
            fact.field_ttl = fields_have_ttl(wire, fact.key, tally)


def _wants_dump(fact: KeyFacts, probe_field_ttl: bool, target: ServerIdentity | None, tally: Tally) -> bool:
    if "DUMP" in tally.refused or _too_big(fact, tally):
        return False
    if probe_field_ttl and fact.type == "hash" and fact.encoding == "hashtable":
        return True  # only the type byte tells a hashtable hash with field TTLs from one without
    kind = (fact.type, fact.encoding, fact.field_ttl)
    return target is not None and len(tally.verdicts.get(kind, ())) < tally.options.dumps_per_kind


def _too_big(fact: KeyFacts, tally: Tally) -> bool:
    return fact.memory is not None and fact.memory > tally.options.dump_limit


def record_dump(fact: KeyFacts, payload: bytes, target: ServerIdentity | None, tally: Tally) -> None:
    if fact.type == "hash" and fact.encoding == "hashtable":
        fact.field_ttl = is_field_ttl_type(payload)
    if target is None:
        return
    kind = (fact.type, fact.encoding, fact.field_ttl)
    verdicts = tally.verdicts.setdefault(kind, [])
    if len(verdicts) < tally.options.dumps_per_kind:
        verdicts.append(classify_payload(payload, target))


def record_groups(fact: KeyFacts, reply: Any, tally: Tally) -> None:
    groups = list(reply or [])
    if not groups:
        return
    tally.streams_with_groups_count += 1
    tally.example(tally.streams_with_groups, fact.key)
    tally.groups += len(groups)
    for group in groups:
        entry = group if isinstance(group, dict) else dict(zip(group[::2], group[1::2], strict=False))
        tally.pending += _int(entry.get(b"pending", entry.get("pending")), 0)


def fields_have_ttl(wire: Channel, key: bytes, tally: Tally) -> bool:
    """For hashes too big to DUMP: HSCAN the fields and ask HPEXPIRETIME, stopping at the first field TTL."""
    cursor = b"0"
    while True:
        reply = wire.command("HSCAN", key, cursor, "COUNT", 1000, "NOVALUES")
        if not is_error(reply):
            cursor, fields = reply
            reply = wire.command("HPEXPIRETIME", key, "FIELDS", len(fields), *fields) if fields else []
        if is_error(reply):
            tally.refused.setdefault("HSCAN/HPEXPIRETIME", refusal(reply))
            return False
        if any(int(e) >= 0 for e in reply):
            return True
        if cursor == b"0":
            return False


def count(db: int, fact: KeyFacts, tally: Tally) -> None:
    dbt = tally.dbs[db]
    dbt.examined += 1
    kind = (fact.type, fact.encoding, fact.field_ttl)
    dbt.kinds[kind] += 1
    tally.example(tally.kind_examples.setdefault(kind, []), fact.key)
    if fact.pttl >= 0:
        dbt.ttl[fact.type] += 1
    if fact.memory is not None:
        dbt.memory[fact.type] += fact.memory
        _keep_biggest(tally, fact.memory, db, fact)
    if fact.field_ttl:
        dbt.field_ttl_seen += 1
        tally.example(tally.field_ttl_examples, fact.key)
    if fact.type not in CORE_TYPES:
        tally.example(tally.module_examples.setdefault(fact.type, []), fact.key)


def _keep_biggest(tally: Tally, memory: int, db: int, fact: KeyFacts) -> None:
    if len(tally.biggest) < tally.options.biggest:
        heapq.heappush(tally.biggest, (memory, db, display_key(fact.key), fact.type, None))
    elif memory > tally.biggest[0][0]:
        heapq.heapreplace(tally.biggest, (memory, db, display_key(fact.key), fact.type, None))


# ---- from the tally to the frozen Census -----------------------------------------------------------------------

def build_census(tally: Tally, options: PreflightOptions, duration: float, note: str) -> Census:
    dbs = {db: _db_census(t) for db, t in tally.dbs.items()}
    field_ttl_seen = sum(t.field_ttl_seen for t in tally.dbs.values())
    complete = not note and all(t.examined >= t.total for t in tally.dbs.values())
    return Census(
        mode=options.mode,
        dbs=dbs,
        biggest=tuple(BigKey(db, key, kind, mem) for mem, db, key, kind, _ in sorted(tally.biggest, reverse=True)),
        field_ttl=KeyGroup(field_ttl_seen, _scaled_kind(tally, lambda k: k[2]), tuple(tally.field_ttl_examples)),
        module_keys={name: KeyGroup(_seen(tally, name), _scaled_kind(tally, partial(_is_type, name)),
                                    tuple(examples)) for name, examples in tally.module_examples.items()},
        streams_with_groups=KeyGroup(tally.streams_with_groups_count, tally.streams_with_groups_count,
                                     tuple(tally.streams_with_groups)),
        consumer_groups=tally.groups,
        pending_entries=tally.pending,
        with_ttl=sum(sum(t.ttl.values()) for t in tally.dbs.values()),
        conversion=_conversion(tally),
        vanished=tally.vanished,
        duration_s=round(duration, 3),
        complete=complete,
        note=note,
    )


def _scale(dbt: DbTally) -> float:
    return dbt.total / dbt.examined if dbt.examined else 0.0


def _db_census(dbt: DbTally) -> DbCensus:
    types: dict[str, TypeStats] = {}
    for kind_type in sorted({k[0] for k in dbt.kinds}):
        kinds = {k: n for k, n in dbt.kinds.items() if k[0] == kind_type}
        encodings: Counter[str] = Counter()
        for (_, encoding, _), n in kinds.items():
            encodings[encoding] += n
        seen = sum(kinds.values())
        types[kind_type] = TypeStats(seen, round(seen * _scale(dbt)), dbt.ttl[kind_type], dbt.memory[kind_type],
                                     dict(encodings))
    return DbCensus(dbt.total, dbt.examined, types)


def _is_type(name: str, kind: Kind) -> bool:
    return kind[0] == name


def _seen(tally: Tally, kind_type: str) -> int:
    return sum(n for t in tally.dbs.values() for k, n in t.kinds.items() if k[0] == kind_type)


def _scaled_kind(tally: Tally, wanted: Callable[[Kind], bool]) -> int:
    return round(sum(n * _scale(t) for t in tally.dbs.values() for k, n in t.kinds.items() if wanted(k)))


def _conversion(tally: Tally) -> Conversion:
    by_type: dict[str, Counter[str]] = {}
    examples: dict[str, list[str]] = {}
    reasons: dict[str, list[str]] = {}
    losses: dict[str, tuple[int, int, list[str]]] = {}
    type_bytes: dict[str, Counter[int]] = {}
    for kind, verdict in _kind_verdicts(tally).items():
        seen = sum(t.kinds.get(kind, 0) for t in tally.dbs.values())
        estimated = _scaled_kind(tally, partial(operator.eq, kind))
        action = verdict.action if verdict else "unclassified"
        by_type.setdefault(kind[0], Counter())[action] += estimated
        for key in tally.kind_examples.get(kind, []):
            _add_example(examples.setdefault(action, []), key, tally.options.examples)
        if verdict is None:
            continue
        if verdict.reason not in reasons.setdefault(action, []):
            reasons[action].append(verdict.reason)
        type_bytes.setdefault(kind[0], Counter())[verdict.type_byte] += estimated
        for loss in verdict.losses:
            n_seen, n_est, ex = losses.get(loss, (0, 0, []))
            for key in tally.kind_examples.get(kind, []):
                _add_example(ex, key, tally.options.examples)
            losses[loss] = (n_seen + seen, n_est + estimated, ex)
    return Conversion(
        by_type={t: dict(c) for t, c in by_type.items()},
        examples={a: tuple(e) for a, e in examples.items()},
        reasons={a: tuple(r) for a, r in reasons.items()},
        losses={name: KeyGroup(s, e, tuple(ex)) for name, (s, e, ex) in losses.items()},
        dumped=sum(len(v) for v in tally.verdicts.values()),
        not_dumped=sum(n for t in tally.dbs.values() for k, n in t.kinds.items() if k not in tally.verdicts),
        type_bytes={t: dict(c) for t, c in type_bytes.items()},
    )


def _kind_verdicts(tally: Tally) -> dict[Kind, Verdict | None]:
    """The most severe verdict seen for each kind (None: no payload of that kind was classified)."""
    kinds = {k for t in tally.dbs.values() for k in t.kinds}
    out: dict[Kind, Verdict | None] = {}
    for kind in kinds:
        verdicts = tally.verdicts.get(kind, [])
        out[kind] = max(verdicts, key=lambda v: ACTION_ORDER.index(v.action)) if verdicts else None
    return out


def _add_example(bucket: list[str], key: str, limit: int) -> None:
    if len(bucket) < limit and key not in bucket:
        bucket.append(key)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
