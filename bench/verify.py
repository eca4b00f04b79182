"""Full and keys-level verification of a large dataset, next to the migration that produced it (same run, same servers).

Data: KEYS keys in Redis 7.0 (default 1,000,000): 94% 100-byte strings, the rest hashes, lists, sets, zsets (20
elements each) and streams, 10% of all keys with a TTL, and three big keys (100,000 elements) that verification must
read in chunks. Target: Valkey 8.1.
Baselines, same run: `migrate run` (replay) of the same data into the emptied target, and a plain pipelined copy
(SCAN 1000, pipelined DUMP + PTTL, pipelined RESTORE with redis-py), the reference loop of docs/compatibility.md.
Ours: `migrate verify --level keys` and `--level full` (both directions, every key). Every migrate command runs as the
CLI in its own process, so its time and its own peak RSS (wait4) are measured alike; commands are interleaved and
repeated because the machine is shared. Two sizes (KEYS/10 and KEYS) show that memory does not grow with the data.

Run: .venv/bin/python bench/verify.py [KEYS] [--no-record]   (needs the servers in .servers); appends to RESULTS.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from baselines import plain_copy  # bench/ is on sys.path when run as a script

from fixtures.sandbox import LocalServer, load_manifest
from migrate.wire import Channel, Packed

SOURCE, TARGET = "redis-7.0", "valkey-8.1"
BATCH = 1000
BIG = 100_000
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"


# ---- data --------------------------------------------------------------------------------------------------------


def load(client: redis.Redis, keys: int) -> None:
    """Write the dataset with packed pipelines (fast enough that loading 1M keys takes seconds)."""
    wire = Channel.over(client)
    others = keys * 6 // 100
    strings = keys - others - 3
    for start in range(0, strings, 10_000):
        count = min(10_000, strings - start)
        data = b"".join(b"*3\r\n$3\r\nSET\r\n$12\r\ns:%010d\r\n$100\r\n%0100d\r\n" % (i, i)
                        for i in range(start, start + count))
        wire.run(Packed(data, count))
    commands: list[tuple[Any, ...]] = []
    for i in range(others):
        commands.append(_mixed(i))
        if len(commands) >= 2000:
            wire.run(commands)
            commands = []
    commands += [("HSET", "big:hash", *[x for j in range(BIG) for x in (f"f{j}", f"v{j}")]),
                 ("RPUSH", "big:list", *[f"e{j}" for j in range(BIG)]),
                 ("ZADD", "big:zset", *[x for j in range(BIG) for x in (j / 7, f"m{j}")])]
    wire.run(commands)
    wire.run([("PEXPIRE", f"s:{i:010d}", 86_400_000 + i) for i in range(0, strings, 10)])
    wire.close()


def _mixed(i: int) -> tuple[Any, ...]:
    kind = i % 5
    if kind == 0:
        return ("HSET", f"h:{i}", *[x for j in range(20) for x in (f"f{j}", f"value-{i}-{j}")])
    if kind == 1:
        return ("RPUSH", f"l:{i}", *[f"item-{j}" for j in range(20)])
    if kind == 2:
        return ("SADD", f"t:{i}", *[f"member-{j}" for j in range(20)])
    if kind == 3:
        return ("ZADD", f"z:{i}", *[x for j in range(20) for x in (j / 3, f"m{j}")])
    return ("XADD", f"x:{i}", "*", "a", str(i), "b", "payload")


# ---- commands, each in its own process (time, peak RSS of that process) -----------------------------------------


@dataclass
class Sample:
    seconds: float
    peak_rss_mb: float


# The child writes its own VmHWM (peak RSS since exec) when it exits: wait4's ru_maxrss would also count the pages
# of this (big) process that the child inherited before exec.
CHILD = """import atexit, sys
from pathlib import Path
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            Path(sys.argv[1]).write_text(line.split()[1])
atexit.register(hwm)
from migrate.cli import main
main(sys.argv[2:])
"""


def migrate_cli(args: list[str], workdir: Path) -> Sample:
    """`migrate ARGS` (the CLI) in a child process: wall time and the child's own peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    peak = workdir / "peak_rss_kb"
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        code = subprocess.run([sys.executable, "-c", CHILD, str(peak), "--log-level", "warning", *args],
                              cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=errors, check=False).returncode
        elapsed = time.perf_counter() - started
        if code != 0:
            errors.seek(0)
            raise SystemExit(f"migrate {args[0]} exited {code}: {errors.read().decode(errors='replace')[-2000:]}")
    return Sample(elapsed, int(peak.read_text()) / 1024)


def verify_cli(source: LocalServer, target: LocalServer, level: str, workdir: Path) -> Sample:
    return migrate_cli(["verify", "--source", source.url, "--target", target.url, "--level", level, "--rounds", "1",
                        "--interval", "0.1", "--format", "json", "--output", str(workdir / "verify.json")], workdir)


def run_cli(source: LocalServer, target: LocalServer, workdir: Path) -> Sample:
    return migrate_cli(["run", "--source", source.url, "--target", target.url, "--checkpoint",
                        str(workdir / "run.checkpoint.json"), "--format", "json", "--output",
                        str(workdir / "run.json")], workdir)


def one_size(keys: int, repeats: int) -> dict[str, Any]:
    """Load, copy once with the plain loop and verify that copy once (its relative TTLs give absolute expiries a few
    ms apart), then `repeats` times: empty the target, `migrate run` into it, verify keys, verify full (each
    verification checks run's own copy, the situation the goal is about). Interleaving spreads the machine's load."""
    binaries = load_manifest()
    source = LocalServer(binaries[SOURCE]).start()
    target = LocalServer(binaries[TARGET]).start()
    try:
        src, dst = source.client(), target.client()
        load(src, keys)
        out: dict[str, Any] = {"keys": src.dbsize(), "versions": (source.binary.version, target.binary.version),
                               "copy": plain_copy(src, dst, BATCH), "keys_level": [], "full": [], "run": []}
        with tempfile.TemporaryDirectory() as folder:
            workdir = Path(folder)
            out["full_plain_copy"] = verify_cli(source, target, "full", workdir)
            for _ in range(repeats):
                dst.flushall()
                out["run"].append(run_cli(source, target, workdir))
                out["keys_level"].append(verify_cli(source, target, "keys", workdir))  # exit 0 or SystemExit
                out["full"].append(verify_cli(source, target, "full", workdir))
        return out
    finally:
        source.cleanup()
        target.cleanup()


def best(samples: list[Sample]) -> float:
    return min(s.seconds for s in samples)


def report(small: dict[str, Any], large: dict[str, Any], argv: list[str]) -> str:
    n = large["keys"]
    run_s, full_s, keys_s, copy_s = best(large["run"]), best(large["full"]), best(large["keys_level"]), large["copy"]

    def all_of(samples: list[Sample]) -> str:
        return ", ".join(f"{s.seconds:.2f}" for s in samples)

    def rss(size: dict[str, Any], name: str) -> str:
        return f"{max(s.peak_rss_mb for s in size[name]):.0f} MB"

    return "\n".join([
        "",
        "## verify: full and keys-level verification vs `migrate run` (bench/verify.py)",
        "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `.venv/bin/python bench/verify.py {' '.join(argv)}`."
        f" Python {platform.python_version()}, source Redis {large['versions'][0]}, target Valkey "
        f"{large['versions'][1]}, both local on this 2-core machine (shared with other work: timings vary; each "
        f"command ran {len(large['run'])} times interleaved, best time shown, all times in brackets).",
        f"- Data: {n:,} keys (94% 100-byte strings; hashes, lists, sets, zsets of 20 elements, streams; 3 keys of "
        f"{BIG:,} elements; 10% with TTLs). Every command is the CLI in its own process (start-up included).",
        f"- Baseline, same run: `migrate run` (replay) into an emptied target: {run_s:.2f} s ({n / run_s:,.0f} keys/s) "
        f"[{all_of(large['run'])}]; plain pipelined SCAN/DUMP+PTTL/RESTORE copy (redis-py, in process): "
        f"{copy_s:.2f} s ({n / copy_s:,.0f} keys/s).",
        f"- Ours: `verify --level full`: {full_s:.2f} s ({n / full_s:,.0f} keys/s) [{all_of(large['full'])}]: "
        f"{run_s / full_s:.2f}x the speed of `migrate run` (goal >= 1), {copy_s / full_s:.2f}x the plain copy.",
        f"- Ours: `verify --level keys`: {keys_s:.2f} s ({n / keys_s:,.0f} keys/s) [{all_of(large['keys_level'])}]: "
        f"{run_s / keys_s:.2f}x the speed of `migrate run` (goal >= 3), {copy_s / keys_s:.2f}x the plain copy; "
        f"{full_s / keys_s:.2f}x faster than full.",
        f"- Memory (peak RSS of the process): verify full {rss(small, 'full')} at {small['keys']:,} keys, "
        f"{rss(large, 'full')} at {n:,} keys; keys-level {rss(small, 'keys_level')} / {rss(large, 'keys_level')}; "
        f"`migrate run` {rss(small, 'run')} / {rss(large, 'run')}.",
        f"- At {small['keys']:,} keys: run {best(small['run']):.2f} s, full {best(small['full']):.2f} s, keys "
        f"{best(small['keys_level']):.2f} s, plain copy {small['copy']:.2f} s. Every verification exited 0 (parity).",
        f"- Verifying the plain copy instead (relative TTLs re-applied by the copy: absolute expiries a few ms apart, "
        f"so raw replies differ and are parsed): `verify --level full` {large['full_plain_copy'].seconds:.2f} s "
        f"({run_s / large['full_plain_copy'].seconds:.2f}x the speed of `migrate run`).",
    ]) + "\n"


def main(argv: list[str]) -> None:
    numbers = [a for a in argv if a.isdigit()]
    keys = int(numbers[0]) if numbers else 1_000_000
    small = one_size(keys // 10, 1)
    large = one_size(keys, 2)
    text = report(small, large, argv)
    print(text)
    if "--no-record" in argv:
        return
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    RESULTS.write_text(existing.rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])
