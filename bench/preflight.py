"""Cost of the preflight keyspace census next to a plain SCAN+TYPE pass, on the same source in the same run.

Source: Redis 7.0 with KEYS keys (80% strings from DEBUG POPULATE, the rest hashes, lists, sets and zsets) in db 0 and
KEYS/10 keys in db 1; target Valkey 8.1 (payload classification). Each measurement runs in a forked child so its peak
RSS is its own. Baseline: SCAN COUNT 1000 + pipelined TYPE with redis-py (what a script would do). Ours: the sampled
census (default --sample 1000), and the full census (--full) over db 1 (KEYS/10) and db 0 (KEYS): same peak memory
means memory is flat in the key count.

Run: .venv/bin/python bench/preflight.py [KEYS]    (default 1000000; needs the provisioned servers in .servers)
"""

from __future__ import annotations

import multiprocessing
import platform
import resource
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from fixtures.sandbox import LocalServer, load_manifest
from migrate.config import CommonConfig, parse_endpoint
from migrate.logs import configure
from migrate.preflight import PreflightConfig, PreflightOptions, preflight

BATCH = 1000
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def load(server: LocalServer, keys: int, db: int) -> None:
    client = server.client(db)
    strings = keys * 8 // 10
    client.execute_command("DEBUG", "POPULATE", strings, f"s{db}", 100)
    pipe = client.pipeline(transaction=False)
    for i in range(keys - strings):
        kind = i % 4
        if kind == 0:
            pipe.hset(f"h{db}:{i}", mapping={"a": i, "b": "y" * 40})
        elif kind == 1:
            pipe.rpush(f"l{db}:{i}", *range(8))
        elif kind == 2:
            pipe.sadd(f"t{db}:{i}", *range(8))
        else:
            pipe.zadd(f"z{db}:{i}", {"a": 1, "b": 2, "c": 3})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def scan_type(url: str, db: int) -> int:
    client = redis.Redis.from_url(url, db=db)
    seen, cursor = 0, 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=BATCH)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        pipe.execute()
        seen += len(keys)
        if cursor == 0:
            return seen


def census(source: str, target: str, full: bool, dbs: tuple[int, ...]) -> int:
    common = CommonConfig(parse_endpoint(source), parse_endpoint(target))
    result = preflight(PreflightConfig(common, PreflightOptions(full=full, batch=BATCH, dbs=dbs)))
    assert result.profile.census is not None
    return result.profile.census.examined


def measure(fn: Callable[[], int]) -> tuple[float, int, float]:
    """(seconds, keys, peak RSS MiB) of fn run in a forked child."""
    queue: multiprocessing.Queue[tuple[float, int, float]] = multiprocessing.Queue()

    def child() -> None:
        started = time.perf_counter()
        keys = fn()
        elapsed = time.perf_counter() - started
        queue.put((elapsed, keys, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    out = queue.get()
    process.join()
    return out


def main() -> None:
    configure("plain", "warning")  # logs on stderr, quiet: stdout is the report
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    binaries = load_manifest()
    source = LocalServer(binaries["redis-7.0"], ("--enable-debug-command", "yes")).start()
    target = LocalServer(binaries["valkey-8.1"]).start()
    try:
        started = time.perf_counter()
        load(source, keys, 0)
        load(source, keys // 10, 1)
        print(f"loaded {keys} + {keys // 10} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        rows = {
            "baseline SCAN+TYPE, db0": measure(lambda: scan_type(source.url, 0)),
            "sampled census (default), db0": measure(lambda: census(source.url, target.url, False, (0,))),
            "full census, db0": measure(lambda: census(source.url, target.url, True, (0,))),
            f"full census, db1 ({keys // 10} keys)": measure(lambda: census(source.url, target.url, True, (1,))),
            "baseline SCAN+TYPE, db0 (again)": measure(lambda: scan_type(source.url, 0)),
        }
    finally:
        source.cleanup()
        target.cleanup()
    report(keys, rows)


def report(keys: int, rows: dict[str, tuple[float, int, float]]) -> None:
    baseline = min(rows["baseline SCAN+TYPE, db0"][0], rows["baseline SCAN+TYPE, db0 (again)"][0])
    full = rows["full census, db0"][0]
    lines = [f"- {name}: {secs:.2f} s for {n} keys ({n / secs:,.0f} keys/s), peak RSS {rss:.0f} MiB"
             for name, (secs, n, rss) in rows.items()]
    text = "\n".join([
        "",
        "## Preflight census vs SCAN+TYPE (bench/preflight.py)",
        "",
        f"- Date: {date.today().isoformat()}. Command: `.venv/bin/python bench/preflight.py {keys}`. "
        f"Python {platform.python_version()}, source Redis 7.0.15 ({keys} keys in db0: 80% 100-byte strings, "
        f"hashes, lists, sets, zsets; {keys // 10} in db1), target Valkey 8.1.1, both local on this 2-core machine "
        "(shared with other work: timings are noisy).",
        *lines,
        f"- Full census / SCAN+TYPE (best baseline of two in the same run): {full / baseline:.2f}x (goal <= 2x).",
        f"- Peak RSS full census db1 vs db0 ({keys // 10} vs {keys} keys): "
        f"{rows[f'full census, db1 ({keys // 10} keys)'][2]:.0f} vs {rows['full census, db0'][2]:.0f} MiB.",
    ])
    print(text)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
