"""`migrate run --strategy sync` applying one recorded write stream into a standalone target (the baseline: one
MULTI/EXEC per batch with one marker) and into a cluster target (one MULTI/EXEC per slot and batch, each with its
slot's marker, then the floor marker), in the same run: prints the numbers (no file is written).

    .venv/bin/python bench/sync_cluster.py [--commands N] [--shards 3] [--rounds 3]

Set-up: a standalone source (repl-diskless-sync-delay 0, no output-buffer limit for replicas), a standalone target
and a cluster target of --shards primaries (Valkey 8.1), and two `migrate run --strategy sync` processes, one into
each, both caught up. Each round: both syncs are frozen (SIGSTOP) while bench/sync_apply.py's burst of N writes lands
on the source; then they are released ONE AFTER THE OTHER (two cores: two at once would time each other), and each
is timed until its marker (the cluster's floor) reaches the source's final offset. The order alternates by round.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.cluster import RedisCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync_apply import SOURCE_ARGS, burst, offset, wait_until  # noqa: E402
from fixtures.cluster import ClusterSpec, running_cluster  # noqa: E402
from fixtures.sandbox import start_server  # noqa: E402
from migrate.stream import marker_key  # noqa: E402


def floor(client: object) -> int:
    value = client.get(marker_key("sync"))  # type: ignore[attr-defined]
    return int(value.split()[1].split(b"=")[1]) if value else -1


def start_sync(source_url: str, target_url: str, folder: Path) -> subprocess.Popen[bytes]:
    folder.mkdir()
    args = [sys.executable, "-m", "migrate", "--log-level", "warning", "run", "--strategy", "sync", "--source",
            source_url, "--target", target_url, "--checkpoint", str(folder / "cp.json"), "--spool-dir", str(folder),
            "--status-file", str(folder / "status.json"), "--no-progress"]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", default="redis-7.0")
    parser.add_argument("--target", default="valkey-8.1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_server(args.source, SOURCE_ARGS) as source, \
            start_server(args.target) as single, \
            running_cluster(ClusterSpec(args.target, shards=args.shards), Path(tmp) / "cluster") as cluster:
        into_single = start_sync(source.url, single.url, Path(tmp) / "single")
        into_cluster = start_sync(source.url, cluster.url(), Path(tmp) / "cluster-sync")
        sides = {"standalone": (into_single, single.client()),
                 "cluster": (into_cluster, RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port))}
        try:
            for name, (process, client) in sides.items():
                while floor(client) < 0:
                    assert process.poll() is None, f"{name}: {process.stderr.read() if process.stderr else ''}"
                    time.sleep(0.05)
            print(f"source {args.source}, targets {args.target} standalone and a {args.shards}-shard cluster, "
                  f"{args.commands:,} commands per burst")
            for n in range(args.rounds):
                for process, _ in sides.values():
                    os.kill(process.pid, signal.SIGSTOP)
                burst(source, args.commands, f"r{n}")
                goal = offset(source.client())
                took = {}
                order = list(sides) if n % 2 == 0 else list(reversed(sides))
                for name in order:
                    process, client = sides[name]
                    os.kill(process.pid, signal.SIGCONT)
                    took[name] = wait_until(lambda c=client: floor(c), goal)
                rates = {name: args.commands / seconds for name, seconds in took.items()}
                print(f"round {n + 1} (released first: {order[0]}): standalone {took['standalone']:.2f} s "
                      f"({rates['standalone']:,.0f} commands/s), cluster {took['cluster']:.2f} s "
                      f"({rates['cluster']:,.0f} commands/s), cluster / standalone "
                      f"{rates['cluster'] / rates['standalone']:.2f}x")
        finally:
            for process, _ in sides.values():
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
