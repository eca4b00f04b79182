"""The replication library's speed against the servers' own, in one run: prints the numbers (no file is written).

    .venv/bin/python bench/replication.py [KEYS] [--primaries redis-8.0.6,valkey-8.1] [--commands N]

For each primary (started with --repl-diskless-sync-delay 0 and DEBUG POPULATE KEYS keys of 100 bytes):
- full sync, ours: ReplicaLink from the PSYNC to the last RDB byte, (a) read from memory and thrown away, (b) spooled
  to a file (LinkOptions(snapshot_path=)); bytes/s over the RDB size;
- full sync, native: a replica server of the same version, from REPLICAOF to master_link_status:up (it also loads);
- the default repl-diskless-sync-delay: the wait between our PSYNC and +FULLRESYNC on a primary left at its default;
- the stream: `*-benchmark -t set,incr,lpush -P 16` writes N commands while a ReplicaLink parses them live
  (commands/s as produced), then the same stream spooled to disk is parsed at full speed (commands/s of the parser).
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.config import parse_endpoint  # noqa: E402
from migrate.replication import LinkOptions, ReplicaLink  # noqa: E402

FAST = ("--repl-diskless-sync-delay", "0")


def populate(server: LocalServer, keys: int) -> None:
    server.client().execute_command("DEBUG", "POPULATE", keys, "key", 100)


def ours(server: LocalServer, spool: Path | None) -> tuple[float, int]:
    options = LinkOptions(snapshot_path=spool) if spool else LinkOptions()
    began = time.perf_counter()
    with ReplicaLink(parse_endpoint(server.url), options=options) as link:
        if spool:
            size = link.wait_snapshot(600).size
        else:
            size = 0
            with link.snapshot() as rdb:
                while chunk := rdb.read(1 << 20):
                    size += len(chunk)
        return time.perf_counter() - began, size


def native(primary: LocalServer) -> float:
    with start_server(primary.name) as replica:
        client = replica.client()
        began = time.perf_counter()
        client.execute_command("REPLICAOF", "127.0.0.1", primary.port)
        while client.info("replication").get("master_link_status") != "up":
            time.sleep(0.005)
        seconds = time.perf_counter() - began
        assert client.dbsize() == primary.client().dbsize()
        return seconds


def default_delay(name: str) -> float:
    with start_server(name) as server:
        server.client().set("k", "v")
        with ReplicaLink(parse_endpoint(server.url)) as link:
            return link.sync.waited


def benchmark_tool(server: LocalServer, folder: Path) -> Path:
    """The server's *-benchmark, run through the same loader as its provisioned *-cli wrapper."""
    wrapper = Path(server.binary.cli).read_text()
    tool = folder / "benchmark"
    tool.write_text(wrapper.replace('-cli" "$@"', '-benchmark" "$@"'))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def stream(server: LocalServer, commands: int, folder: Path) -> tuple[float, float, int]:
    tool = benchmark_tool(server, folder)
    client = server.client()
    options = LinkOptions(spool_dir=folder / "spool")
    with ReplicaLink(parse_endpoint(server.url), options=options) as link:
        link.snapshot().read()
        offset = link.sync.offset
        per_test = commands // 3
        began = time.perf_counter()
        bench = subprocess.Popen([str(tool), "-p", str(server.port), "-t", "set,incr,lpush", "-n", str(per_test),
                                  "-P", "16", "-q", "-r", "100000"], stdout=subprocess.DEVNULL)
        parsed = 0
        while bench.poll() is None or link.position.offset < int(client.info("replication")["master_repl_offset"]):
            parsed += len(link.read_commands(10_000, timeout=0.2))
        live = time.perf_counter() - began
        end = link.position.offset
    # The same stream again, spooled whole first, then parsed as fast as the parser goes.
    with ReplicaLink(parse_endpoint(server.url), replid=link.sync.replid, offset=offset, options=options) as again:
        while again.received < end:
            time.sleep(0.05)
        began, count = time.perf_counter(), 0
        while again.position.offset < end:
            count += len(again.read_commands(10_000, timeout=1))
        parse = time.perf_counter() - began
    return parsed / live, count / parse, parsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--primaries", default="redis-8.0.6,valkey-8.1")
    parser.add_argument("--commands", type=int, default=600_000)
    args = parser.parse_args()
    for name in args.primaries.split(","):
        print(f"== {name}: {args.keys} keys of 100 bytes")
        with tempfile.TemporaryDirectory() as tmp, \
                start_server(name, (*FAST, "--enable-debug-command", "yes", "--repl-backlog-size", "256mb")) as primary:
            folder = Path(tmp)
            populate(primary, args.keys)
            memory_s, size = ours(primary, None)
            spool_s, _ = ours(primary, folder / "snapshot.rdb")
            native_s = native(primary)
            mb = size / 1e6
            print(f"RDB {mb:.1f} MB")
            for what, seconds in (("ours, memory", memory_s), ("ours, spooled to a file", spool_s),
                                  ("native replica (incl. its load)", native_s)):
                print(f"  full sync {what}: {seconds:.2f} s, {mb / seconds:.0f} MB/s")
            os.remove(folder / "snapshot.rdb")
            primary.client().execute_command("FLUSHALL")
            live, parse, count = stream(primary, args.commands, folder)
            print(f"  stream under {name.split('-')[0]}-benchmark (-P 16, set/incr/lpush): {count} commands, "
                  f"live {live:,.0f} commands/s; parser alone from the spool: {parse:,.0f} commands/s")
        print(f"  default repl-diskless-sync-delay: +FULLRESYNC after {default_delay(name):.2f} s")


if __name__ == "__main__":
    main()
