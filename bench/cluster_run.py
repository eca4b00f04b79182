"""Sharded `migrate run` throughput: Redis 7.0 clusters of 1, 2 and 3 shards into Valkey 8.1 clusters of as many
shards, one worker process per shard, against the standalone replay (Redis 7.0 -> Valkey 8.1, one server each) in
the same run; and each worker's peak memory at KEYS/4 and KEYS keys (flat = bounded by batches, not by key count).

    .venv/bin/python bench/cluster_run.py [KEYS] [--repeats N] [--no-append]

KEYS keys of 100 bytes (key:N) are written into each source, on the primary owning each key's slot. Every copy runs
`migrate.run.run()` in a child process (default options, --workers = shards) and is checked by key count. Reported:
the whole run's keys/s (process start-up and topology reads included), each shard's own keys/s (its unit's copy time,
in its worker), and the ratio of that per-shard figure to the standalone replay's keys/s. Best of --repeats passes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.cluster import ClusterSpec, LocalCluster, start_cluster  # noqa: E402
from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.rdb.rewrite import key_slot  # noqa: E402

SOURCE, TARGET = "redis-7.0", "valkey-8.1"
VALUE = b"v" * 100

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from migrate.config import CommonConfig, parse_endpoint
from migrate.run import RunConfig, RunOptions, run
source, target, checkpoint, workers = sys.argv[1:5]
options = RunOptions(checkpoint=Path(checkpoint), workers=int(workers))
began = time.perf_counter()
result = run(RunConfig(CommonConfig(parse_endpoint(source), parse_endpoint(target)), options))
seconds = time.perf_counter() - began
own = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"copied": result.copied, "seconds": seconds,
                  "shards": [{"keys": s.keys, "seconds": s.seconds, "rss_kib": s.peak_rss_kib, "cpu": s.cpu_seconds}
                             for s in result.shards],
                  "workers": len({s.node for s in result.shards}),
                  "rss_kib": own.ru_maxrss,
                  "coordinator_cpu": own.ru_utime + own.ru_stime}))
"""


def fill_cluster(cluster: LocalCluster, keys: int) -> None:
    owners = {}
    for node in cluster.primaries:
        for start, end in cluster.slot_ranges(node):
            owners.update(dict.fromkeys(range(start, end + 1), node))
    pipes = {node.node_id: node.client().pipeline(transaction=False) for node in cluster.primaries}
    for i in range(keys):
        key = b"key:%d" % i
        pipes[owners[key_slot(key)].node_id].set(key, VALUE)
        if i % 10_000 == 9_999:
            for pipe in pipes.values():
                pipe.execute()
    for pipe in pipes.values():
        pipe.execute()


def fill_server(server: LocalServer, keys: int) -> None:
    client = server.client()
    client.execute_command("DEBUG", "POPULATE", keys, "key", 100)


def server_cpu(nodes: list[LocalServer]) -> float:
    """CPU seconds the servers used so far (INFO cpu, user + system)."""
    total = 0.0
    for node in nodes:
        info = node.client().info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def nodes_of(side: LocalCluster | LocalServer) -> list[LocalServer]:
    return [n.server for n in side.nodes] if isinstance(side, LocalCluster) else [side]


def copy(source_url: str, target_url: str, tmp: Path, workers: int) -> dict[str, object]:
    checkpoint = tmp / f"cp-{os.getpid()}-{workers}.json"
    done = subprocess.run([sys.executable, "-c", CHILD, source_url, target_url, str(checkpoint), str(workers)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def flush(target: LocalCluster | LocalServer) -> None:
    if isinstance(target, LocalCluster):
        target.flushall()
    else:
        target.client().flushall()


def best(source: LocalCluster | LocalServer, target: LocalCluster | LocalServer, tmp: Path, workers: int,
         repeats: int, keys: int) -> dict[str, object]:
    runs = []
    source_url = source.url() if isinstance(source, LocalCluster) else source.url
    target_url = target.url() if isinstance(target, LocalCluster) else target.url
    for _ in range(repeats):
        flush(target)
        before = (server_cpu(nodes_of(source)), server_cpu(nodes_of(target)))
        outcome = copy(source_url, target_url, tmp, workers)
        if outcome["copied"] != keys:
            raise RuntimeError(f"copied {outcome['copied']} of {keys}")
        # CPU microseconds per key: the source servers, the target servers, migrate (the coordinator process, which
        # runs the units itself with one worker, plus each worker process's CPU during its units)
        workers_cpu = 0.0 if workers <= 1 else sum(s["cpu"] for s in outcome["shards"])  # type: ignore[union-attr]
        outcome["cpu_us"] = ((server_cpu(nodes_of(source)) - before[0]) / keys * 1e6,
                             (server_cpu(nodes_of(target)) - before[1]) / keys * 1e6,
                             (float(outcome["coordinator_cpu"]) + workers_cpu) / keys * 1e6)  # type: ignore[arg-type]
        runs.append(outcome)
    return min(runs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]


def per_shard(outcome: dict[str, object]) -> list[float]:
    shards = outcome["shards"]
    assert isinstance(shards, list)
    return [s["keys"] / s["seconds"] for s in shards if s["seconds"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="?", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-cluster-run-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows, memory = [], []
    source, target = start_server(SOURCE, ("--enable-debug-command", "yes")), start_server(TARGET)
    try:
        fill_server(source, args.keys)
        base = best(source, target, tmp, 1, args.repeats, args.keys)
        baseline = args.keys / float(base["seconds"])  # type: ignore[arg-type]
        rows.append(("standalone -> standalone (baseline)", 1, 1, baseline, [baseline], 1.0, base["cpu_us"]))
    finally:
        source.stop()
        target.stop()
    for shards in (1, 2, 3):
        with start_cluster(ClusterSpec(SOURCE, shards)) as src, start_cluster(ClusterSpec(TARGET, shards)) as dst:
            for count in (args.keys // 4, args.keys):
                src.flushall()
                fill_cluster(src, count)
                # every shard count with one worker per shard; the 3 shards also with 1 and 2 workers
                for workers in sorted({shards, *((1, 2) if shards == 3 and count == args.keys else ())}):
                    outcome = best(src, dst, tmp, workers, args.repeats if count == args.keys else 1, count)
                    rss = [s["rss_kib"] / 1024 for s in outcome["shards"]]  # type: ignore[union-attr]
                    if workers == shards:
                        peak = float(outcome["rss_kib"]) / 1024  # type: ignore[arg-type]
                        memory.append((shards, count, max(rss), peak))
                    if count == args.keys:
                        speeds = per_shard(outcome)
                        total = count / float(outcome["seconds"])  # type: ignore[arg-type]
                        rows.append((f"{shards}-shard -> {shards}-shard cluster", shards, workers, total, speeds,
                                     min(speeds) / baseline, outcome["cpu_us"]))
    text = report(args.keys, rows, memory)
    print(text)
    if not args.no_append:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write("\n" + text)


def report(keys: int, rows: list[tuple[str, int, int, float, list[float], float, Any]],
           memory: list[tuple[int, int, float, float]]) -> str:
    lines = [f"## migrate run on clusters: shards and workers vs the standalone replay (bench/cluster_run.py) "
             f"({datetime.date.today()})", "",
             f"Command: `.venv/bin/python bench/cluster_run.py {keys}`. {keys:,} keys of 100 bytes, {SOURCE} -> "
             f"{TARGET}, one worker process per shard (`--workers` = shards), default options; best of the passes. "
             f"Python {platform.python_version()}, {os.cpu_count()} CPUs shared with other sessions; every server "
             "and worker on this machine.", "",
             "| copy | source shards | workers | whole run keys/s | per-shard keys/s (each shard's own copy time) | "
             "slowest shard / standalone | CPU µs per key: source, target, migrate |", "|---|---|---|---|---|---|---|"]
    for name, shards, workers, total, speeds, ratio, cpu in rows:
        lines.append(f"| {name} | {shards} | {workers} | {total:,.0f} | {', '.join(f'{s:,.0f}' for s in speeds)} | "
                     f"{ratio:.2f}x | {', '.join(f'{c:.2f}' for c in cpu)} |")
    lines += ["", "Peak resident memory (MiB) of each worker process at KEYS/4 and KEYS keys:", "",
              "| shards | keys | largest worker peak | coordinator peak |", "|---|---|---|---|"]
    lines += [f"| {shards} | {count:,} | {worker:.0f} | {coordinator:.0f} |"
              for shards, count, worker, coordinator in memory]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
