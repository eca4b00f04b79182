"""Where the writer's commands go: one connection to a standalone target (`DirectTarget`), or every key to the
primary owning its slot in a cluster (`RoutedTarget`, over migrate.cluster.router.SlotRouter).

The writer speaks in three shapes, each valid on both:
- `restore(keys, commands, resend)`: one single-key command per key (the pipelined RESTOREs of a batch); None when
  every reply was +OK;
- `keyed(key, commands)`: commands on one key's slot, pipelined (a big key's chunks into its temporary key, the
  RENAME over the real key: the temporary key is in the same slot by design, migrate.rdb.rewrite.temp_key);
- `unit(key, commands)`: MULTI + commands + EXEC on that slot, replies of all of them.

A cluster target follows MOVED / ASK / TRYAGAIN / failovers inside the router; a command whose connection broke may
have run and is sent again as `resend(i)` (RESTORE ... REPLACE where that is safe). A transaction whose outcome is
unknown raises UncertainWriteError: the writer redoes that key from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol

from migrate.cluster.router import SlotRouter
from migrate.config import Endpoint
from migrate.rdb.rewrite import key_slot
from migrate.wire import Channel, Reply

MULTI: Final = b"*1\r\n$5\r\nMULTI\r\n"
EXEC: Final = b"*1\r\n$4\r\nEXEC\r\n"


class TargetLink(Protocol):
    endpoint: Endpoint  # for messages: the server, or the seed the cluster was read from
    db: int
    role: str

    def restore(self, keys: Sequence[bytes], commands: Sequence[bytes],
                resend: Callable[[int], bytes] | None = None) -> list[Reply] | None: ...

    def keyed(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]: ...

    def unit(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]: ...

    def close(self) -> None: ...


class DirectTarget:
    """A standalone target: one pipelined channel on one database."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.endpoint = channel.endpoint
        self.db = channel.db
        self.role = channel.role

    def restore(self, keys: Sequence[bytes], commands: Sequence[bytes],
                resend: Callable[[int], bytes] | None = None) -> list[Reply] | None:
        return self.channel.call_ok(b"".join(commands), len(commands))

    def keyed(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]:
        return self.channel.call(b"".join(commands), len(commands))

    def unit(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]:
        return self.channel.call(MULTI + b"".join(commands) + EXEC, len(commands) + 2)

    def close(self) -> None:
        self.channel.close()


class RoutedTarget:
    """A cluster target: every command to the primary owning its key's slot (the router's connections)."""

    def __init__(self, router: SlotRouter) -> None:
        self.router = router
        self.endpoint = router.topology.seed.with_db(router.db)
        self.db = router.db
        self.role = router.role

    def restore(self, keys: Sequence[bytes], commands: Sequence[bytes],
                resend: Callable[[int], bytes] | None = None) -> list[Reply] | None:
        slots = [key_slot(k) for k in keys]
        return self.router.execute(slots, commands, resend=resend, expect_ok=True).replies

    def keyed(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]:
        slot = key_slot(key)
        replies = self.router.execute([slot] * len(commands), commands).replies
        assert replies is not None
        return replies

    def unit(self, key: bytes, commands: Sequence[bytes]) -> list[Reply]:
        return self.router.execute_unit(key_slot(key), commands)

    def close(self) -> None:
        self.router.close()


def as_target(link: Channel | TargetLink) -> TargetLink:
    return DirectTarget(link) if isinstance(link, Channel) else link
