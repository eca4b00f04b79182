"""The demo story on local servers, each verb through the real CLI exactly as an operator would type it:

1. a Redis 8.0 source with a realistic dataset (every type and encoding, TTLs, hash field TTLs, three databases) plus
   bulk keys -> an empty Valkey 8.1: identify, preflight, run (live replay with per-key conversion), verify;
2. the source's own RDB file (version 12, which Valkey 8 refuses) converted for Valkey 8.1, loaded by a Valkey 8.1
   at start-up, verified; then reloaded into a running Valkey 8.1 that loads it as migrate's replica, verified;
3. an online sync under live writes (an application thread writing to three databases, with MULTI/EXEC and expiries)
   into another Valkey 8.1, followed until `migrate cutover`, whose write pause is measured, then verified;
4. the same under `--strategy relay`: the Valkey 8.1 replicates from migrate (the snapshot transcoded, the stream
   translated); the application stops writing when the cutover begins, the writes the pause held are forwarded in
   the grace period, then the target is promoted;
5. a 3-shard Redis 7.0 cluster into a 2-shard Valkey 8.1 cluster: preflight, run, verify, reload, verify; then an
   online sync between the two clusters (one link per source primary, a marker per target slot) under live writes,
   its cutover pausing every primary, and verify.

    python scripts/demo.py [--keys N] [--only replay,convert,sync,relay,cluster]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from fixtures.cluster import ClusterSpec, running_cluster
from fixtures.dataset import populate
from fixtures.sandbox import LocalServer, load_manifest, start_server
from migrate.cli import run_cli

SOURCE, TARGET, CLUSTER_SOURCE = "redis-8.0.2", "valkey-8.1", "redis-7.0"
PARTS = ("replay", "convert", "sync", "relay", "cluster")


def step(title: str, args: list[str], expect: tuple[int, ...] = (0,)) -> int:
    print(f"\n=== {title}\n$ migrate {' '.join(args)}", flush=True)
    began = time.monotonic()
    code = run_cli(args)
    print(f"(exit code {code}, {time.monotonic() - began:.1f} s)", flush=True)
    if code not in expect:
        raise SystemExit(f"demo: step '{title}' exited {code}, expected {expect}")
    return code


def bulk(client: redis.Redis, keys: int, prefix: str = "bulk") -> None:
    """Application-like volume: strings of 100 bytes, written in pipelines."""
    for start in range(0, keys, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + 5000)):
            pipe.set(f"{prefix}:{i}", os.urandom(50).hex())
        pipe.execute()


def chapter(title: str) -> None:
    print(f"\n\n######## {title}", flush=True)


# -- 1. replay ---------------------------------------------------------------------------------------------------------


def replay_story(source: LocalServer, keys: int) -> None:
    chapter(f"1. {SOURCE} -> {TARGET}: preflight, live replay with per-key conversion, verify")
    with start_server(TARGET) as target:
        urls = ["--source", source.url, "--target", target.url]
        step("Who is who", ["identify", *urls])
        step("Preflight: what will break", ["preflight", *urls], expect=(0, 5))
        step("Run: live replay with per-key conversion", ["run", *urls, "--on-incompatible", "lossy", "--yes"],
             expect=(0, 5))
        step("Verify: parity, key by key", ["verify", *urls, "--level", "full"])


# -- 2. convert -------------------------------------------------------------------------------------------------------


def convert_story(source: LocalServer) -> None:
    chapter(f"2. {SOURCE}'s RDB file (version 12) converted for {TARGET}, loaded at start-up; reloaded as a replica")
    client = source.client()
    client.save()
    original = Path(client.config_get("dir")["dir"]) / client.config_get("dbfilename")["dbfilename"]
    folder = Path(tempfile.mkdtemp(prefix="migrate-demo-convert-"))
    converted = folder / "dump.rdb"
    step("Convert: the file rewritten for Valkey 8.1", ["convert", str(original), str(converted),
                                                        "--target-version", "valkey:8.1", "--on-incompatible",
                                                        "lossy"], expect=(0, 5))
    binary = load_manifest()[TARGET]
    with LocalServer(binary, ("--dbfilename", "dump.rdb"), workdir=folder).start() as loaded:
        print(f"demo: {TARGET} started on port {loaded.port} with the converted file: "
              f"{sum(loaded.client().info('keyspace').get(f'db{d}', {}).get('keys', 0) for d in range(16))} keys",
              flush=True)
        step("Verify: the server that loaded the file equals the source",
             ["verify", "--source", source.url, "--target", loaded.url, "--level", "full"])
    with start_server(TARGET) as target:
        step("Reload: the same file into a running Valkey 8.1, as migrate's replica (its own loader, no RESTORE)",
             ["run", "--strategy", "reload", "--from-rdb", str(original), "--target", target.url, "--load-via",
              "replication", "--on-incompatible", "lossy", "--yes"], expect=(0, 5))
        step("Verify: the reloaded server equals the source",
             ["verify", "--source", source.url, "--target", target.url, "--level", "full"])


# -- 3. online sync --------------------------------------------------------------------------------------------------


class Application(threading.Thread):
    """Writes like an application would: counters, a list, expiring sessions, a transaction, in three databases;
    it leaves the source (repoints) the moment the sync's status file says the cutover point is reached."""

    def __init__(self, clients: Callable[[], list[Any]], status: Path,
                 leave_at: tuple[str, ...] = ("grace", "done")) -> None:
        super().__init__(daemon=True)
        self.clients = clients
        self.status = status
        self.leave_at = leave_at
        self.stopping = threading.Event()
        self.writes = 0

    def cut_over(self) -> bool:
        try:
            return json.loads(self.status.read_text()).get("phase") in self.leave_at
        except (OSError, ValueError):
            return False

    def run(self) -> None:
        clients = self.clients()
        n = 0
        while not self.stopping.is_set() and not (n % 10 == 0 and self.cut_over()):
            n += 1
            c = clients[n % len(clients)]
            with c.pipeline(transaction=True) as tx:  # MULTI/EXEC: one unit on the target too (one slot: {live})
                tx.incr("{live}:counter")
                tx.rpush("{live}:log", n)
                tx.execute()
            c.set(f"live:session:{n % 100}", n, ex=600)
            c.hset("live:profile", f"f{n % 20}", n)
            self.writes += 4
            time.sleep(0.002)
        for c in clients:
            c.close()


@contextmanager
def background_sync(source_url: str, target_url: str, status: Path, strategy: str,
                    extra: tuple[str, ...]) -> Iterator[subprocess.Popen[str]]:
    args = ["run", "--strategy", strategy, "--source", source_url, "--target", target_url, "--status-file",
            str(status), "--checkpoint", str(status.with_suffix(".checkpoint.json")), "--on-incompatible", "lossy",
            "--no-diskless-sync", *extra, "--yes", "--no-progress"]
    what = "a replica of the source" if strategy == "sync" else "the source's replica and the target's primary"
    print(f"\n=== {strategy.capitalize()}: migrate as {what}, in another process\n$ migrate {' '.join(args)} &",
          flush=True)
    process = subprocess.Popen([sys.executable, "-m", "migrate", *args], text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def wait_streaming(status: Path, process: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the sync exited {process.returncode} before streaming")
        if status.exists():
            with open(status) as f:
                state = json.load(f)
            if state.get("phase") == "streaming":
                return state
        time.sleep(0.2)
    raise SystemExit("demo: the sync did not reach streaming in time")


def show_status(status: Path) -> None:
    with open(status) as f:
        state = json.load(f)
    shown = {k: state.get(k) for k in ("phase", "source_offset", "applied_offset", "lag_bytes", "lag_seconds",
                                       "resync")}
    print(f"status file: {json.dumps(shown)}", flush=True)


def sync_story(source: LocalServer, strategy: str = "sync", extra: tuple[str, ...] = (),
               leave_at: tuple[str, ...] = ("grace", "done")) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"migrate-demo-{strategy}-"))
    status = folder / f"{strategy}.json"
    with start_server(TARGET) as target:
        app = Application(lambda: [redis.Redis.from_url(source.url_for(db)) for db in (0, 1, 2)], status, leave_at)
        follow_and_cut_over(app, source.url, target.url, status, strategy, extra,
                            "Cutover: pause the source's writes, drain, release")
        step("Verify: every write made before the cutover is on the target",
             ["verify", "--source", source.url, "--target", target.url, "--level", "full"])


def follow_and_cut_over(app: Application, source_url: str, target_url: str, status: Path, strategy: str,
                        extra: tuple[str, ...], cutover_title: str) -> None:
    """The application writing, the sync following it in another process, then the cutover it asks for."""
    app.start()
    time.sleep(0.5)
    with background_sync(source_url, target_url, status, strategy, extra) as process:
        wait_streaming(status, process)
        for _ in range(3):  # the application keeps writing; the target follows
            time.sleep(1)
            show_status(status)
        code = step(cutover_title, ["cutover", "--status-file", str(status)])
        app.join(10)  # it left the source when the status file said so
        print(f"demo: the application wrote {app.writes:,} commands during the sync", flush=True)
        process.wait(120)
        print(f"(the sync exited {process.returncode})", flush=True)
        if process.returncode not in (0, 5) or code != 0:
            raise SystemExit(f"demo: the {strategy} did not finish cleanly")


# -- 4. clusters -----------------------------------------------------------------------------------------------------


def cluster_story(keys: int) -> None:
    chapter(f"5. A 3-shard {CLUSTER_SOURCE} cluster -> a 2-shard {TARGET} cluster (a different shape): copied, "
            "reloaded, then synced online")
    root = Path(tempfile.mkdtemp(prefix="migrate-demo-cluster-"))
    with running_cluster(ClusterSpec(CLUSTER_SOURCE, shards=3), root / "source") as source, \
            running_cluster(ClusterSpec(TARGET, shards=2), root / "target") as target:
        client = redis.RedisCluster.from_url(source.url())
        for start in range(0, keys, 2000):
            pipe = client.pipeline()
            for i in range(start, min(keys, start + 2000)):
                pipe.set(f"user:{i}", os.urandom(50).hex())
                if i % 10 == 0:
                    pipe.hset(f"cart:{{user:{i}}}", mapping={"item": i, "qty": i % 5})
            pipe.execute()
        client.close()
        print(f"demo: source cluster seed {source.url()}, target cluster seed {target.url()}", flush=True)
        urls = ["--source", source.url(), "--target", target.url()]
        step("Preflight of two clusters", ["preflight", *urls], expect=(0, 5))
        step("Run: one unit per source shard, every key routed to the target primary owning its slot",
             ["run", *urls, "--yes"])
        step("Verify across every node", ["verify", *urls, "--level", "full"])
        step("Reload instead: every primary's snapshot taken at once, checked, then loaded by worker processes",
             ["run", *urls, "--strategy", "reload", "--yes", "--spool-dir", str(root)])
        step("Verify the reload", ["verify", *urls])
        status = root / "sync.json"
        app = Application(lambda: [redis.RedisCluster.from_url(source.url())], status)
        follow_and_cut_over(app, source.url(), target.url(), status, "sync", ("--flush-target",),
                            "Cutover: pause the writes of every primary, drain every link, release them")
        step("Verify: the target cluster equals the source cluster, written to until the cutover",
             ["verify", *urls, "--level", "full"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=200_000, help="bulk keys added to the realistic dataset")
    parser.add_argument("--only", default=",".join(PARTS), help="chapters to run, comma-separated")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    began = time.monotonic()
    if parts & {"replay", "convert", "sync", "relay"}:
        with start_server(SOURCE) as source:
            data = populate(source.client())
            bulk(source.client(), args.keys)
            print(f"demo: {SOURCE} on port {source.port} holds {data.total + args.keys:,} keys in "
                  f"{len(data.keys)} databases ({len(data.field_ttl_keys)} hashes with field TTLs)", flush=True)
            if "replay" in parts:
                replay_story(source, args.keys)
            if "convert" in parts:
                convert_story(source)
            if "sync" in parts:
                chapter(f"3. Online sync under live writes: {SOURCE} -> {TARGET}, then a cutover of milliseconds")
                sync_story(source)
            if "relay" in parts:
                chapter(f"4. Relay under live writes: {TARGET} loads {SOURCE}'s data as a replica (transcoded "
                        "snapshot, translated stream); the application stops writing when the cutover begins (the "
                        "target is a read-only replica until it is promoted)")
                sync_story(source, "relay", leave_at=("cutover", "grace", "done"))
    if "cluster" in parts:
        cluster_story(args.keys // 2)
    print(f"\ndemo: done in {time.monotonic() - began:.0f} s; every server stopped", flush=True)


if __name__ == "__main__":
    main()
