"""`migrate run` (live replay) throughput and memory vs server-side MIGRATE and a plain redis-py loop, in one run.

    .venv/bin/python bench/run.py [KEYS] [--pairs redis-7.0:valkey-8.1,redis-8.0.2:valkey-8.1] [--no-append]

For each pair: start both servers, DEBUG POPULATE KEYS keys of 100 bytes into the source, then copy them into the
emptied target three ways, timing each:
- ours: migrate.run.run() with default options (size probe on, checkpoint, conversion), in a child process so its peak
  RSS is its own; run at KEYS/4 keys first and at KEYS keys, the RSS of both printed (flat = bounded by batches);
- MIGRATE: `MIGRATE host port "" 0 5000 COPY REPLACE KEYS k1..k1000` per SCAN page of 1000 (server to server);
- plain loop: redis-py SCAN 1000, pipelined DUMP+PTTL, pipelined RESTORE ... REPLACE.
Each copy is checked (DBSIZE and a sample of values). The result is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from baselines import plain_copy  # noqa: E402  (bench/ is on sys.path when run as a script)

from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.facts.releases import accepts_rdb_version  # noqa: E402
from migrate.identity import identify  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from migrate.config import CommonConfig, parse_endpoint
from migrate.run import RunConfig, RunOptions, run
source, target, checkpoint, threshold = sys.argv[1:5]
options = RunOptions(checkpoint=Path(checkpoint)) if threshold == "default" else \
    RunOptions(checkpoint=Path(checkpoint), big_key_threshold=int(threshold))
config = RunConfig(CommonConfig(parse_endpoint(source), parse_endpoint(target)), options)
began = time.perf_counter()
result = run(config)
seconds = time.perf_counter() - began
print(json.dumps({"copied": result.copied, "seconds": seconds,
                  "paths": {p: n for d in result.dbs for p, n in d.by_route.items()},
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def populate(server: LocalServer, keys: int) -> None:
    client = server.client()
    client.execute_command("DEBUG", "POPULATE", keys, "key", 100)  # "key:N" -> 100-byte values, server side
    assert client.dbsize() == keys


def ours(source: LocalServer, target: LocalServer, tmp: Path, threshold: str = "default") -> dict[str, float]:
    target.client().flushall()
    out = subprocess.run([sys.executable, "-c", CHILD, source.url, target.url, str(tmp / "bench-checkpoint.json"),
                          threshold],
                         capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "MIGRATE_LOG_LEVEL": "warning"})
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def migrate_baseline(source: LocalServer, target: LocalServer) -> float:
    target.client().flushall()
    client = source.client(socket_timeout=60)
    began = time.perf_counter()
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=1000)
        if keys:
            client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "COPY", "REPLACE", "KEYS",
                                   *keys)
        if cursor == 0:
            return time.perf_counter() - began


def plain_loop(source: LocalServer, target: LocalServer) -> float:
    """The loop a user would write; on a cross-version pair it restamps each payload (as ours does) so it works."""
    target.client().flushall()
    src, dst = source.client(), target.client()
    ident = identify(dst)
    src.set("bench:probe", "x")
    version = int.from_bytes(src.dump("bench:probe")[-10:-8], "little")
    src.delete("bench:probe")
    stamp = None if accepts_rdb_version(ident.product, ident.version, version, ident.relaxed) else ident.rdb_version
    return plain_copy(src, dst, stamp=stamp)


def check(source: LocalServer, target: LocalServer, keys: int) -> None:
    dst, src = target.client(), source.client()
    assert dst.dbsize() == keys, (dst.dbsize(), keys)
    for i in range(0, keys, max(1, keys // 50)):
        assert dst.get(f"key:{i}") == src.get(f"key:{i}"), i


def bench_pair(source_name: str, target_name: str, keys: int, tmp: Path) -> dict[str, object]:
    args = ("--enable-debug-command", "yes") if not source_name.startswith("redis-6") else ()
    source, target = start_server(source_name, args), start_server(target_name)
    try:
        quarter = keys // 4
        populate(source, quarter)
        small = ours(source, target, tmp)
        check(source, target, quarter)
        populate(source, keys)  # DEBUG POPULATE keeps existing keys: key:0 .. key:KEYS-1
        big = ours(source, target, tmp)
        check(source, target, keys)
        no_probe = ours(source, target, tmp, "0")
        check(source, target, keys)
        migrate_note = ""
        try:
            migrate_s = migrate_baseline(source, target)
            check(source, target, keys)
        except redis.ResponseError as exc:  # MIGRATE cannot cross RDB versions: time it into the source's own kind
            migrate_note = f"MIGRATE into {target_name} fails ({' '.join(str(exc).split())}); timed into another " \
                           f"{source_name} instead"
            twin = start_server(source_name)
            try:
                migrate_s = migrate_baseline(source, twin)
                check(source, twin, keys)
            finally:
                twin.cleanup()
        loop_s = plain_loop(source, target)
        check(source, target, keys)
        return {"pair": f"{source_name} -> {target_name}",
                "versions": f"{source.binary.version} -> {target.binary.version}", "keys": keys, "ours": big,
                "ours_no_probe": no_probe, "ours_quarter": small, "quarter": quarter, "migrate_s": migrate_s,
                "migrate_note": migrate_note, "loop_s": loop_s}
    finally:
        source.cleanup()
        target.cleanup()


def lines(result: dict[str, object]) -> list[str]:
    keys = int(result["keys"])  # type: ignore[call-overload]
    ours_r: dict[str, float] = result["ours"]  # type: ignore[assignment]
    small: dict[str, float] = result["ours_quarter"]  # type: ignore[assignment]
    no_probe: dict[str, float] = result["ours_no_probe"]  # type: ignore[assignment]
    migrate_s, loop_s = float(result["migrate_s"]), float(result["loop_s"])  # type: ignore[arg-type]
    rate = keys / ours_r["seconds"]
    return [
        f"- {result['pair']} ({result['versions']}), {keys:,} keys of 100 bytes; conversion paths: {ours_r['paths']}",
        f"  - ours (replay, default options: size probe on): {ours_r['seconds']:.2f} s, {rate:,.0f} keys/s: "
        f"{migrate_s / ours_r['seconds']:.2f}x MIGRATE, {loop_s / ours_r['seconds']:.2f}x the plain loop",
        f"  - ours with --big-key-threshold 0 (no size probe): {no_probe['seconds']:.2f} s, "
        f"{keys / no_probe['seconds']:,.0f} keys/s: {migrate_s / no_probe['seconds']:.2f}x MIGRATE",
        f"  - baseline MIGRATE COPY REPLACE KEYS x1000: {migrate_s:.2f} s, {keys / migrate_s:,.0f} keys/s"
        f"{_note(result)}",
        f"  - baseline plain redis-py SCAN/DUMP/RESTORE loop (restamping when needed): {loop_s:.2f} s, "
        f"{keys / loop_s:,.0f} keys/s",
        f"  - peak RSS of our process: {small['rss_mib']:.0f} MiB at {int(result['quarter']):,} keys "  # type: ignore[call-overload]
        f"({int(result['quarter']) / small['seconds']:,.0f} keys/s), {ours_r['rss_mib']:.0f} MiB at {keys:,} keys",  # type: ignore[call-overload]
    ]


def _note(result: dict[str, object]) -> str:
    return f"; {result['migrate_note']}" if result["migrate_note"] else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--pairs", default="redis-7.0:valkey-8.1,redis-8.0.2:valkey-8.1")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    load = os.getloadavg()[0]
    results = [bench_pair(*pair.split(":"), args.keys, tmp) for pair in args.pairs.split(",")]
    body = [line for result in results for line in lines(result)]
    print("\n".join(body))
    if args.no_append:
        return
    header = [
        "", "## migrate run: live replay vs MIGRATE vs plain redis-py loop (bench/run.py)", "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `.venv/bin/python bench/run.py {args.keys}`. "
        f"Python {platform.python_version()}, both servers local on this {os.cpu_count()}-core machine, shared with "
        f"other work (load average {load:.2f} at the start: timings are noisy; ratios are from the same run).",
    ]
    with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(header + body) + "\n")


if __name__ == "__main__":
    main()
