"""Baselines the benchmarks measure ours against, written once.

plain_copy is the loop a user would write with redis-py (docs/compatibility.md measured it at ~51k keys/s):
SCAN, pipelined DUMP+PTTL, pipelined RESTORE. `stamp` restamps each payload to that RDB version, so the loop also works
on a cross-version pair (Redis 8 -> Valkey 8), where it would otherwise fail on every key.
"""

from __future__ import annotations

import time

import redis

from migrate.rdb.dump import restamp


def plain_copy(source: redis.Redis, target: redis.Redis, batch: int = 1000, stamp: int | None = None) -> float:
    """Copy every key of the source's db into the target's; return the seconds it took."""
    started, cursor = time.perf_counter(), 0
    while True:
        cursor, keys = source.scan(cursor, count=batch)
        if keys:
            read = source.pipeline(transaction=False)
            for key in keys:
                read.dump(key)
                read.pttl(key)
            replies = read.execute()
            write = target.pipeline(transaction=False)
            for i, key in enumerate(keys):
                payload, ttl = replies[2 * i], replies[2 * i + 1]
                if payload is not None:  # expired or deleted since SCAN
                    write.restore(key, max(ttl, 0), restamp(payload, stamp) if stamp else payload, replace=True)
            write.execute()
        if cursor == 0:
            return time.perf_counter() - started
