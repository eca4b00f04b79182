"""`verify(config) -> VerifyResult`: prove the target holds what the source holds, and say exactly what differs.

Order of work: identify both servers, plan the database pairs, then per level:
- count: INFO keyspace key counts per database pair (rechecked while they differ);
- keys / full: a forward pass over the source keys (existence, type, TTL and, at full, a canonical value digest), a
  reverse pass over the target keys to find extra ones (skipped per database where counting proves it would find
  none: stillness.py), recheck rounds for the mismatches, and a search of the other target databases for missing
  keys.
Non-key state (functions, ACL users, config) is diffed at every level unless switched off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

from redis import exceptions as rex

from migrate.activity import Marks, read_marks
from migrate.connection import translate
from migrate.logs import get_logger
from migrate.server import Channels, Server
from migrate.verify.compare import Comparison, PairPlan, absent_in_sources, compare_keys, scan_keys
from migrate.verify.fullread import KIND_FIRST, FirstRound
from migrate.verify.nonkey import diff_nonkey
from migrate.verify.options import Level, VerifyConfig, VerifyOptions
from migrate.verify.plan import DbPlan, Keyspace, key_count, plan_databases
from migrate.verify.result import DbSummary, Listing, NonKeyDiff, SampleInfo, VerifyResult
from migrate.verify.rounds import RecheckContext, Tracker, locate_missing, recheck
from migrate.verify.routes import Digests, Method, Routes, ValueMethod, cheap_dump
from migrate.verify.sample import BottomK, Sampler
from migrate.verify.sides import VerifySide
from migrate.verify.srvdigest import allowed
from migrate.verify.stillness import Stillness
from migrate.verify.workers import Nodes, Workers
from migrate.wire import Channel

log = get_logger(__name__)


def marks(server: Server) -> Marks:
    return read_marks(server.client, server.settings, server.endpoint, server.role)


def next_first_round(result: Comparison, digest_all: bool, routes: Routes) -> FirstRound:
    """The first round of the next batch, from the types of this one (fullread.py): mostly strings, lists, sets or
    hashes: the expiry and that type's first read; mostly other values settled by equal DUMP bodies (zsets,
    streams): the expiry and MEMORY USAGE, then DUMP (no TYPE: the payload has it); otherwise TYPE, expiry and
    MEMORY USAGE. Digests of every value need the type first; --value-method dump DUMPs every small value."""
    if digest_all:
        return FirstRound.TYPED
    if routes.method is ValueMethod.DUMP:
        return FirstRound.DUMP
    if 2 * result.strings >= result.compared:
        return FirstRound.STRINGS
    kind, count = max(result.kinds.items(), key=lambda item: item[1], default=(b"", 0))
    if 2 * count >= result.compared:
        if routes.dump_first(kind):
            return FirstRound.DUMP
        if kind in FIRST_BY_KIND:
            return FIRST_BY_KIND[kind]
    if 5 * result.methods.get(Method.DUMP_BODY.value, 0) >= 4 * result.compared:
        return FirstRound.DUMP
    return FirstRound.TYPED


FIRST_BY_KIND = {kind: mode for mode, kind in KIND_FIRST.items()}


def debug_allowed(server: Server) -> bool:
    """Whether this server answers DEBUG DIGEST-VALUE (enabled, and allowed to this user): asked once."""
    channel = Channel.over(server.client)
    try:
        return allowed(channel)
    except (rex.RedisError, OSError) as exc:
        raise translate(exc, server.endpoint, server.role) from exc
    finally:
        channel.close()


class Run:
    def __init__(self, config: VerifyConfig, options: VerifyOptions, source: Server | VerifySide,
                 target: Server | VerifySide, started: float) -> None:
        self.config = config
        self.options = options
        self.src = source if isinstance(source, VerifySide) else VerifySide(source)
        self.tgt = target if isinstance(target, VerifySide) else VerifySide(target)
        self.source, self.target = self.src.server, self.tgt.server
        self.started = started
        self.src_ks = self.src.keyspace()
        self.tgt_ks = self.tgt.keyspace()
        digests = options.level is Level.FULL and options.server_digests is not Digests.NEVER \
            and debug_allowed(self.source) and debug_allowed(self.target)
        self.plan: DbPlan = plan_databases(options, self.source.identity, self.target.identity, self.src_ks,
                                           self.tgt_ks, digests)
        if not self.src.cluster:
            self.source.check_databases(sorted({p.source_db for p in self.plan.pairs}), "--db / --db-map")
        if not self.tgt.cluster:
            self.target.check_databases(sorted({p.target_db for p in self.plan.pairs}))
        self.tracker = Tracker(options.max_report_keys, options.recheck_limit)
        self.routes = Routes(options.value_method if options.dump_bodies else ValueMethod.NATIVE,
                             cheap_dump(self.source.identity.product, self.source.identity.version))
        # The first round of the next batch, from the types of the last one (fullread.py).
        self.first = FirstRound.TYPED
        self.counted: set[int] = set()  # target dbs whose extra keys were ruled out by counting (no reverse SCAN)

    def execute(self) -> VerifyResult:
        log.info("verify", level=str(self.options.level), source=str(self.config.source),
                 target=str(self.config.target), databases=[(p.source_db, p.target_db) for p in self.plan.pairs])
        if self.options.level is Level.COUNT:
            summaries, rounds_run = self.count_level()
            sample = SampleInfo("all", None, self.options.seed, sum(s.source_keys for s in summaries),
                                sum(s.source_keys for s in summaries))
            divergent = Listing()
        else:
            sample = self.key_level()
            rounds_run = self.recheck()
            locate_missing(self.tracker, self.target.channels, sorted(self.tgt_ks), self.config.connection,
                           self.options.batch_size, self._target_split() if self.tgt.cluster else None)
            divergent = self.tracker.finish()
            summaries = self.summaries()
        nonkey, notes = self.nonkey()
        return VerifyResult(
            level=self.options.level, source=str(self.config.source), target=str(self.config.target),
            source_server=self.source.identity.describe(), target_server=self.target.identity.describe(),
            databases=tuple(summaries), divergent=divergent, changed=self.tracker.changed.listing(),
            not_compared=self.tracker.notes.listing(), by_reason=dict(sorted(self.tracker.by_reason.items())),
            nonkey=tuple(nonkey), nonkey_notes=tuple(notes), sample=sample, rounds_run=rounds_run,
            unrechecked=self.tracker.unrechecked.total,
            duration_s=round(time.monotonic() - self.started, 3), options=self.options)

    # ---- --level count -------------------------------------------------------------------------------------------

    def count_level(self) -> tuple[list[DbSummary], int]:
        rounds_run = 0
        src_ks, tgt_ks = self.src_ks, self.tgt_ks
        while True:
            summaries = self._count_summaries(src_ks, tgt_ks)
            if all(s.count_match for s in summaries) or rounds_run >= self.options.rounds:
                return summaries, rounds_run
            rounds_run += 1
            log.info("recheck", round=rounds_run, what="key counts", wait_s=self.options.interval)
            time.sleep(self.options.interval)
            src_ks, tgt_ks = self.src.keyspace(), self.tgt.keyspace()

    def _count_summaries(self, src_ks: Keyspace, tgt_ks: Keyspace) -> list[DbSummary]:
        expected = {t: sum(key_count(src_ks, s) for s in sources) for t, sources in self.plan.reverse}
        return [DbSummary(p.source_db, p.target_db, key_count(src_ks, p.source_db), key_count(tgt_ks, p.target_db),
                          count_match=expected[p.target_db] == key_count(tgt_ks, p.target_db))
                for p in self.plan.pairs]

    # ---- --level keys / full -------------------------------------------------------------------------------------

    def key_level(self) -> SampleInfo:
        sampler, sampled = self.sampler()
        workers = Workers(self.options.workers, self.config.source, self.config.target, self.config.connection)
        try:
            before = (self.src.marks(), self.tgt.marks()) if self.may_count() else None
            for pair in self.plan.pairs:
                self.forward(pair, sampler, sampled, workers)
            workers.drain()
            proof = Stillness(*before, self.src.marks(), self.tgt.marks()) if before else None
            for target_db, source_dbs in self.plan.reverse:
                if proof is not None and self.proven(proof, target_db, source_dbs):
                    continue
                self.reverse(target_db, source_dbs, sampler, workers)
            workers.drain()
        finally:
            workers.close()
        counters = self.tracker.counters.values()
        mode = "all" if not self.options.sampling else ("count" if self.options.sample else "percent")
        requested = self.options.sample if self.options.sample is not None else self.options.sample_percent
        return SampleInfo(mode, requested, self.options.seed, sum(c.in_scope for c in counters),
                          sum(c.sampled for c in counters))

    def may_count(self) -> bool:
        """Counting can replace the reverse SCAN only when the forward SCAN enumerated every key."""
        sel = self.options.selection
        return (self.options.reverse_scan == "auto" and not self.options.sampling
                and not (sel.match or sel.exclude or sel.types))

    def proven(self, proof: Stillness, target_db: int, source_dbs: tuple[int, ...]) -> bool:
        if len(source_dbs) != 1:  # merged source dbs may share key names: the counts would not add up
            return False
        counter = self.tracker.counter(source_dbs[0], target_db)
        seen = counter.compared - counter.unseen
        if not proof.proves_no_extra(source_dbs[0], target_db, counter.in_scope, seen):
            log.info("reverse scan needed", target_db=target_db, unchanged=proof.unchanged,
                     scanned=counter.in_scope, seen_on_target=seen)
            return False
        self.counted.add(target_db)
        log.info("no extra keys (counted)", target_db=target_db, keys=counter.in_scope)
        return True

    def sampler(self) -> tuple[Sampler, dict[int, list[bytes]] | None]:
        opts = self.options
        if opts.sample_percent is not None:
            return Sampler("percent", opts.sample_percent / 100.0, opts.seed), None
        if opts.sample is None:
            return Sampler("all"), None
        bottom = BottomK(opts.sample, opts.seed)
        for pair in self.plan.pairs:
            counter = self.tracker.counter(pair.source_db, pair.target_db)
            for node in self.src.nodes:
                for kept, keys in scan_keys(self.src.channels(node), pair.source_db, opts.selection, Sampler("all"),
                                            opts.batch_size, self.config.connection):
                    counter.in_scope += kept
                    for key in keys:
                        bottom.offer(pair.source_db, key)
        threshold = bottom.threshold if bottom.seen > opts.sample else 1.0
        return Sampler("count", threshold, opts.seed), bottom.keys_by_db()

    def forward(self, pair: PairPlan, sampler: Sampler, sampled: dict[int, list[bytes]] | None,
                workers: Workers) -> None:
        counter = self.tracker.counter(pair.source_db, pair.target_db)
        for kept, keys in self._forward_batches(pair, sampler, sampled):
            counter.in_scope += kept
            counter.sampled += len(keys)
            for (source, target), group in self._pairs_of(keys):
                job = partial(self._compare_job, pair, group, self.first)
                workers.submit(job, partial(self._record, pair, True), (source, target))
        log.info("scanned", source_db=pair.source_db, target_db=pair.target_db, keys=counter.sampled,
                 mismatches=len(self.tracker.pending))

    def _forward_batches(self, pair: PairPlan, sampler: Sampler,
                         sampled: dict[int, list[bytes]] | None) -> Iterator[tuple[int, list[bytes]]]:
        """The source's keys: every node's SCAN (a cluster: each primary), or the sampled keys."""
        opts = self.options
        if sampled is not None:
            keys = sampled.get(pair.source_db, [])
            yield from ((0, keys[i:i + opts.batch_size]) for i in range(0, len(keys), opts.batch_size))
            return
        for node in self.src.nodes:
            yield from scan_keys(self.src.channels(node), pair.source_db, opts.selection, sampler, opts.batch_size,
                                 self.config.connection)

    def _pairs_of(self, keys: list[bytes]) -> list[tuple[Nodes, list[bytes]]]:
        """Keys grouped by the source node and the target node holding them (one group between two servers)."""
        out: list[tuple[Nodes, list[bytes]]] = []
        for source, group in self.src.split(keys):
            out += [((source, target), part) for target, part in self.tgt.split(group)]
        return out

    def reverse(self, target_db: int, source_dbs: tuple[int, ...], sampler: Sampler, workers: Workers) -> None:
        opts = self.options
        pair = next(p for p in self.plan.pairs if p.source_db == source_dbs[0] and p.target_db == target_db)
        counter = self.tracker.counter(pair.source_db, target_db)
        for node in self.tgt.nodes:
            for _, keys in scan_keys(self.tgt.channels(node), target_db, opts.selection, sampler, opts.batch_size,
                                     self.config.connection):
                counter.target_scanned += len(keys)
                for source, group in self.src.split(keys):
                    job = partial(self._extra_job, pair, source_dbs, group)
                    workers.submit(job, partial(self._record, pair, False), (source, node))

    # Jobs run on a worker thread with that thread's connections; _record runs on the main thread.

    def _compare_job(self, pair: PairPlan, keys: list[bytes], first: FirstRound, source: Channels,
                     target: Channels) -> Comparison:
        return compare_keys(source, target, pair, keys, self.options.level is Level.FULL,
                            self.options.ttl_tolerance_ms, self.options.selection, self.config.connection,
                            first=first, routes=self.routes)

    def _extra_job(self, pair: PairPlan, source_dbs: tuple[int, ...], keys: list[bytes], source: Channels,
                   target: Channels) -> Comparison:
        absent = absent_in_sources(source, source_dbs, keys, self.config.connection, not self.src.cluster)
        return self._compare_job(pair, absent, FirstRound.TYPED, source, target) if absent else Comparison(0, [])

    def _record(self, pair: PairPlan, counted: bool, result: Comparison) -> None:
        counter = self.tracker.counter(pair.source_db, pair.target_db)
        for method, count in result.methods.items():
            counter.methods[method] = counter.methods.get(method, 0) + count
        if counted:
            counter.compared += result.compared
            counter.unseen += result.unseen
            if result.compared:
                self.first = next_first_round(result, pair.digest_all, self.routes)
        for key, reason, detail in result.mismatches:
            self.tracker.record(pair.source_db, pair.target_db, key, reason, detail)

    def recheck(self) -> int:
        pairs = {(p.source_db, p.target_db): p for p in self.plan.pairs}
        split = self._recheck_split if self.src.cluster or self.tgt.cluster else None
        ctx = RecheckContext(self.source.channels, self.target.channels, pairs, self.options.level is Level.FULL,
                             self.options.ttl_tolerance_ms, self.options.selection,
                             self.config.connection, self.options.batch_size, split)
        return recheck(self.tracker, ctx, self.options.rounds, self.options.interval)

    def _recheck_split(self, keys: list[bytes]) -> list[tuple[Channels, Channels, list[bytes]]]:
        return [(self.src.channels(source), self.tgt.channels(target), group)
                for (source, target), group in self._pairs_of(keys)]

    def _target_split(self) -> Callable[[list[bytes]], list[tuple[Channels, list[bytes]]]]:
        return lambda keys: [(self.tgt.channels(node), group) for node, group in self.tgt.split(keys)]

    def close(self) -> None:
        self.src.close()
        self.tgt.close()

    def summaries(self) -> list[DbSummary]:
        out = []
        for pair in self.plan.pairs:
            c = self.tracker.counter(pair.source_db, pair.target_db)
            out.append(DbSummary(pair.source_db, pair.target_db, key_count(self.src_ks, pair.source_db),
                                 key_count(self.tgt_ks, pair.target_db), c.in_scope, c.compared, c.target_scanned,
                                 c.divergent, c.changed, c.not_compared, sampled=c.sampled,
                                 extra_check="count" if pair.target_db in self.counted else "scan",
                                 methods=dict(c.methods)))
        return out

    # ---- non-key state -------------------------------------------------------------------------------------------

    def nonkey(self) -> tuple[list[NonKeyDiff], list[str]]:
        if not self.options.check_nonkey:
            return [], ["non-key state (functions, ACL users, config): not compared (--no-nonkey)"]
        src, tgt = Channel.over(self.source.client), Channel.over(self.target.client)
        try:
            diffs, notes = diff_nonkey(src, tgt, self.source.identity, self.target.identity)
            if self.src.cluster or self.tgt.cluster:  # a cluster node's `databases` is not what it can hold
                diffs = [d for d in diffs if not (d.kind == "config" and d.name == "databases")]
            return diffs, notes
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, None, "source or target") from exc
        finally:
            src.close()
            tgt.close()
