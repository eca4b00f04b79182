"""Reload from an AOF or an RDB file (`migrate run --strategy reload --from-aof / --from-rdb`, `--load-via commands`
and `replication`) against the target's own loading of the same input at start-up.

    .venv/bin/python bench/aof_reload.py                         # 1M keys, targets valkey-8.1 and valkey-9.1
    .venv/bin/python bench/aof_reload.py --keys 200000 --targets valkey-9.1 --rounds 1

Two AOFs of KEYS keys, written once by redis-7.0 through pipelines and cached in bench/out/ (SETs, HSETs of 5
fields, RPUSHes of 8 items, SETs with an expiry (PXAT in the file), a MULTI/EXEC block every 1000 commands):
- `commands`: aof-use-rdb-preamble no, no rewrite: one base-less multi-part directory of commands;
- `rdb-base`: aof-use-rdb-preamble yes, a BGREWRITEAOF after half the keys: an RDB base, then commands;
- `rdb`: the RDB base of `rdb-base` alone, given to --from-rdb (the server loads it as its dump.rdb).
For each target and each --load-via: the CLI run (`migrate run --strategy reload --from-aof DIR --yes`, a subprocess:
interpreter start, check, load, report) into a fresh target, timed; then the same target version started on a copy
of the input (its own loading), timed until it accepts connections; both end with the same DBSIZE (checked).
Ratio = server time / ours (goal: at least 0.5). `--profile` adds an in-process profile of one load (phases and the
functions where the time goes).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fixtures.sandbox import LocalServer, load_manifest  # noqa: E402

OUT = REPO / "bench" / "out"
WRITER = "redis-7.0"


def write(pipe: object, i: int) -> None:
    kind = i % 10
    if kind < 5:
        pipe.set(f"s:{i}", f"value-{i}" * 8)  # type: ignore[attr-defined]
    elif kind < 7:
        pipe.hset(f"h:{i}", mapping={f"f{j}": f"v{j}" for j in range(5)})  # type: ignore[attr-defined]
    elif kind < 9:
        pipe.rpush(f"l:{i}", *range(8))  # type: ignore[attr-defined]
    else:
        pipe.set(f"t:{i}", i, px=10**12)  # type: ignore[attr-defined]


def write_aof(keys: int, kind: str, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    preamble = "yes" if kind == "rdb-base" else "no"
    server = LocalServer(load_manifest()[WRITER], ("--appendonly", "yes", "--aof-use-rdb-preamble", preamble,
                                                   "--auto-aof-rewrite-percentage", "0"), folder).start()
    try:
        client = server.client(socket_timeout=600)
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            write(pipe, i)
            if i % 1000 == 999:
                pipe.execute()
                client.pipeline(transaction=True).incr("tx:counter").set(f"tx:{i}", i).execute()
            if kind == "rdb-base" and i == keys // 2:
                pipe.execute()
                client.execute_command("BGREWRITEAOF")
                while client.info("persistence")["aof_rewrite_in_progress"]:
                    time.sleep(0.1)
        pipe.execute()
    finally:
        server.stop()
    return folder / "appendonlydir"


def ours(target_name: str, path: Path, load_via: str) -> tuple[float, int, dict[str, object]]:
    target = LocalServer(load_manifest()[target_name]).start()
    flag = "--from-rdb" if path.suffix == ".rdb" else "--from-aof"
    try:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "migrate", "run", "--strategy", "reload", flag, str(path),
                               "--target", target.url, "--yes", "--no-progress", "--format", "json",
                               "--load-via", load_via], capture_output=True, text=True, cwd=REPO)
        elapsed = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        return elapsed, int(target.client().dbsize()), json.loads(done.stdout)
    finally:
        target.stop()


def server_load(target_name: str, path: Path, work: Path) -> tuple[float, int]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if path.suffix == ".rdb":  # an RDB file: loaded at start-up as dump.rdb
        shutil.copy(path, work / "dump.rdb")
        args: tuple[str, ...] = ("--dbfilename", "dump.rdb")
    else:
        shutil.copytree(path, work / "appendonlydir")
        args = ("--appendonly", "yes")
    started = time.perf_counter()
    server = LocalServer(load_manifest()[target_name], args, work).start(timeout=900)
    elapsed = time.perf_counter() - started
    try:
        return elapsed, int(server.client().dbsize())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def profile(target_name: str, path: Path) -> None:
    from migrate.config import CommonConfig, ConnectionSettings, parse_endpoint
    from migrate.run import RunConfig, RunOptions, Strategy
    from migrate.run.aofload import check_aof, load_aof, open_input
    from migrate.run.progress import RunProgress
    from migrate.server import Server

    target = LocalServer(load_manifest()[target_name]).start()
    try:
        config = RunConfig(CommonConfig(None, parse_endpoint(target.url), ConnectionSettings()),
                           RunOptions(strategy=Strategy.RELOAD, from_aof=path, yes=True, progress=False))
        server = Server("target", parse_endpoint(target.url), config.common.connection)
        began = time.perf_counter()
        check = check_aof(open_input(config), config, server)
        checked = time.perf_counter()
        with RunProgress(False, None) as progress:
            load_aof(check, config, server, progress)
        loaded = time.perf_counter()
        n = check.commands + check.rdb_keys
        print(f"phases ({target_name}): check pass {checked - began:.2f} s, load {loaded - checked:.2f} s "
              f"({n:,} commands and RDB keys: {(checked - began) / n * 1e6:.2f} + {(loaded - checked) / n * 1e6:.2f}"
              " µs each)")
        target.client().flushall()
        prof = cProfile.Profile()
        prof.enable()
        with RunProgress(False, None) as progress:
            load_aof(check, config, server, progress)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    finally:
        target.stop()


def input_of(kind: str, keys: int) -> Path:
    """The AOF directory of `kind`, written once; `rdb`: the RDB base file of `rdb-base` (--from-rdb)."""
    if kind == "rdb":
        base = input_of("rdb-base", keys)
        return next(base.glob("*.base.rdb"))
    folder = OUT / f"aof-reload-{kind}-{keys}"
    path = folder / "appendonlydir"
    return path if path.is_dir() else write_aof(keys, kind, folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--targets", default="valkey-8.1,valkey-9.1")
    parser.add_argument("--kinds", default="commands,rdb-base,rdb", help="rdb: the RDB base of rdb-base, --from-rdb")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load-via", default="commands,replication", help="--load-via values to time")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print("| AOF | target | --load-via | ours (s) | server load (s) | ratio server/ours | keys |\n"
          "|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        path = input_of(kind, args.keys)
        size = (path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())) / 1e6
        for target_name in args.targets.split(","):
            modes = args.load_via.split(",")
            best = dict.fromkeys(["server", *modes], float("inf"))
            for _ in range(args.rounds):  # the modes and the server alternate: noise hits all of them alike
                loaded, server_keys = server_load(target_name, path, OUT / "aof-reload-load")
                best["server"] = min(best["server"], loaded)
                for mode in modes:
                    seconds, keys, _report = ours(target_name, path, mode)
                    assert keys == server_keys, (mode, keys, server_keys)
                    best[mode] = min(best[mode], seconds)
            for mode in modes:
                print(f"| {kind} ({size:.0f} MB) | {target_name} | {mode} | {best[mode]:.2f} | {best['server']:.2f} | "
                      f"{best['server'] / best[mode]:.2f}x | {server_keys:,} |")
            if args.profile and path.is_dir():
                profile(target_name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
