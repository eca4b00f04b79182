"""AOF read speed and memory: our reader and summary against a plain hiredis command count, and the server's own
load of the same directory, on an AOF written by a real server.

    .venv/bin/python bench/aof_read.py                    # 1M commands (written once, cached in bench/out/)
    .venv/bin/python bench/aof_read.py --commands 200000   # smaller

The AOF: redis-7.0 with appendonly yes, aof-use-rdb-preamble no, no rewrite, written through pipelines: SETs, HSETs
of 5 fields, RPUSHes of 8 items, SETs with expiries (PXAT in the file), a MULTI/EXEC block every 1000 commands, and
one 64 MB string (so peak memory shows the bound: one command, not the file). Each tool runs in its own subprocess,
so its peak RSS is its own.
- ours events: every AofReader event (argv tuples, offsets, databases, transactions held until EXEC);
- ours summary: summarize_aof();
- hiredis count: hiredis.Reader fed 1 MiB chunks, counting command names (what migrate/preflight/aof.py does: no
  offsets, no transactions, no torn-tail semantics);
- server load: redis-7.0 started on a copy of the directory, until it accepts connections.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fixtures.sandbox import LocalServer, load_manifest  # noqa: E402

OUT = REPO / "bench" / "out"
SERVER = "redis-7.0"

TOOLS = {
    "ours events": "from migrate.aof import AofReader\nn = sum(1 for _ in AofReader(PATH))\n",
    "ours summary": "from migrate.aof import summarize_aof\nn = summarize_aof(PATH).commands\n",
    "hiredis count": (
        "import hiredis, glob\nn = 0\nfor f in sorted(glob.glob(PATH + '/*.aof')):\n"
        "    r = hiredis.Reader()\n    with open(f, 'rb') as fh:\n        while chunk := fh.read(1 << 20):\n"
        "            r.feed(chunk)\n            while (x := r.gets()) is not False:\n                n += 1\n"),
}
MEASURE = ("import resource, sys, time\nsys.path.insert(0, {repo!r})\nPATH = {path!r}\nt = time.perf_counter()\n"
           "{body}print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")


def write_aof(commands: int, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    server = LocalServer(load_manifest()[SERVER], ("--appendonly", "yes", "--aof-use-rdb-preamble", "no",
                                                   "--auto-aof-rewrite-percentage", "0"), folder).start()
    try:
        client = server.client(socket_timeout=300)
        pipe = client.pipeline(transaction=False)
        for i in range(commands):
            kind = i % 10
            if kind < 5:
                pipe.set(f"s:{i}", f"value-{i}" * 8)
            elif kind < 7:
                pipe.hset(f"h:{i}", mapping={f"f{j}": f"v{j}" for j in range(5)})
            elif kind < 9:
                pipe.rpush(f"l:{i}", *range(8))
            else:
                pipe.set(f"t:{i}", i, px=10**12)
            if i % 1000 == 999:
                pipe.execute()
                tx = client.pipeline(transaction=True)
                tx.incr("tx:counter").set(f"tx:{i}", i).execute()
        pipe.execute()
        client.set("big", b"x" * (64 << 20))
    finally:
        server.stop()
    return folder / "appendonlydir"


def measure(name: str, path: Path) -> tuple[int, float, int]:
    code = MEASURE.format(repo=str(REPO), path=str(path), body=TOOLS[name])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def server_load(path: Path, work: Path) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(path, work / "appendonlydir")
    start = time.perf_counter()
    server = LocalServer(load_manifest()[SERVER], ("--appendonly", "yes"), work).start(timeout=600)
    elapsed = time.perf_counter() - start
    server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = OUT / f"aof-{args.commands}"
    path = folder / "appendonlydir"
    if not path.is_dir():
        path = write_aof(args.commands, folder)
    size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
    print(f"AOF: {path} ({size:.0f} MB)")
    print("| tool | commands | seconds | MB/s | commands/s | peak RSS MB |\n|---|---|---|---|---|---|")
    for name in TOOLS:
        n, seconds, rss = measure(name, path)
        print(f"| {name} | {n} | {seconds:.2f} | {size / seconds:.0f} | {n / seconds:,.0f} | {rss} |")
    print(f"| server load ({SERVER}) | | {server_load(path, OUT / 'aof-load'):.2f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
