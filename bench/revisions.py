"""Run one benchmark script from two revisions of this repository, alternately, in the same session: the before/after
of a refactor measured under the same machine load (each script prints its own numbers and same-run baselines).

    .venv/bin/python bench/revisions.py BASE_REV [--rounds 2] -- bench/run.py 300000 --no-append

The base revision is checked out in a temporary git worktree (removed at the end); the current tree runs as it is.
Both use this checkout's virtualenv and provisioned servers (MIGRATE_SERVERS_DIR); each script imports the migrate of
its own tree (the scripts put their tree first on sys.path, child processes get PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_in(tree: Path, label: str, command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree),
           "MIGRATE_SERVERS_DIR": os.environ.get("MIGRATE_SERVERS_DIR", str(ROOT / ".servers"))}
    print(f"===== {label} ({tree}): {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, *command], cwd=tree, env=env, check=True)


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    with tempfile.TemporaryDirectory(prefix="migrate-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            for round_no in range(1, args.rounds + 1):
                run_in(base, f"before, round {round_no}", command)
                run_in(ROOT, f"after, round {round_no}", command)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
