"""`migrate run --strategy reload` from a cluster: the primaries' snapshots loaded one after the other (--workers 1,
the baseline) against several at once in worker processes (--workers 2, 3), in the same run, alternating.

    .venv/bin/python bench/cluster_reload.py [KEYS] [--shards 3] [--target-shards 2] [--repeats 3]

KEYS keys of 100 bytes (key:N) are written into a Redis 7.0 cluster of --shards primaries, each on the primary owning
its slot. Every reload runs `migrate.run.run()` in a child process (spooled snapshots, checked, flush, load into a
Valkey 8.1 cluster of --target-shards primaries) and is checked by key count. Reported per worker count: the best
whole-run time (process start-up, snapshots, checks and flush included), keys/s, its ratio to --workers 1, and the
peak memory of the coordinator and of the largest worker (from the workers' log lines). Best of --repeats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster_run import fill_cluster  # noqa: E402
from fixtures.cluster import ClusterSpec, start_cluster  # noqa: E402

SOURCE, TARGET = "redis-7.0", "valkey-8.1"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from migrate.config import CommonConfig, parse_endpoint
from migrate.run import RunConfig, RunOptions, Strategy, run
source, target, spool, workers = sys.argv[1:5]
options = RunOptions(strategy=Strategy.RELOAD, yes=True, progress=False, spool_dir=Path(spool), workers=int(workers))
began = time.perf_counter()
result = run(RunConfig(CommonConfig(parse_endpoint(source), parse_endpoint(target)), options))
seconds = time.perf_counter() - began
print(json.dumps({"copied": result.copied, "seconds": seconds, "notes": list(result.notes),
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def reload(source_url: str, target_url: str, spool: Path, workers: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, source_url, target_url, str(spool), str(workers)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    outcome = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    # the workers are the fork server's children, not ours: their peak memory is in their log lines
    outcome["workers_rss_kib"] = max(map(int, re.findall(r"peak_rss_kib=(\d+)", done.stderr)), default=0)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="?", type=int, default=300_000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--target-shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    counts = list(range(1, args.shards + 1))
    with tempfile.TemporaryDirectory() as tmp:
        source = start_cluster(ClusterSpec(SOURCE, args.shards), Path(tmp) / "source")
        target = start_cluster(ClusterSpec(TARGET, args.target_shards), Path(tmp) / "target")
        try:
            fill_cluster(source, args.keys)
            runs: dict[int, list[dict[str, object]]] = {n: [] for n in counts}
            for _ in range(args.repeats):
                for n in counts:  # alternating: the machine's load drifts alike for every worker count
                    outcome = reload(source.url(), target.url(), Path(tmp), n)
                    if outcome["copied"] != args.keys:
                        raise RuntimeError(f"copied {outcome['copied']} of {args.keys}")
                    runs[n].append(outcome)
        finally:
            source.stop()
            target.stop()
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[int, list[dict[str, object]]]) -> None:
    best = {n: min(float(r["seconds"]) for r in rs) for n, rs in runs.items()}  # type: ignore[arg-type]
    print(f"reload {SOURCE} {args.shards} shards -> {TARGET} {args.target_shards} shards, {args.keys:,} keys of "
          f"100 bytes, best of {args.repeats} ({datetime.date.today()}, Python {platform.python_version()})")
    print("| workers | best (s) | every run (s) | keys/s | vs 1 worker | coordinator / worker peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for n, rs in runs.items():
        every = ", ".join(f"{float(r['seconds']):.2f}" for r in rs)  # type: ignore[arg-type]
        rss = max(int(r["rss_kib"]) for r in rs) / 1024  # type: ignore[call-overload]
        workers_rss = max(int(r["workers_rss_kib"]) for r in rs) / 1024  # type: ignore[call-overload]
        print(f"| {n} | {best[n]:.2f} | {every} | {args.keys / best[n]:,.0f} | {best[1] / best[n]:.2f}x | "
              f"{rss:.0f} / {workers_rss if n > 1 else 0:.0f} |")


if __name__ == "__main__":
    main()
