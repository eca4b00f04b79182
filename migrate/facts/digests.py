"""DEBUG DIGEST-VALUE: what the server-side digest of a value covers, and which releases give the same digest for the
same logical value.

`DEBUG DIGEST-VALUE key [key ...]` answers one 40-hex-digit SHA1-based digest per key (all zeros for a missing key),
computed by debug.c's xorObjectDigest: the type, a flag for "has an expiry" (not its time), and the value walked
element by element whatever the encoding (ordered types mixed in order, sets and hashes XORed per element). DEBUG is
refused unless the server allows it: Redis 7.0+ and every Valkey start with `enable-debug-command no` (`yes` or
`local` enables it; it cannot be changed at run time); Redis 6.x always allows it. ACL users need +debug.

Measured on this project's machines (2026-12-01, /tmp scripts recorded in bench/RESULTS.md, "verify: server-side
digests"): Redis 6.0.16, 7.0.15, 8.0.2, 8.0.6, Valkey 8.0.1, 8.1.1, 9.1.2, each once with default encodings and once
with every compact encoding switched off (hashtable, skiplist, quicklist, hashtable sets):
- strings (raw, embstr, int), lists, sets (intset, listpack, hashtable) and hashes without field TTLs: one digest per
  value across every release and encoding;
- zsets: two families. Redis up to 7.0 prints each score with "%.17g" before mixing it, Redis 8.0 and Valkey print
  the shortest form that reads back exactly (from Redis 7.2 on, which Valkey forked); digests agree within a family,
  and across the two only when every score is an integer (both print it alike);
- hashes with field TTLs: Redis 8.0 mixes a flag per field that has a TTL, Valkey 9.1 ignores field TTLs; neither
  includes the TTL's time, so the digest never proves field TTLs;
- streams: the entries only; consumer groups, pending entries and the stream's metadata are not part of it;
- module values: whatever the module's digest callback computes (nothing, without one): never a proof.
Cost (server CPU per value, commandstats, same machines): about 2 us for a 100-byte string, 6-9 us for a 20-member
set, 10-11 us for a 20-element list, 22 us for a 20-field hash, 22-31 us for a 20-member zset, 4-5 us for a one-entry
stream, against 0.4-3.8 us for a DUMP of the same value: a digest reads no value but costs the server more.
"""

from __future__ import annotations

from typing import Final

from migrate.facts.releases import Version

# Logical types whose digest covers the whole value (hashes: except the times of field TTLs), so that equal digests
# prove equal values. Streams (entries only) and module values are not among them.
DIGEST_COVERS_VALUE: Final = frozenset({"string", "list", "set", "hash", "zset"})
# The first release of each product that prints zset scores in their shortest exact form inside the digest.
SHORTEST_SCORES_FROM: Final[dict[str, Version]] = {"redis": (7, 2), "valkey": (7, 2)}
# Releases that allow DEBUG without a configuration change (enable-debug-command appeared in Redis 7.0).
DEBUG_ALLOWED_BEFORE: Final[dict[str, Version]] = {"redis": (7, 0)}


def zset_score_family(product: str, version: Version) -> str:
    first = SHORTEST_SCORES_FROM.get(product)
    return "shortest" if first is not None and version >= first else "%.17g"


def digests_agree(kind: str, source: tuple[str, Version], target: tuple[str, Version]) -> bool:
    """Whether these two releases give equal digests for equal values of this logical type, so that the digest can
    settle such values (hashes: only where neither side may hold field TTLs; the caller knows that). Equal digests
    of a type in DIGEST_COVERS_VALUE prove equal values whatever the releases; this says whether they can be hoped
    for."""
    if kind == "zset":
        return zset_score_family(*source) == zset_score_family(*target)
    return kind in DIGEST_COVERS_VALUE
