"""Relay full sync against native replication, in the same run; the relay's peak memory at two dataset sizes.

    .venv/bin/python bench/relay.py                               # 1M x 100-byte strings, 250k mixed, 3 rounds
    .venv/bin/python bench/relay.py --strings 250000 --mixed 0    # smaller

Source: redis-8.0.6 with --repl-diskless-sync-delay 0 (so neither side waits the 5 s default), its dataset loaded
once per dataset (DEBUG POPULATE N key 100; the mixed dataset of bench/transcode.py: hashes, lists, sets, sorted
sets, streams with groups, field-TTL hashes, a tenth with expiries). Per round, interleaved (the machine is shared):
- native: a fresh redis-8.0.6 replica, from REPLICAOF to master_link_status:up (the RDB streamed, saved, loaded);
- relay: a fresh valkey-8.1 target, from the call of migrate.run.run(--strategy relay, --on-incompatible lossy) in
  this process to the target's master_link_status:up (source snapshot received and transcoded to the spool file,
  REPLICAOF, the relay's full sync streamed, loaded by the target); then a cutover ends it.
Both are timed by the same poll of the target's INFO (every 5 ms). Key counts are checked equal to the source's
(less the keys the transcoder names: field-TTL hashes are converted, none dropped here).
Memory: the relay as a CLI process (`migrate run --strategy relay --cutover auto`, it ends by itself), peak RSS from
os.wait4, at a quarter of the strings dataset and at all of it. Results are printed; RESULTS.md is written by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.transcode import load_mixed  # noqa: E402
from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.config import CommonConfig, parse_endpoint  # noqa: E402
from migrate.logs import configure  # noqa: E402
from migrate.run import OnIncompatible, RunConfig, RunOptions, Strategy, run  # noqa: E402
from migrate.run.sync.control import SyncControl  # noqa: E402

SOURCE, NATIVE, TARGET = "redis-8.0.6", "redis-8.0.6", "valkey-8.1"
FAST = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes", "--save", "")


def keys_of(server: LocalServer) -> int:
    return sum(int(v["keys"]) for k, v in server.client().info("keyspace").items() if k.startswith("db"))


def wait_up(server: LocalServer, began: float, timeout: float = 600) -> float:
    client = server.client(socket_timeout=30)
    while client.info("replication").get("master_link_status") != "up":
        if time.perf_counter() - began > timeout:
            raise SystemExit(f"{server.name} did not sync within {timeout} s")
        time.sleep(0.005)
    return time.perf_counter() - began


def native(source: LocalServer) -> float:
    with start_server(NATIVE) as replica:
        began = time.perf_counter()
        replica.client().execute_command("REPLICAOF", "127.0.0.1", source.port)
        seconds = wait_up(replica, began)
        assert keys_of(replica) == keys_of(source), (keys_of(replica), keys_of(source))
        return seconds


def relay(source: LocalServer, folder: Path) -> tuple[float, dict[str, Any]]:
    with start_server(TARGET) as target:
        options = RunOptions(strategy=Strategy.RELAY, checkpoint=folder / "cp.json", spool_dir=folder,
                             on_incompatible=OnIncompatible.LOSSY, cutover_grace=0.0, progress=False)
        config = RunConfig(CommonConfig(parse_endpoint(source.url), parse_endpoint(target.url)), options)
        control, outcome = SyncControl(), {}

        def job() -> None:
            try:
                outcome["result"] = run(config, control=control)
            except BaseException as exc:
                outcome["error"] = exc

        began = time.perf_counter()
        thread = threading.Thread(target=job, daemon=True)
        thread.start()
        seconds = wait_up(target, began)
        control.request_cutover()
        thread.join(600)
        if "error" in outcome:
            raise SystemExit(f"relay failed: {outcome['error']}")
        snapshot = outcome["result"].sync.relay.snapshot
        assert keys_of(target) == snapshot["keys_written"], (keys_of(target), snapshot)
        return seconds, snapshot


def relay_peak_rss(source: LocalServer, folder: Path) -> tuple[int, float]:
    """(peak RSS in KiB, wall seconds) of a whole relay run as its own process."""
    with start_server(TARGET) as target:
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "migrate", "--log-level", "warning", "run", "--strategy",
                                 "relay", "--source", source.url, "--target", target.url, "--cutover", "auto",
                                 "--cutover-grace", "0", "--on-incompatible", "lossy", "--checkpoint",
                                 str(folder / "cp.json"),
                                 "--spool-dir", str(folder), "--no-progress"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"relay CLI failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        return usage.ru_maxrss, time.perf_counter() - began


def measure(label: str, source: LocalServer, rounds: int, folder: Path) -> None:
    keys = keys_of(source)
    size = int(source.client().info("memory")["used_memory_dataset"])
    print(f"\n{label}: {keys:,} keys ({size / 2**20:.0f} MiB dataset on the source)")
    natives, relays = [], []
    snapshot: dict[str, Any] = {}
    for n in range(rounds):
        natives.append(native(source))
        seconds, snapshot = relay(source, folder)
        relays.append(seconds)
        print(f"  round {n + 1}: native {natives[-1]:.2f} s, relay {relays[-1]:.2f} s, "
              f"relay/native speed {natives[-1] / relays[-1]:.2f}x")
    nb, rb = min(natives), min(relays)
    median = sorted(natives)[rounds // 2] / sorted(relays)[rounds // 2]
    print(f"  best: native {nb:.2f} s ({keys / nb:,.0f} keys/s), relay {rb:.2f} s ({keys / rb:,.0f} keys/s): "
          f"relay speed {nb / rb:.2f}x native (goal >= 0.8x); medians {median:.2f}x")
    print(f"  relay snapshot: {snapshot.get('input_bytes', 0) / 2**20:.0f} MiB RDB in, "
          f"{snapshot.get('output_bytes', 0) / 2**20:.0f} MiB out, transcoded in {snapshot.get('seconds', 0):.2f} s, "
          f"passed through {snapshot.get('passed_through')}, converted {snapshot.get('converted')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strings", type=int, default=1_000_000)
    parser.add_argument("--mixed", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure(level="warning")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, source {SOURCE}, native replica {NATIVE}, "
          f"relay target {TARGET}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        folder = Path(tmp)
        if args.strings:
            with start_server(SOURCE, FAST) as source:
                for keys in (args.strings // 4, args.strings):
                    source.client().flushall()
                    source.client(socket_timeout=600).execute_command("DEBUG", "POPULATE", keys, "key", 100)
                    if keys == args.strings:
                        measure(f"strings ({keys:,} x 100 bytes)", source, args.rounds, folder)
                    rss, wall = relay_peak_rss(source, folder)
                    print(f"  relay CLI, {keys:,} keys: peak RSS {rss / 1024:.0f} MiB, whole run {wall:.2f} s")
        if args.mixed:
            with start_server(SOURCE, FAST) as source:
                load_mixed(source.client(socket_timeout=600), args.mixed)
                measure(f"mixed ({args.mixed:,} keys)", source, args.rounds, folder)
                rss, wall = relay_peak_rss(source, folder)
                print(f"  relay CLI, mixed: peak RSS {rss / 1024:.0f} MiB, whole run {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
