"""Stream apply rate: our translator + applier vs the server's own mass insertion (`redis-cli --pipe`), same stream.

    .venv/bin/python bench/apply.py [COMMANDS] [--source redis-8.0.6] [--targets valkey-8.1,valkey-9.1] [--rounds 2]

A recorded stream of about COMMANDS commands: mixed writes (strings with and without TTLs, INCR, LPUSH, HSET, SADD,
ZADD, XADD, EXPIRE, DEL, MULTI/EXEC groups, three databases) are piped into a source that writes its AOF (appendonly
yes, aof-use-rdb-preamble no); the AOF is the stream. Then, for each target, into an emptied target:
- ours, marker: read the AOF file (hiredis), translate, apply with the marker transaction (exactly once);
- ours, no marker: the same with plain pipelining (at least once);
- redis-cli --pipe: the target's own CLI piping the same translated commands (a RESP file written beforehand, not
  timed): the server's mass-insertion path, no per-command reply check, no translation;
- translate only: reading and translating, no target (where our time goes).
Each run is checked: the target's keys per database equal the redis-cli run's. Prints the numbers; does not edit
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.sandbox import LocalServer, start_server  # noqa: E402
from migrate.config import ConnectionSettings, parse_endpoint  # noqa: E402
from migrate.run.options import OnIncompatible  # noqa: E402
from migrate.stream import (  # noqa: E402
    MARKER_DB,
    Applier,
    ApplyOptions,
    RespWriter,
    TargetProfile,
    Translator,
    marker_key,
)
from migrate.wire import pack  # noqa: E402
from tests.stream_support import aof_files, read_stream  # noqa: E402

KEYSPACE = 100_000


def mixed_writes(n: int, seed: int = 7) -> Iterator[bytes]:
    """n commands of mixed writes as RESP (MULTI/EXEC counted as commands too)."""
    rng = random.Random(seed)
    value = b"v" * 64
    sent = 0
    while sent < n:
        r = rng.random()
        k = b"k:%d" % rng.randrange(KEYSPACE)
        if r < 0.01:
            yield pack((b"SELECT", b"%d" % rng.randrange(3)))
        elif r < 0.21:
            yield pack((b"SET", k, value))
        elif r < 0.31:
            yield pack((b"SET", b"t" + k, value, b"EX", b"3600"))
        elif r < 0.46:
            yield pack((b"INCR", b"c" + k))
        elif r < 0.56:
            yield pack((b"LPUSH", b"l:%d" % (rng.randrange(KEYSPACE) // 100), value[:16]))
        elif r < 0.66:
            yield pack((b"HSET", b"h:%d" % (rng.randrange(KEYSPACE) // 10), b"f%d" % rng.randrange(50), value[:20]))
        elif r < 0.74:
            yield pack((b"SADD", b"s:%d" % (rng.randrange(KEYSPACE) // 100), b"%d" % rng.randrange(1000)))
        elif r < 0.81:
            yield pack((b"ZADD", b"z:%d" % (rng.randrange(KEYSPACE) // 100), b"%d" % rng.randrange(1000), k))
        elif r < 0.86:
            yield pack((b"XADD", b"x:%d" % rng.randrange(100), b"*", b"f", value[:24]))
        elif r < 0.91:
            yield pack((b"EXPIRE", k, b"7200"))
        elif r < 0.96:
            yield pack((b"DEL", b"k:%d" % rng.randrange(KEYSPACE)))
        else:
            yield pack((b"MULTI",))
            yield pack((b"INCR", b"c" + k))
            yield pack((b"LPUSH", b"lt" + k, value[:8]))
            yield pack((b"EXEC",))
            sent += 3
        sent += 1


def cli_pipe(server: LocalServer, path: Path) -> float:
    began = time.perf_counter()
    with path.open("rb") as fh:
        out = subprocess.run([server.binary.cli, "-p", str(server.port), "--pipe"], stdin=fh, capture_output=True,
                             check=True)
    seconds = time.perf_counter() - began
    if b"errors: 0" not in out.stdout:
        raise RuntimeError(f"redis-cli --pipe reported errors: {out.stdout[-300:]!r}")
    return seconds


def record(source_name: str, n: int, tmp: Path) -> tuple[Path, int]:
    """Pipe n mixed writes into a source writing its AOF; return the stream file (its command files concatenated)."""
    generated = tmp / "generated.resp"
    with generated.open("wb") as fh:
        for data in mixed_writes(int(n * 1.09)):  # ~8% are not propagated (DEL of absent keys, ...)
            fh.write(data)
    with start_server(source_name, ("--appendonly", "yes", "--aof-use-rdb-preamble", "no")) as source:
        cli_pipe(source, generated)
        time.sleep(0.5)  # the AOF is written before each reply; let the last write land
        stream = tmp / "stream.resp"
        with stream.open("wb") as out:
            for path in aof_files(source.dir):
                out.write(path.read_bytes())
    count = sum(1 for _ in read_stream(stream))
    return stream, count


def ours(target: LocalServer, stream: Path, marker: bool, batch_commands: int) -> float:
    target.client().flushall()
    translator = Translator(TargetProfile.of(target.client()), policy=OnIncompatible.LOSSY)
    options = ApplyOptions(marker=marker, batch_commands=batch_commands)
    began = time.perf_counter()
    with Applier(parse_endpoint(target.url), ConnectionSettings(), "bench", options,
                 tally=translator.tally) as applier:
        applier.apply_all(translator.translate(read_stream(stream)))
    return time.perf_counter() - began


def translate_only(target: LocalServer, stream: Path) -> float:
    translator = Translator(TargetProfile.of(target.client()), policy=OnIncompatible.LOSSY)
    began = time.perf_counter()
    for _ in translator.translate(read_stream(stream)):
        pass
    return time.perf_counter() - began


def translated_file(target: LocalServer, stream: Path, tmp: Path) -> Path:
    translator = Translator(TargetProfile.of(target.client()), policy=OnIncompatible.LOSSY)
    path = tmp / f"translated-{target.name}.resp"
    with path.open("wb") as fh:
        for data in RespWriter().encode_all(translator.translate(read_stream(stream))):
            fh.write(data)
    return path


def keyspace(target: LocalServer) -> dict[int, int]:
    """Keys per database, the stream's marker left out."""
    info = target.client().info("keyspace")
    out = {int(k[2:]): int(v["keys"]) for k, v in info.items() if k.startswith("db")}
    out[MARKER_DB] -= target.client().exists(marker_key("bench"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("commands", nargs="?", type=int, default=500_000)
    parser.add_argument("--source", default="redis-8.0.6")
    parser.add_argument("--targets", default="valkey-8.1,valkey-9.1")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-commands", type=int, default=1000, help="commands per batch (per transaction)")
    args = parser.parse_args()
    print(f"# bench/apply.py {args.commands} --source {args.source} --targets {args.targets} "
          f"--batch-commands {args.batch_commands}; "
          f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores (shared)")
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmpdir:
        tmp = Path(tmpdir)
        stream, count = record(args.source, args.commands, tmp)
        print(f"stream: {count} commands, {stream.stat().st_size / 1e6:.1f} MB (AOF of {args.source})")
        for name in args.targets.split(","):
            with start_server(name) as target:
                translated = translated_file(target, stream, tmp)
                target.client().flushall()
                cli = min(cli_pipe(target, translated) for _ in range(1))
                expected = keyspace(target)
                results = {"redis-cli --pipe": [cli]}
                for _ in range(args.rounds):
                    target.client().flushall()
                    results["redis-cli --pipe"].append(cli_pipe(target, translated))
                    for label, marker in (("ours, marker", True), ("ours, no marker", False)):
                        results.setdefault(label, []).append(ours(target, stream, marker, args.batch_commands))
                        got = keyspace(target)
                        if got != expected:
                            raise RuntimeError(f"{label}: keyspace {got} != redis-cli's {expected}")
                    results.setdefault("translate only", []).append(translate_only(target, stream))
                print(f"\n{args.source} -> {name} ({target.binary.version}), best of {args.rounds}:")
                for label, times in results.items():
                    best = min(times)
                    print(f"  {label:18s} {best:7.2f} s  {count / best / 1000:8.1f}k commands/s")
                marked, plain = min(results["ours, marker"]), min(results["ours, no marker"])
                print(f"  marker transaction cost: {100 * (marked - plain) / plain:+.1f}% time "
                      f"({count / marked / 1000:.1f}k vs {count / plain / 1000:.1f}k commands/s)")


if __name__ == "__main__":
    main()
