"""Transcoder throughput: Redis 8.0 RDB 12 -> Valkey 8.1, against our own read-only summary pass of the same file.

    .venv/bin/python bench/transcode.py                  # 1M-key file, 250k-key file, mixed file (generated once)
    .venv/bin/python bench/transcode.py --mixed 100000   # a smaller mixed file

Files (generated once on a local redis-8.0.6 and SAVEd, cached in bench/out/):
- strings-N: DEBUG POPULATE N keys of 100-byte values (N = 250,000 and 1,000,000): the pass-through path;
- mixed-N: hashes, lists, sets, sorted sets (listpack and hashtable sizes), streams with consumer groups, and hashes
  with field TTLs (types 24/25, converted for Valkey 8.1 under policy lossy), a tenth of the keys with an expiry.
Each pass runs in its own interpreter (imports not timed), so its peak RSS (VmHWM) is its own:
- summarize: migrate.rdb.summary.summarize(file): the read-only structural pass, the speed reference;
- transcode: migrate.rdb.transcode.transcode(file, out, valkey:8.1, lossy): the file written, fsync'd and renamed.
Then Valkey 8.1 starts on the output: its own "DB loaded from disk" time. Also timed: the CRC64 of the output alone
(the cost a "zero checksum" mode could save). Results are printed; nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fixtures.sandbox import LocalServer, load_manifest  # noqa: E402

OUT = REPO / "bench" / "out"
SOURCE = "redis-8.0.6"
TARGET = "valkey-8.1"
MiB = 1024 * 1024


# -- input files ------------------------------------------------------------------------------------------------

def generate(label: str, keys: int) -> Path:
    path = OUT / f"transcode-{label}-{keys}.rdb"
    if path.exists():
        return path
    work = OUT / f"work-transcode-{label}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = LocalServer(load_manifest()[SOURCE], ("--maxmemory", "0", "--enable-debug-command", "yes"), work)
    server.start()
    try:
        client = server.client(socket_timeout=600)
        started = time.perf_counter()
        if label == "strings":
            client.execute_command("DEBUG", "POPULATE", keys, "key", 100)
        else:
            load_mixed(client, keys)
        client.save()
        print(f"{SOURCE}: {label} {client.dbsize()} keys loaded and saved in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        shutil.move(str(work / "dump.rdb"), path)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return path


def load_mixed(client, keys: int) -> None:  # type: ignore[no-untyped-def]
    """Ten kinds of keys in equal shares, written through pipelines."""
    pipe = client.pipeline(transaction=False)
    now_ms = int(time.time() * 1000)
    for i in range(keys):
        kind = i % 10
        if kind == 0:
            pipe.hset(f"h:{i}", mapping={f"f{j}": f"value-{i}-{j}" for j in range(10)})
        elif kind == 1:
            pipe.hset(f"hb:{i}", mapping={f"field-{j}": f"v{j}" for j in range(200)})  # hashtable encoding
        elif kind == 2:
            pipe.rpush(f"l:{i}", *[f"item-{i}-{j}" for j in range(12)])
        elif kind == 3:
            pipe.sadd(f"s:{i}", *[f"member-{j}" for j in range(12)])
        elif kind == 4:
            pipe.sadd(f"si:{i}", *range(i, i + 20))
        elif kind == 5:
            pipe.zadd(f"z:{i}", {f"m{j}": j * 1.5 for j in range(12)})
        elif kind == 6:
            pipe.zadd(f"zb:{i}", {f"member-{j}": j for j in range(200)})  # skiplist
        elif kind == 7:
            for j in range(5):
                pipe.xadd(f"x:{i}", {"n": j, "payload": "p" * 20})
            if i % 20 == 7:
                pipe.xgroup_create(f"x:{i}", "g", id="0")
                pipe.xreadgroup("g", "c1", {f"x:{i}": ">"}, count=2)
        elif kind == 8:  # field TTLs: HASH_LISTPACK_EX (25)
            pipe.hset(f"hfe:{i}", mapping={f"f{j}": f"v{j}" for j in range(8)})
            pipe.execute_command("HPEXPIREAT", f"hfe:{i}", now_ms + 86_400_000, "FIELDS", 2, "f0", "f1")
        else:
            pipe.set(f"str:{i}", f"value-{i}-" + "x" * 40)
        if i % 10 == 1:
            pipe.pexpire(f"hb:{i}", 86_400_000)
        if i % 500 == 499:
            pipe.execute()
    for i in range(0, max(1, keys // 1000)):  # field TTLs in a hashtable hash: HASH_METADATA (24)
        pipe.hset(f"hfeb:{i}", mapping={f"f{j}": f"v{j}" for j in range(300)})
        pipe.execute_command("HPEXPIREAT", f"hfeb:{i}", now_ms + 86_400_000, "FIELDS", 3, "f0", "f1", "f2")
    pipe.execute()


# -- passes, each in its own interpreter ----------------------------------------------------------------------------

CHILD = """
import json, sys, time
from pathlib import Path
path, out = sys.argv[2], sys.argv[3]
if sys.argv[1] == "summarize":
    from migrate.rdb.summary import summarize
    started = time.perf_counter()
    keys = summarize(path).keys
    extra = {}
else:
    from migrate.rdb.target import target_format
    from migrate.rdb.transcode import transcode
    started = time.perf_counter()
    report = transcode(path, out, target_format("valkey:8.1"), "lossy")
    keys = report.keys_read
    extra = {"written": report.keys_written, "passed": report.passed_through, "converted": report.converted,
             "changed": report.changed.total, "output_bytes": report.output_bytes}
seconds = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "keys": keys, "peak_rss_kb": hwm, **extra}))
"""


def run_pass(kind: str, path: Path, out: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(out)], cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def valkey_load(path: Path) -> tuple[float, float, int]:
    """(the server's own "DB loaded from disk" seconds, wall seconds until it answers, keys) for Valkey 8.1."""
    work = OUT / "work-valkey-load"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copyfile(path, work / "load.rdb")
    server = LocalServer(load_manifest()[TARGET], ("--dbfilename", "load.rdb"), work)
    started = time.perf_counter()
    server.start(timeout=300)
    wall = time.perf_counter() - started
    try:
        keys = sum(int(v["keys"]) for k, v in server.client().info("keyspace").items() if k.startswith("db"))
        log = (work / "server.log").read_text(errors="replace")
        loaded = re.search(r"DB loaded from disk: ([0-9.]+) seconds", log)
        return (float(loaded.group(1)) if loaded else float("nan")), wall, keys
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def crc_seconds(path: Path) -> float:
    from migrate.rdb.crc import crc64

    crc, started = 0, time.perf_counter()
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            crc = crc64(chunk, crc)
    return time.perf_counter() - started


def measure(label: str, path: Path, rounds: int) -> None:
    size = path.stat().st_size
    out = OUT / f"transcoded-{path.name}"
    runs: dict[str, list[dict[str, object]]] = {"summarize": [], "transcode": []}
    for _ in range(rounds):  # interleaved: the machine is shared
        for kind in runs:
            runs[kind].append(run_pass(kind, path, out))
    best = {kind: min(r, key=lambda x: float(x["seconds"])) for kind, r in runs.items()}  # type: ignore[arg-type]
    s, t = float(best["summarize"]["seconds"]), float(best["transcode"]["seconds"])  # type: ignore[arg-type]
    print(f"\n{label}: {path.name}, {size / MiB:.0f} MiB, {best['transcode']['keys']} keys")
    for kind in runs:
        b = best[kind]
        seconds = float(b["seconds"])
        print(f"  {kind:10} best of {rounds}: {seconds:6.2f} s  {size / MiB / seconds:7.1f} MB/s"
              f"  {int(b['keys']) / seconds:10,.0f} keys/s  peak RSS {int(b['peak_rss_kb']) / 1024:.0f} MiB")
    print(f"  transcode / summarize speed: {s / t:.2f}x (goal >= 0.5x)")
    extra = {k: best["transcode"][k] for k in ("written", "passed", "converted", "changed", "output_bytes")}
    print(f"  transcode report: {extra}")
    print(f"  CRC64 of the output alone: {crc_seconds(out):.3f} s ({out.stat().st_size / MiB:.0f} MiB)")
    loaded, wall, keys = valkey_load(out)
    print(f"  Valkey 8.1 start-up on the output: DB loaded from disk in {loaded:.3f} s, answering after {wall:.2f} s, "
          f"{keys} keys ({keys / loaded:,.0f} keys/s)")
    out.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strings", type=int, nargs="*", default=[250_000, 1_000_000])
    parser.add_argument("--mixed", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"Python {platform.python_version()}, {SOURCE} RDB 12 -> {TARGET}, {time.strftime('%Y-%m-%d')}")
    for keys in args.strings:
        measure(f"strings ({keys:,} x 100 bytes)", generate("strings", keys), args.rounds)
    if args.mixed:
        measure(f"mixed ({args.mixed:,} keys)", generate("mixed", args.mixed), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
