"""Deterministic sampling by a seeded hash of the key name (no RANDOMKEY: it repeats keys and cannot be replayed).

A key is sampled when hash(seed, name) <= a threshold. The same rule applied on the target picks the same names, so
both directions of the comparison look at the same subset. `--sample-percent P` uses P/100 as the threshold;
`--sample N` first scans the names and keeps the N smallest hashes (memory: N names), so exactly N keys are verified.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass

SCALE = float(2**64)


def key_hash(key: bytes, seed: int) -> float:
    digest = hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "big", signed=True)).digest()
    return int.from_bytes(digest, "big") / SCALE


@dataclass(frozen=True)
class Sampler:
    mode: str  # all | percent | count
    threshold: float = 1.0
    seed: int = 0

    def wants(self, key: bytes) -> bool:
        return self.mode == "all" or key_hash(key, self.seed) <= self.threshold


class BottomK:
    """The k keys (with their db) of smallest hash: an exact-size, replayable sample."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.seed = seed
        self.heap: list[tuple[float, int, bytes]] = []  # (-hash, db, key): the root is the largest hash kept
        self.members: set[tuple[int, bytes]] = set()  # SCAN may return a key twice
        self.seen = 0

    def offer(self, db: int, key: bytes) -> None:
        if (db, key) in self.members:
            return
        self.seen += 1
        item = (-key_hash(key, self.seed), db, key)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
            self.members.add((db, key))
        elif item > self.heap[0]:
            _, old_db, old_key = heapq.heapreplace(self.heap, item)
            self.members.discard((old_db, old_key))
            self.members.add((db, key))

    @property
    def threshold(self) -> float:
        return -self.heap[0][0] if self.heap else 0.0

    def keys_by_db(self) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        for _, db, key in sorted(self.heap, key=lambda item: (item[1], item[2])):
            out.setdefault(db, []).append(key)
        return out
