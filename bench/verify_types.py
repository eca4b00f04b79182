"""Full verification by value type and release pair: `verify --level full` against the `migrate run` that made the copy.

Each dataset holds KEYS keys of one kind (default 300,000): 100-byte strings (10% with a TTL), 20-element hashes,
lists, sets, zsets, one-entry streams (bench/verify.py's `_mixed`), or a fifth of each ("mixed"). For each release
pair (Redis 7.0 and 8.0.6 into Valkey 8.1 and 9.1), REPEATS times interleaved: empty the target, `migrate run` into
it, then each verification variant of run's copy, every command the CLI in its own process; best time shown, all in
brackets. Variants: `full` (the defaults), optional extra variants by their CLI options (--variant
NAME=--server-digests,always), and with --before REV the same `verify --level full` from another revision of this
repository (a git worktree), so a before/after table comes from one run. Servers start with
`--enable-debug-command yes` so the digest variants can run; each verification must exit 0 (parity).

Run: .venv/bin/python bench/verify_types.py [KEYS] [--pairs redis-7.0:valkey-8.1,...] [--kinds hash,set] [--repeats N]
     [--before REV] [--variant NAME=OPT,VALUE,...] [--no-record]       (needs .servers); appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify import CHILD, RESULTS, _mixed  # bench/ is on sys.path as a script

from fixtures.sandbox import LocalServer, load_manifest
from migrate.wire import Channel

REPO = Path(__file__).resolve().parent.parent
KINDS = {"string": (), "hash": (0,), "list": (1,), "set": (2,), "zset": (3,), "stream": (4,), "mixed": (0, 1, 2, 3, 4)}
PAIRS = ("redis-7.0:valkey-8.1", "redis-7.0:valkey-9.1", "redis-8.0.6:valkey-8.1", "redis-8.0.6:valkey-9.1")
DEBUG = ("--enable-debug-command", "yes")


def load(server: LocalServer, keys: int, kind: str) -> None:
    wire = Channel.over(server.client())
    if kind == "string":
        for start in range(0, keys, 10_000):
            wire.run([("SET", f"s:{i:010d}", f"{i:0100d}") for i in range(start, min(keys, start + 10_000))])
        wire.run([("PEXPIRE", f"s:{i:010d}", 86_400_000 + i) for i in range(0, keys, 10)])
    else:
        commands: list[tuple[Any, ...]] = []
        i = 0
        while len(commands) < keys:
            if i % 5 in KINDS[kind]:
                commands.append(_mixed(i))
            i += 1
        for at in range(0, len(commands), 2000):
            wire.run(commands[at:at + 2000])
    wire.close()


def cli(tree: Path, args: list[str], workdir: Path) -> float:
    """`migrate ARGS` from `tree` in a child process: its wall time (exit status 0 required)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(workdir / "peak"), "--log-level", "warning", *args],
                          cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"migrate {args[0]} ({tree}) exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def verify_args(source: LocalServer, target: LocalServer, workdir: Path, extra: list[str]) -> list[str]:
    return ["verify", "--source", source.url, "--target", target.url, "--level", "full", "--rounds", "1",
            "--interval", "0.1", "--format", "json", "--output", str(workdir / "verify.json"), *extra]


def one(pair: str, kind: str, keys: int, repeats: int, variants: dict[str, list[str]],
        before: Path | None) -> dict[str, Any]:
    binaries = load_manifest()
    src_name, tgt_name = pair.split(":")
    source, target = LocalServer(binaries[src_name], DEBUG).start(), LocalServer(binaries[tgt_name], DEBUG).start()
    out: dict[str, Any] = {"run": [], "before": [], **{name: [] for name in variants}, "methods": {}}
    try:
        load(source, keys, kind)
        with tempfile.TemporaryDirectory() as folder:
            workdir = Path(folder)
            for _ in range(repeats):
                target.client().flushall()
                out["run"].append(cli(REPO, ["run", "--source", source.url, "--target", target.url, "--format",
                                             "json", "--output", str(workdir / "run.json")], workdir))
                for name, extra in variants.items():
                    out[name].append(cli(REPO, verify_args(source, target, workdir, extra), workdir))
                    out["methods"][name] = json.loads((workdir / "verify.json").read_text()).get("methods")
                if before is not None:
                    out["before"].append(cli(before, verify_args(source, target, workdir, []), workdir))
        out["versions"] = (source.binary.version, target.binary.version)
        return out
    finally:
        source.cleanup()
        target.cleanup()


def times(samples: list[float]) -> str:
    return f"{min(samples):.2f} s [{', '.join(f'{s:.2f}' for s in samples)}]"


def methods_text(methods: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in (methods or {}).items() if v) or "-"


def report(results: dict[tuple[str, str], dict[str, Any]], keys: int, variants: dict[str, list[str]],
           before: str | None, argv: list[str]) -> str:
    head = ["pair", "keys", "`migrate run`"]
    if before:
        head += [f"verify full, before ({before})", "before / run"]
    for name in variants:
        head += [f"verify {name}", f"{name} / run"]
    head += ["methods (full)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pair, kind), r in results.items():
        run_best = min(r["run"])
        cells = [pair.replace(":", " -> "), f"{keys:,} {kind}", times(r["run"])]
        if before:
            cells += [times(r["before"]), f"{min(r['before']) / run_best:.2f}x"]
        for name in variants:
            cells += [times(r[name]), f"{min(r[name]) / run_best:.2f}x"]
        cells.append(methods_text(r["methods"].get("full")))
        rows.append("| " + " | ".join(cells) + " |")
    extra = "; ".join(f"`{name}`: `{' '.join(opts) or '(defaults)'}`" for name, opts in variants.items())
    command = " ".join([".venv/bin/python bench/verify_types.py", *argv])
    return "\n".join([
        "", "## verify by value type and release pair: full verification vs `migrate run` (bench/verify_types.py)", "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `{command}`. Python {platform.python_version()}, "
        "servers local on this shared 2-core machine (other sessions' load varies: timings vary run to run); per "
        f"dataset {len(next(iter(results.values()))['run'])} rounds interleaved (run, then each verification of "
        "its copy), best time shown, all times in brackets; every verification exited 0 (parity). Ratios are "
        "verification time / `migrate run` time (goal <= 1.0).",
        f"- Variants: {extra}." + (f" Before: `verify --level full` of revision {before}, same servers, same copy."
                                   if before else ""),
        "", *rows, ""])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="?", type=int, default=300_000)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    variants = {"full": []}
    for spec in args.variant:
        name, _, opts = spec.partition("=")
        variants[name] = opts.split(",")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="migrate-before-") as tmp:
        before_tree = None
        if args.before:
            before_tree = Path(tmp) / "tree"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before_tree), args.before],
                           check=True, capture_output=True)
        try:
            for pair in args.pairs.split(","):
                for kind in args.kinds.split(","):
                    results[(pair, kind)] = r = one(pair, kind, args.keys, args.repeats, variants, before_tree)
                    print(pair, kind, {k: v for k, v in r.items() if k != "versions"}, flush=True)
        finally:
            if before_tree is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)],
                               check=False)
    text = report(results, args.keys, variants, args.before, argv)
    print(text)
    if not args.no_record:
        RESULTS.write_text(RESULTS.read_text().rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])
