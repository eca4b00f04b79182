"""Start-up time of the `migrate` CLI: every verb is a short-lived process, so what it imports before working counts.

Ours: `migrate --version`, `migrate verify --help`, `migrate run --help`, each a child process (the installed console
script, as an operator runs it). Baselines, same run: `python -c pass` (the interpreter alone) and
`python -c "import redis, click"` (the floor set by our two unavoidable dependencies). Commands are interleaved and
repeated because the machine is shared; the best of N is the number that shows start-up cost, the median shows noise.

Run: .venv/bin/python bench/startup.py [--runs N] [--no-record]   (no servers needed); appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
SCRIPT = REPO / ".venv" / "bin" / "migrate"
COMMAND = ".venv/bin/python bench/startup.py"


def migrate(*args: str) -> list[str]:
    """The console script if installed, else `python -m migrate` (same code path: migrate.cli:main)."""
    return [str(SCRIPT), *args] if SCRIPT.exists() else [sys.executable, "-m", "migrate", *args]


BASELINES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import redis, click"': [sys.executable, "-c", "import redis, click"],
}
OURS = {
    "migrate --version": migrate("--version"),
    "migrate verify --help": migrate("verify", "--help"),
    "migrate run --help": migrate("run", "--help"),
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return elapsed


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # one warm-up each: the first run pays for cold .pyc and disk caches
        wall_time(command)
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(wall_time(command))
    return times


def row(name: str, samples: list[float], floor: float) -> str:
    best = min(samples)
    return (f"| `{name}` | {best * 1000:.0f} ms | {statistics.median(samples) * 1000:.0f} ms | "
            f"{(best - floor) * 1000:+.0f} ms |")


def report(times: dict[str, list[float]], runs: int, argv: list[str]) -> str:
    floor = min(times['python -c "import redis, click"'])
    lines = [
        "",
        "## CLI start-up time (bench/startup.py)",
        "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `{' '.join([COMMAND, *argv])}`."
        f" Python {platform.python_version()}, {platform.system()} {platform.machine()}, shared 2-core machine.",
        f"- Each command in its own child process, interleaved, best and median of {runs} (after one warm-up run).",
        "",
        "| command | best | median | best minus the `import redis, click` floor |",
        "|---|---|---|---|",
        *(row(name, times[name], floor) for name in BASELINES),
        *(row(name, times[name], floor) for name in OURS),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command [default: 15]")
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to bench/RESULTS.md")
    args = parser.parse_args()
    times = measure({**BASELINES, **OURS}, args.runs)
    text = report(times, args.runs, sys.argv[1:])
    print(text)
    if not args.no_record:
        existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        RESULTS.write_text(existing.rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main()
