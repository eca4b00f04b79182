"""Where the time of `verify --level full` goes, per value type: wall time and CPU of the verifier process and of
both servers, and the commands each server ran per key with their server time (INFO commandstats), next to the
`migrate run` that made the copy (same data, same servers, same run).

Data: bench/verify_types.py's datasets (KEYS keys of one kind). Each command is the CLI in its own process; its CPU
is its own (wait4), the servers' from INFO cpu before and after. With --tree DIR the verification is the CLI of that
tree (an older revision checked out with `git worktree add`), for a before/after profile.

Run: .venv/bin/python bench/verify_profile.py SOURCE TARGET [KEYS] [--kinds hash,set] [--tree DIR]   (prints only)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify_types import DEBUG, KINDS, load  # bench/ is on sys.path as a script

from fixtures.sandbox import LocalServer, load_manifest

REPO = Path(__file__).resolve().parent.parent
HIDDEN = ("info", "config|resetstat", "config|get", "hello", "client|setname", "client|setinfo", "ping", "acl|list",
          "function|list", "multi", "discard", "select")


def server_cpu(server: LocalServer) -> float:
    info = server.client().info("cpu")
    return float(info["used_cpu_user"] + info["used_cpu_sys"])


def commandstats(server: LocalServer) -> dict[str, tuple[int, int]]:
    return {name[len("cmdstat_"):]: (v["calls"], v["usec"]) for name, v in server.client().info("commandstats").items()}


def child(tree: Path, args: list[str], workdir: Path) -> tuple[float, float]:
    """Wall time and CPU time of `migrate ARGS` run from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "migrate", "--log-level", "warning", *args], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"migrate {args[0]} exited {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def profile(src_name: str, tgt_name: str, kind: str, keys: int, tree: Path) -> dict[str, Any]:
    binaries = load_manifest()
    source, target = LocalServer(binaries[src_name], DEBUG).start(), LocalServer(binaries[tgt_name], DEBUG).start()
    try:
        load(source, keys, kind)
        with tempfile.TemporaryDirectory() as folder:
            workdir = Path(folder)
            before = (server_cpu(source), server_cpu(target))
            run = child(REPO, ["run", "--source", source.url, "--target", target.url], workdir)
            middle = (server_cpu(source), server_cpu(target))
            for server in (source, target):
                server.client().config_resetstat()
            verify = child(tree, ["verify", "--source", source.url, "--target", target.url, "--level", "full",
                                  "--rounds", "1", "--interval", "0.1"], workdir)
            after = (server_cpu(source), server_cpu(target))
            stats = (commandstats(source), commandstats(target))
        return {"run": run, "run_servers": (middle[0] - before[0], middle[1] - before[1]), "verify": verify,
                "verify_servers": (after[0] - middle[0], after[1] - middle[1]), "stats": stats}
    finally:
        source.cleanup()
        target.cleanup()


def commands(stats: dict[str, tuple[int, int]], keys: int) -> str:
    rows = sorted(((n, u, c) for c, (n, u) in stats.items() if c not in HIDDEN), key=lambda r: -r[1])
    return ", ".join(f"{c.upper()} {n / keys:.2f} x {u / n:.2f} us" for n, u, c in rows if n)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("keys", nargs="?", type=int, default=100_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--tree", default=str(REPO))
    args = parser.parse_args(argv)
    print("| keys | `migrate run`: wall, CPU process / source / target | `verify --level full`: wall, CPU process / "
          "source / target | source: commands per key x server time per call | target: the same |")
    print("|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        r = profile(args.source, args.target, kind, args.keys, Path(args.tree))
        (rw, rc), (vw, vc) = r["run"], r["verify"]
        (rs, rt), (vs, vt) = r["run_servers"], r["verify_servers"]
        print(f"| {args.keys:,} {kind} | {rw:.2f} s; {rc:.2f} / {rs:.2f} / {rt:.2f} s "
              f"| {vw:.2f} s; {vc:.2f} / {vs:.2f} / {vt:.2f} s "
              f"| {commands(r['stats'][0], args.keys)} | {commands(r['stats'][1], args.keys)} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
