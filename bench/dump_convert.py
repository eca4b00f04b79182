"""Cost of planning DUMP conversions (migrate.rdb.dump.Planner) next to the RESTORE it sits in front of.

Real payloads: KEYS mixed keys (strings, small hashes, lists, sets, zsets) written to Redis 8.0.6 and DUMPed (RDB 12).
Baseline, same process: pipelined RESTORE (batches of 1000) of the restamped payloads into Valkey 8.1 on this machine,
the network part every migrated key pays anyway. Ours: Planner.plan over the same payloads (CRC check + decision +
restamp), CPU only. Also rewrite_commands + apply_commands for hashes with field TTLs (the REWRITE path) against
RESTORE of plain hashes of the same size.

Run: .venv/bin/python bench/dump_convert.py [KEYS]   (needs the provisioned servers in .servers)
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.sandbox import LocalServer, load_manifest
from migrate.identity import identify
from migrate.rdb.dump import Action, Planner
from migrate.rdb.rewrite import rewrite_commands
from migrate.rdb.values import HashValue
from migrate.run.transactions import apply_commands
from migrate.wire import Channel

BATCH = 1000


def populate(client, keys: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        kind = i % 5
        if kind == 0:
            pipe.set(f"s:{i}", "x" * 100)
        elif kind == 1:
            pipe.hset(f"h:{i}", mapping={"a": i, "b": "y" * 40})
        elif kind == 2:
            pipe.rpush(f"l:{i}", *range(10))
        elif kind == 3:
            pipe.sadd(f"t:{i}", *(f"m{j}" for j in range(8)))
        else:
            pipe.zadd(f"z:{i}", {f"m{j}": j / 3 for j in range(8)})
        if i % BATCH == BATCH - 1:
            pipe.execute()
    pipe.execute()


def dump_all(client) -> list[tuple[bytes, bytes]]:
    keys = list(client.scan_iter(count=BATCH))
    out = []
    for at in range(0, len(keys), BATCH):
        chunk = keys[at:at + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.dump(key)
        out.extend(zip(chunk, pipe.execute(), strict=True))
    return out


def restore_all(client, items: list[tuple[bytes, bytes]]) -> float:
    start = time.perf_counter()
    for at in range(0, len(items), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, payload in items[at:at + BATCH]:
            pipe.restore(key, 0, payload, replace=True)
        pipe.execute()
    return time.perf_counter() - start


def main() -> None:
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    binaries = load_manifest()
    source = LocalServer(binaries["redis-8.0.6"]).start()
    target = LocalServer(binaries["valkey-8.1"]).start()
    try:
        populate(source.client(), keys)
        items = dump_all(source.client())
        tclient = target.client()
        planner = Planner(identify(tclient))
        start = time.perf_counter()
        plans = [planner.plan(payload) for _, payload in items]
        plan_s = time.perf_counter() - start
        assert all(p.action is Action.RESTAMP for p in plans)
        restamped = [(key, p.payload) for (key, _), p in zip(items, plans, strict=True) if p.payload is not None]
        restore_s = restore_all(tclient, restamped)
        rewrite_s, hrestore_s, hashes = rewrite_vs_restore(source.client(), tclient, keys // 10)
        report(keys, plan_s, restore_s, hashes, rewrite_s, hrestore_s, source, target)
    finally:
        source.stop()
        target.stop()


def rewrite_vs_restore(source, target, count: int) -> tuple[float, float, int]:
    """REWRITE path for `count` hashes of 5 fields vs RESTORE of the same hashes (DUMPed from a plain copy)."""
    ident = identify(target).capabilities
    values = {f"hr:{i}".encode(): HashValue({b"f%d" % j: b"v" * 20 for j in range(5)}) for i in range(count)}
    target.flushall()
    start = time.perf_counter()
    channel = Channel.over(target, "target")
    apply_commands(channel, (c for k, v in values.items() for c in rewrite_commands(
        k, v, target=ident, expire_at_ms=None, keep_field_ttls=False)))
    channel.close()
    rewrite_s = time.perf_counter() - start
    pipe = source.pipeline(transaction=False)
    for key, value in values.items():
        pipe.hset(key, mapping=value.fields)
    pipe.execute()
    dumped = [(k, p) for k, p in dump_all(source) if k.startswith(b"hr:")]
    planner = Planner(ident)
    restamped = [(k, planner.plan(p).payload) for k, p in dumped]
    target.flushall()
    return rewrite_s, restore_all(target, restamped), count


def report(keys, plan_s, restore_s, hashes, rewrite_s, hrestore_s, source, target) -> None:
    lines = [
        "",
        "## DUMP conversion: planning and rewrite cost (bench/dump_convert.py)",
        "",
        f"- Date: 2026-11-26. Command: `.venv/bin/python bench/dump_convert.py {keys}`. "
        f"Python {platform.python_version()}, source Redis {source.binary.version}, target Valkey "
        f"{target.binary.version}, both local on this 2-core machine.",
        f"- Ours: Planner.plan (CRC check, decision, restamp 12 -> 11) of {keys} mixed payloads: {plan_s:.2f} s "
        f"({keys / plan_s:,.0f} payloads/s).",
        f"- Baseline, same run: pipelined RESTORE of the restamped payloads: {restore_s:.2f} s "
        f"({keys / restore_s:,.0f} keys/s). Planning costs {plan_s / restore_s:.2f}x the RESTORE time.",
        f"- REWRITE path: rewrite_commands + apply_commands of {hashes} hashes of 5 fields: {rewrite_s:.2f} s "
        f"({hashes / rewrite_s:,.0f} keys/s) vs RESTORE of the same hashes {hrestore_s:.2f} s "
        f"({hashes / hrestore_s:,.0f} keys/s): {rewrite_s / hrestore_s:.2f}x.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).resolve().parent / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n")
    with results.open("a") as out:
        out.write(text)


if __name__ == "__main__":
    main()
