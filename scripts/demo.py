"""The demo story on local servers: a Redis 8.0 source with a realistic dataset, a Valkey 8.1 target.

Every step goes through the real CLI (`migrate.cli.run_cli`), exactly as an operator would type it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.dataset import populate
from fixtures.sandbox import start_server
from migrate.cli import cli, run_cli

SOURCE, TARGET = "redis-8.0.2", "valkey-8.1"


def step(title: str, args: list[str], expect: tuple[int, ...] = (0,)) -> int:
    print(f"\n=== {title}\n$ migrate {' '.join(args)}", flush=True)
    code = run_cli(args)
    print(f"(exit code {code})", flush=True)
    if code not in expect:
        raise SystemExit(f"demo: step '{title}' exited {code}, expected {expect}")
    return code


def main() -> None:
    with start_server(SOURCE) as source, start_server(TARGET) as target:
        data = populate(source.client())
        print(f"demo: {SOURCE} on port {source.port} holds {data.total} keys in {len(data.keys)} databases "
              f"({len(data.field_ttl_keys)} hashes with field TTLs); {TARGET} on port {target.port} is empty")
        urls = ["--source", source.url, "--target", target.url]
        step("Who is who", ["identify", *urls])
        if "preflight" in cli.list_commands(None):
            step("Preflight: what will break", ["preflight", *urls], expect=(0, 5))
        if "run" in cli.list_commands(None):
            step("Run: live replay with per-key conversion",
                 ["run", *urls, "--on-incompatible", "lossy", "--yes"], expect=(0, 5))
        if "verify" in cli.list_commands(None):
            step("Verify: parity, key by key", ["verify", *urls, "--level", "full"], expect=(0, 5))
    print("\ndemo: done; servers stopped")


if __name__ == "__main__":
    main()
