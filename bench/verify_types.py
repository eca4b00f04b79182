"""Full verification by value type: where `verify --level full` costs more than the migration it checks.

bench/verify.py measures the goal's dataset (94% small strings). Here each dataset holds KEYS keys of one kind (default
100,000), 20-element hashes, lists, sets, zsets or one-entry streams as bench/verify.py writes them, plus one dataset
with a fifth of each: Redis 7.0 -> Valkey 8.1, `migrate run` into an emptied target, then `verify --level full` of
run's copy, each command the CLI in its own process, best of REPEATS interleaved. The ratio says how the value reads
of one type compare with moving the same keys (DUMP/RESTORE).

Run: .venv/bin/python bench/verify_types.py [KEYS] [--no-record]  (needs .servers); appends to RESULTS.md.
"""

from __future__ import annotations

import datetime
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verify import RESULTS, SOURCE, TARGET, _mixed, run_cli, verify_cli  # bench/ is on sys.path as a script

from fixtures.sandbox import LocalServer, load_manifest
from migrate.wire import Channel

KINDS = {"hash": (0,), "list": (1,), "set": (2,), "zset": (3,), "stream": (4,), "mixed": (0, 1, 2, 3, 4)}
REPEATS = 2


def load(server: LocalServer, keys: int, kinds: tuple[int, ...]) -> None:
    """`keys` keys of the chosen kinds (bench/verify.py's _mixed: i % 5 picks the kind)."""
    wire = Channel.over(server.client())
    commands: list[tuple[Any, ...]] = []
    i = 0
    while len(commands) < keys:
        if i % 5 in kinds:
            commands.append(_mixed(i))
        i += 1
    for at in range(0, len(commands), 2000):
        wire.run(commands[at:at + 2000])
    wire.close()


def one_kind(name: str, keys: int) -> dict[str, Any]:
    binaries = load_manifest()
    source, target = LocalServer(binaries[SOURCE]).start(), LocalServer(binaries[TARGET]).start()
    try:
        load(source, keys, KINDS[name])
        out: dict[str, Any] = {"run": [], "full": []}
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(REPEATS):
                target.client().flushall()
                out["run"].append(run_cli(source, target, Path(folder)).seconds)
                out["full"].append(verify_cli(source, target, "full", Path(folder)).seconds)  # exits 0 or raises
        out["versions"] = (source.binary.version, target.binary.version)
        return out
    finally:
        source.cleanup()
        target.cleanup()


def report(results: dict[str, dict[str, Any]], keys: int, argv: list[str]) -> str:
    versions = next(iter(results.values()))["versions"]
    rows = ["| keys | `migrate run` | `verify --level full` | full / run speed |", "|---|---|---|---|"]
    for name, r in results.items():
        run_s, full_s = min(r["run"]), min(r["full"])
        rows.append(f"| {keys:,} {name} | {run_s:.2f} s [{', '.join(f'{s:.2f}' for s in r['run'])}] | {full_s:.2f} s "
                    f"[{', '.join(f'{s:.2f}' for s in r['full'])}] | {run_s / full_s:.2f}x |")
    command = " ".join([".venv/bin/python bench/verify_types.py", *argv])
    return "\n".join([
        "", "## verify by value type: full verification vs `migrate run` (bench/verify_types.py)", "",
        f"- Date: {datetime.date.today().isoformat()}. Command: `{command}`."
        f" Python {platform.python_version()}, Redis {versions[0]} -> Valkey {versions[1]}, both "
        f"local on this shared 2-core machine; best of {REPEATS} interleaved, all times in brackets; each "
        "verification checks run's copy and exited 0.", "", *rows, ""])


def main(argv: list[str]) -> None:
    numbers = [a for a in argv if a.isdigit()]
    keys = int(numbers[0]) if numbers else 100_000
    results = {name: one_kind(name, keys) for name in KINDS}
    text = report(results, keys, argv)
    print(text)
    if "--no-record" not in argv:
        RESULTS.write_text(RESULTS.read_text().rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main(sys.argv[1:])
