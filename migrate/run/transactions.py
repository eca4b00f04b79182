"""Apply a sequence of commands that rebuilds keys (migrate.rdb.rewrite) to a target, in MULTI/EXEC batches.

A batch is one transaction, so a refused write (OOM, NOPERM) aborts its whole batch and no later batch is sent: a key
built under a temporary name never reaches its RENAME half-written (the temporary key expires by itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from migrate.connection import translate
from migrate.errors import MigrateError, MigrationError
from migrate.rdb.rewrite import Command, command_bytes
from migrate.render import display_key
from migrate.run.targets import TargetLink, as_target
from migrate.wire import Channel, is_error, pack

TRANSACTION_BYTES: Final = 8 * 1024 * 1024
TRANSACTION_COMMANDS: Final = 1000


def apply_commands(channel: Channel | TargetLink, commands: Iterable[Command], *,
                   batch_bytes: int = TRANSACTION_BYTES, batch_commands: int = TRANSACTION_COMMANDS) -> int:
    """Send the commands in transactions of at most `batch_bytes` / `batch_commands`; return how many were sent.

    The commands rebuild one key (its temporary key is in the same slot): on a cluster each transaction goes to the
    primary owning that slot. A refused command raises our error for it (OOM, READONLY, NOPERM keep their class and
    hint; any other refusal is a MigrationError naming the command and its key).
    """
    target = as_target(channel)
    sent = 0
    for batch in _batches(commands, batch_bytes, batch_commands):
        replies = target.unit(key_of(batch[0]), [pack(c) for c in batch])
        failed = _first_failure(batch, replies)
        if failed is not None:
            raise _refused(target, *failed)
        sent += len(batch)
    return sent


def key_of(command: Command) -> bytes:
    """The key a rewriter's command writes (XGROUP names it after its subcommand)."""
    at = 2 if command[0] == "XGROUP" else 1
    key = command[at] if len(command) > at else b""
    return key if isinstance(key, bytes) else str(key).encode()


def _batches(commands: Iterable[Command], batch_bytes: int, batch_commands: int) -> Iterator[list[Command]]:
    batch: list[Command] = []
    size = 0
    for command in commands:
        cost = command_bytes(command)
        if batch and (size + cost > batch_bytes or len(batch) >= batch_commands):
            yield batch
            batch, size = [], 0
        batch.append(command)
        size += cost
    if batch:
        yield batch


def _first_failure(batch: list[Command], replies: list[Any]) -> tuple[Command, Any] | None:
    """The first refused command: refused when queued (its QUEUED reply is an error, EXEC then aborts), or failed
    inside EXEC (an error among EXEC's replies), or EXEC itself refused."""
    queued, executed = replies[1:-1], replies[-1]
    for command, reply in zip(batch, queued, strict=True):
        if is_error(reply):
            return command, reply
    if is_error(executed):
        return batch[0], executed
    for command, reply in zip(batch, executed or (), strict=False):
        if is_error(reply):
            return command, reply
    return None


def _refused(channel: TargetLink, command: Command, reply: Any) -> MigrateError:
    error = translate(reply, channel.endpoint, channel.role)
    if type(error) is not MigrationError:
        return error  # OOM, NOPERM, READONLY: their own class and hint
    at = 2 if command[0] == "XGROUP" else 1  # where the key is in the rewriter's commands
    key = command[at] if len(command) > at else b""
    shown = display_key(key) if isinstance(key, bytes | str) else str(key)
    name = command[0].decode() if isinstance(command[0], bytes) else str(command[0])
    return MigrationError(f"target refused {name} (key {shown}, db {channel.db}): {' '.join(str(reply).split())}")
