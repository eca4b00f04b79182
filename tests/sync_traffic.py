"""Live traffic for the sync tests, from its own process (as an application would write).

    python -m tests.sync_traffic URL every-kind [ROUNDS]    # ROUNDS times: delete the keys of dbs 0-2 one by one,
                                                            # then stream_support.generate (without its FLUSHALL)
    python -m tests.sync_traffic URL steady STOP_FILE        # writes every few ms until STOP_FILE exists

`steady` writes RPUSH log <n> (n = 1, 2, ...), INCR counter, SET with short TTLs (50-400 ms) and HSET, prints
"ready" once connected and, at the end, the last n whose RPUSH the source acknowledged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from tests import stream_support as ss


def every_kind(url: str, rounds: int) -> None:
    client = redis.Redis.from_url(url)
    print("ready", flush=True)
    for _ in range(rounds):
        for db in (0, 1, 2):  # generate() creates keys (RESTORE, XGROUP CREATE) that must not exist yet
            c = ss._on(client, db)
            keys = list(c.scan_iter(count=1000))
            if keys:
                c.unlink(*keys)
            c.close()
        ss.generate(client, counters=100, flushall=False)
    print("done", flush=True)


def steady(url: str, stop_file: str) -> None:
    client = redis.Redis.from_url(url)
    stop = Path(stop_file)
    print("ready", flush=True)
    n = 0
    while not stop.exists():
        n += 1
        pipe = client.pipeline(transaction=False)
        pipe.rpush("log", n)
        pipe.incr("counter")
        pipe.set(f"short:{n % 50}", n, px=50 + (n * 37) % 350)
        pipe.hset("hash", f"f{n % 20}", n)
        pipe.execute()
        time.sleep(0.003)
    print("done", n, flush=True)


if __name__ == "__main__":
    target, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "1"
    every_kind(target, int(arg)) if mode == "every-kind" else steady(target, arg)
