"""`migrate run --strategy sync` (or relay) applying a source's write stream, against a native replica of the
source's own version applying the same stream, in the same run: prints the numbers (no file is written).

    .venv/bin/python bench/sync_apply.py [--commands N] [--source redis-7.0] [--target valkey-8.1] [--rounds 3]
    .venv/bin/python bench/sync_apply.py --strategy relay     # the relay forwarding the stream to its replica

With --strategy relay the target is a replica of migrate: "applied" is the moment the target holds the key the
burst writes last (`<tag>:end`, after every client's writes: the stream is applied in order).

Set-up: a source (repl-diskless-sync-delay 0, no output-buffer limit for replicas), a native replica of the same
binary (REPLICAOF), and `migrate run --strategy sync` in its own process into the target; both caught up.

1. Sustained apply rate of a recorded stream: the replica and the sync process are frozen with SIGSTOP while a burst
   of N writes (SET, INCR, RPUSH, HSET, ZADD, SET EX; 8 pipelined clients) lands on the source, which buffers the
   stream for both; both are released at the same moment and timed until they have applied the source's final offset
   (the replica's master_repl_offset, the target's marker). Rate = commands / catch-up time. (Until 2026-12-07 the
   replica was frozen with DEBUG SLEEP, which ended before a burst slower than 100,000 commands/s did.)
2. Catch-up after a load burst: nobody is frozen; the same burst is written as fast as the source takes it; the time
   from the end of the burst until each side has applied the source's final offset.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.stream import marker_key  # noqa: E402

SOURCE_ARGS = ("--repl-diskless-sync-delay", "0", "--client-output-buffer-limit", "replica", "0", "0", "0")
CLIENTS = 8


def burst(server: LocalServer, commands: int, tag: str) -> float:
    """N commands from CLIENTS threads, pipelined by 500; the seconds it took."""
    per = commands // CLIENTS

    def write(worker: int) -> None:
        client = server.client()
        pipe = client.pipeline(transaction=False)
        for i in range(per):
            kind = i % 6
            key = f"{tag}:{worker}:{i % 5000}"
            if kind == 0:
                pipe.set(key, "v" * 40)
            elif kind == 1:
                pipe.incr(f"{tag}:cnt:{worker}")
            elif kind == 2:
                pipe.rpush(f"{tag}:list:{worker}:{i % 100}", i)
            elif kind == 3:
                pipe.hset(f"{tag}:hash:{worker}:{i % 100}", f"f{i % 50}", i)
            elif kind == 4:
                pipe.zadd(f"{tag}:zset:{worker}:{i % 100}", {f"m{i % 50}": i})
            else:
                pipe.set(key + ":ttl", "v", ex=3600)
            if i % 500 == 499:
                pipe.execute()
        pipe.execute()
        client.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def offset(client: redis.Redis) -> int:
    return int(client.info("replication")["master_repl_offset"])


def marker_offset(target: redis.Redis) -> int:
    value = target.get(marker_key("sync"))
    return int(value.split()[1].split(b"=")[1]) if value else -1


def wait_until(check, goal: int, timeout: float = 600.0) -> float:
    began = time.perf_counter()
    while check() < goal:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"not caught up within {timeout} s")
        time.sleep(0.005)
    return time.perf_counter() - began


def start_sync(source: LocalServer, target: LocalServer, folder: Path,
               strategy: str = "sync") -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "migrate", "--log-level", "warning", "run", "--strategy", strategy, "--source",
            source.url, "--target", target.url, "--checkpoint", str(folder / "cp.json"), "--spool-dir", str(folder),
            "--status-file", str(folder / "status.json"), "--no-progress"]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frozen_round(source: LocalServer, native: LocalServer, replica: redis.Redis, target: redis.Redis,
                 sync: subprocess.Popen[bytes], commands: int, tag: str) -> tuple[float, float, int]:
    os.kill(_pid(native), signal.SIGSTOP)
    os.kill(sync.pid, signal.SIGSTOP)
    try:
        burst(source, commands, tag)
        source.client().set(f"{tag}:end", 1)
        goal = offset(source.client())
    finally:  # both released at the same moment
        os.kill(_pid(native), signal.SIGCONT)
        os.kill(sync.pid, signal.SIGCONT)
    results: dict[str, float] = {}
    timer = threading.Thread(target=lambda: results.__setitem__("native", wait_until(lambda: offset(replica), goal)))
    timer.start()
    ours = wait_until(applied(target, tag), goal)
    timer.join()
    return ours, results["native"], goal


def live_round(source: LocalServer, replica: redis.Redis, target: redis.Redis, commands: int,
               tag: str) -> tuple[float, float, float]:
    took = burst(source, commands, tag)
    source.client().set(f"{tag}:end", 1)
    goal = offset(source.client())
    results: dict[str, float] = {}
    timer = threading.Thread(target=lambda: results.__setitem__("native", wait_until(lambda: offset(replica), goal)))
    timer.start()
    ours = wait_until(applied(target, tag), goal)
    timer.join()
    return took, ours, results["native"]


def _pid(server: LocalServer) -> int:
    assert server.process is not None
    return server.process.pid


STRATEGY = ["sync"]  # set by main()


def applied(target: redis.Redis, tag: str):  # type: ignore[no-untyped-def]
    """What to wait for on the target: the sync's marker offset, or (relay) the burst's last key, as an offset."""
    if STRATEGY[0] == "sync":
        return lambda: marker_offset(target)
    return lambda: (1 << 62) if target.exists(f"{tag}:end") else -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=400_000)
    parser.add_argument("--source", default="redis-7.0")
    parser.add_argument("--target", default="valkey-8.1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strategy", choices=("sync", "relay"), default="sync")
    args = parser.parse_args()
    STRATEGY[0] = args.strategy
    with tempfile.TemporaryDirectory() as tmp, start_server(args.source, SOURCE_ARGS) as source, \
            start_server(args.source) as native, \
            start_server(args.target) as target:
        replica, tgt = native.client(), target.client()
        replica.execute_command("REPLICAOF", "127.0.0.1", source.port)
        sync = start_sync(source, target, Path(tmp), args.strategy)
        ready = (lambda: marker_offset(tgt) >= 0) if args.strategy == "sync" else (
            lambda: tgt.info("replication").get("master_link_status") == "up")
        try:
            while replica.info("replication").get("master_link_status") != "up" or not ready():
                assert sync.poll() is None, sync.stderr.read() if sync.stderr else ""
                time.sleep(0.05)
            print(f"source {args.source}, native replica {args.source}, {args.strategy} target {args.target}, "
                  f"{args.commands:,} commands per burst, {CLIENTS} pipelined clients")
            pids = {"migrate": sync.pid, "target": _pid(target), "native": _pid(native)}
            for n in range(args.rounds):
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                ours, theirs, goal = frozen_round(source, native, replica, tgt, sync, args.commands, f"f{n}")
                cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
                print(f"recorded stream, round {n + 1}: ours {ours:.2f} s ({args.commands / ours:,.0f} commands/s), "
                      f"native replica {theirs:.2f} s ({args.commands / theirs:,.0f} commands/s), "
                      f"ratio {theirs / ours:.2f}x (stream end offset {goal:,}); CPU seconds in the round: migrate "
                      f"{cpu['migrate']:.2f}, its target {cpu['target']:.2f}, native replica {cpu['native']:.2f}")
            for n in range(args.rounds):
                took, ours, theirs = live_round(source, replica, tgt, args.commands, f"l{n}")
                print(f"live burst, round {n + 1}: burst {took:.2f} s ({args.commands / took:,.0f} commands/s); "
                      f"caught up after its end: ours {ours:.2f} s, native replica {theirs:.2f} s")
        finally:
            os.kill(sync.pid, signal.SIGCONT)
            sync.terminate()
            sync.wait(30)


if __name__ == "__main__":
    main()
