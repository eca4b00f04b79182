"""Full and keys-level verification of a large dataset, next to the copy that produced it (same run, same servers).

Data: KEYS keys in Redis 7.0 (default 1,000,000): 94% 100-byte strings, the rest hashes, lists, sets, zsets (20
elements each), streams with a consumer group, 10% of all keys with a TTL, and three big keys (100,000 elements) that
verification must read in chunks.
Baselines, same process:
- a plain pipelined copy into Valkey 8.1: SCAN 1000, pipelined DUMP + PTTL, pipelined RESTORE (redis-py pipelines);
- `migrate run` (replay strategy) of the same data into an emptied target, when the library is importable and works.
Ours: `verify --level keys` and `--level full` (both directions, every key); peak RSS growth of this process during
each phase, sampled every 20 ms, at two sizes (KEYS/10 and KEYS) to show memory does not grow with the data.

Run: .venv/bin/python bench/verify.py [KEYS] [--no-record]   (needs the servers in .servers); appends to RESULTS.md.
"""

from __future__ import annotations

import datetime
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from migrate.config import CommonConfig, parse_endpoint
from migrate.logs import configure
from migrate.sandbox import LocalServer, load_manifest
from migrate.verify import Level, VerifyConfig, VerifyOptions, verify
from migrate.verify.wire import Packed, Wire

SOURCE, TARGET = "redis-7.0", "valkey-8.1"
BATCH = 1000
BIG = 100_000
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


# ---- data --------------------------------------------------------------------------------------------------------


def load(client: redis.Redis, keys: int) -> None:
    """Write the dataset with packed pipelines (fast enough that loading 1M keys takes seconds)."""
    wire = Wire(client)
    others = keys * 6 // 100
    strings = keys - others - 3
    for start in range(0, strings, 10_000):
        count = min(10_000, strings - start)
        data = b"".join(b"*3\r\n$3\r\nSET\r\n$12\r\ns:%010d\r\n$100\r\n%0100d\r\n" % (i, i)
                        for i in range(start, start + count))
        wire.run(Packed(data, count))
    commands: list[tuple[Any, ...]] = []
    for i in range(others):
        commands.append(_mixed(i))
        if len(commands) >= 2000:
            wire.run(commands)
            commands = []
    commands += [("HSET", "big:hash", *[x for j in range(BIG) for x in (f"f{j}", f"v{j}")]),
                 ("RPUSH", "big:list", *[f"e{j}" for j in range(BIG)]),
                 ("ZADD", "big:zset", *[x for j in range(BIG) for x in (j / 7, f"m{j}")])]
    wire.run(commands)
    wire.run([("PEXPIRE", f"s:{i:010d}", 86_400_000 + i) for i in range(0, strings, 10)])
    wire.release()


def _mixed(i: int) -> tuple[Any, ...]:
    kind = i % 5
    if kind == 0:
        return ("HSET", f"h:{i}", *[x for j in range(20) for x in (f"f{j}", f"value-{i}-{j}")])
    if kind == 1:
        return ("RPUSH", f"l:{i}", *[f"item-{j}" for j in range(20)])
    if kind == 2:
        return ("SADD", f"t:{i}", *[f"member-{j}" for j in range(20)])
    if kind == 3:
        return ("ZADD", f"z:{i}", *[x for j in range(20) for x in (j / 3, f"m{j}")])
    return ("XADD", f"x:{i}", "*", "a", str(i), "b", "payload")


# ---- baselines ---------------------------------------------------------------------------------------------------


def plain_copy(source: redis.Redis, target: redis.Redis) -> None:
    """The measured reference loop (shared/reference/compatibility.md): SCAN, pipelined DUMP+PTTL, pipelined RESTORE."""
    cursor = 0
    while True:
        cursor, keys = source.scan(cursor, count=BATCH)
        pipe = source.pipeline(transaction=False)
        for key in keys:
            pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
        out = target.pipeline(transaction=False)
        for i, key in enumerate(keys):
            out.restore(key, max(0, replies[2 * i + 1]), replies[2 * i], replace=True)
        out.execute()
        if cursor == 0:
            return


def migrate_run(source_url: str, target_url: str) -> str:
    """`migrate run` (replay) through its library call; returns '' on success or why it could not run."""
    try:
        from migrate.run import RunConfig, RunOptions, run
    except ImportError as exc:
        return f"not importable: {exc}"
    common = CommonConfig(parse_endpoint(source_url), parse_endpoint(target_url))
    try:
        run(RunConfig(common, RunOptions()))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


# ---- measurement -------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak RSS growth in MB, result)."""
    start_rss, peak = rss_mb(), [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb() - start_rss)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    return elapsed, max(peak[0], rss_mb() - start_rss), result


def verify_level(source: LocalServer, target: LocalServer, level: Level) -> Any:
    config = VerifyConfig(parse_endpoint(source.url), parse_endpoint(target.url),
                          VerifyOptions(level=level, rounds=1, interval=0.1))
    result = verify(config)
    if not result.ok:
        raise SystemExit(f"verification of a clean copy failed: {result.divergent}")
    return result


def one_size(keys: int) -> dict[str, Any]:
    binaries = load_manifest()
    source = LocalServer(binaries[SOURCE]).start()
    target = LocalServer(binaries[TARGET]).start()
    try:
        src, dst = source.client(), target.client()
        load(src, keys)
        total = src.dbsize()
        out: dict[str, Any] = {"keys": total, "versions": (source.binary.version, target.binary.version)}
        out["copy"] = measure(lambda: plain_copy(src, dst))[:2]
        out["keys_level"] = measure(lambda: verify_level(source, target, Level.KEYS))[:2]
        out["full"] = measure(lambda: verify_level(source, target, Level.FULL))[:2]
        dst.flushall()
        elapsed, _, error = measure(lambda: migrate_run(source.url, target.url))
        out["run"] = (elapsed, error)
        if not error:
            out["run_verified"] = verify_level(source, target, Level.KEYS).ok
        return out
    finally:
        source.cleanup()
        target.cleanup()


def report(small: dict[str, Any], large: dict[str, Any], argv: list[str]) -> str:
    n = large["keys"]
    copy_s, full_s, keys_s = large["copy"][0], large["full"][0], large["keys_level"][0]
    run_s, run_error = large["run"]
    lines = [
        "",
        "## verify: full and keys-level verification vs the copy (bench/verify.py)",
        "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `.venv/bin/python bench/verify.py {' '.join(argv)}`."
        f" Python {platform.python_version()}, source Redis {large['versions'][0]}, target Valkey "
        f"{large['versions'][1]}, both local on this 2-core machine (shared with other work).",
        f"- Data: {n:,} keys (94% 100-byte strings; hashes, lists, sets, zsets of 20 elements, streams; 3 keys of "
        f"{BIG:,} elements; 10% with TTLs).",
        f"- Baseline, same run: plain pipelined SCAN/DUMP+PTTL/RESTORE copy: {copy_s:.2f} s "
        f"({n / copy_s:,.0f} keys/s).",
    ]
    if run_error:
        lines.append(f"- `migrate run` (replay) could not be measured in this run: {run_error[:200]}")
    else:
        lines.append(f"- `migrate run` (replay) of the same data into an emptied target: {run_s:.2f} s "
                     f"({n / run_s:,.0f} keys/s); its result verified clean: {large.get('run_verified')}.")
    migration = run_s if not run_error else copy_s
    lines += [
        f"- Ours: `verify --level full`: {full_s:.2f} s ({n / full_s:,.0f} keys/s), {migration / full_s:.2f}x faster "
        f"than the {'`migrate run`' if not run_error else 'baseline copy'} (goal: >= 1x); vs the plain copy: "
        f"{copy_s / full_s:.2f}x.",
        f"- Ours: `verify --level keys`: {keys_s:.2f} s ({n / keys_s:,.0f} keys/s), {migration / keys_s:.2f}x faster "
        f"(goal: >= 3x); vs the plain copy: {copy_s / keys_s:.2f}x.",
        f"- Memory (peak RSS growth of the process): full {small['full'][1]:.1f} MB at {small['keys']:,} keys, "
        f"{large['full'][1]:.1f} MB at {n:,} keys; keys-level {small['keys_level'][1]:.1f} MB / "
        f"{large['keys_level'][1]:.1f} MB. (Baseline copy: {small['copy'][1]:.1f} MB / {large['copy'][1]:.1f} MB.)",
        f"- At {small['keys']:,} keys: copy {small['copy'][0]:.2f} s, full {small['full'][0]:.2f} s, keys "
        f"{small['keys_level'][0]:.2f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    configure("plain", "warning")
    numbers = [a for a in argv if a.isdigit()]
    keys = int(numbers[0]) if numbers else 1_000_000
    small = one_size(keys // 10)
    large = one_size(keys)
    text = report(small, large, argv)
    print(text)
    if "--no-record" in argv:
        return
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    RESULTS.write_text(existing.rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])
