"""Server-side digests (DEBUG DIGEST-VALUE): where both servers allow DEBUG, equal digests settle a value without
reading it. Which types and releases agree is a fact (migrate.facts.digests); whether DEBUG is allowed is asked once
per verification (a refusal at any later point only sends the keys to another method: never an error).

A digest of a value costs its server more CPU than a DUMP of it (facts.digests): reading no value pays where the
network or the verifier's CPU is the bottleneck, or for values over the DUMP limit that would otherwise be read in
chunks. `--server-digests big` uses it for those only, `always` for every value of a type it covers, `never` (the
default: on the measured machines it never won) not at all. Values up to DIGEST_LIMIT only: one digest blocks its
server for the whole value, like the DUMP of a key of that size by `migrate run`.
"""

from __future__ import annotations

from typing import Any, Final

from migrate.facts.digests import digests_agree
from migrate.identity import ServerIdentity
from migrate.wire import Channel, is_error, pack

DIGEST_LIMIT: Final = 16 * 1024 * 1024  # bytes of MEMORY USAGE: the default --big-key-threshold of `migrate run`
PROBE: Final = pack((b"DEBUG", b"DIGEST-VALUE"))  # no key: an empty array where DEBUG is allowed
KINDS: Final = (b"string", b"list", b"set", b"hash", b"zset")


def allowed(channel: Channel) -> bool:
    """Whether this connection may run DEBUG DIGEST-VALUE (disabled by configuration, ACL or renaming: no)."""
    reply: Any = channel.call(PROBE, 1)[0]
    return not is_error(reply) and isinstance(reply, list)


def agreeing_kinds(source: ServerIdentity, target: ServerIdentity, field_ttls: bool) -> frozenset[bytes]:
    """The types whose digests these two releases compute alike; hashes not where either side may hold field TTLs
    (the digest has no TTL times)."""
    src, tgt = (source.product, source.version), (target.product, target.version)
    return frozenset(kind for kind in KINDS if digests_agree(kind.decode(), src, tgt)
                     and not (kind == b"hash" and field_ttls))


def command(keys: list[bytes]) -> bytes:
    return pack((b"DEBUG", b"DIGEST-VALUE", *keys))
