"""Rebuild a decoded value on a target with plain commands, for payloads the target cannot RESTORE.

Atomicity: a value one write command holds (a string, a small list/set/zset/hash without field TTLs) is written as
DEL + that command (SET alone for strings): never half-written, at worst briefly absent between DEL and the write
when they fall in different batches. Every value that needs more writes is built under a temporary key in the same
cluster slot (`{<tag>}migrate-tmp:<random>`, the tag chosen to hash to the real key's slot) and then RENAMEd over the
real key, so the real key is never seen half-written, whatever the batching, and an existing key is replaced in one
step. The temporary key gets a one-hour TTL right after its first write: a run that dies mid-key leaves garbage that
expires by itself. After the RENAME the real key gets its absolute expiry (PEXPIREAT) or loses the temporary one
(PERSIST). DEL + many writes to the real key instead would need MULTI around the whole sequence, which a big key
(many batches) or a cluster client cannot have.

Chunking: no command is over `max_command_bytes` (RESP-encoded size), except a single element that is itself bigger
(a list element, a field value or a stream entry cannot be split; strings can, with APPEND).

What commands cannot rebuild (rewrite_losses says it per value): consumer seen-time/active-time (XCLAIM and
XGROUP CREATECONSUMER set them to now); pending entries whose stream entry was deleted (XCLAIM FORCE skips ids that
are not in the stream: measured on Redis 6.0 to Valkey 9.1); on targets without the commands: field TTLs (HPEXPIREAT,
Redis 7.4+ / Valkey 9.0+), consumers without pending entries (XGROUP CREATECONSUMER, Redis 6.2+), entries-added,
max-deleted-id and entries-read (XSETID / XGROUP CREATE options, Redis 7.0+).
"""

from __future__ import annotations

import binascii
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Final, cast

from migrate.errors import MigrateError
from migrate.facts.capabilities import Capabilities
from migrate.rdb.values import HashValue, ModuleValue, StreamGroup, StreamId, StreamValue, Value
from migrate.render import display_key

Arg = bytes | str | int | float
Command = tuple[Arg, ...]

MiB: Final = 1024 * 1024
DEFAULT_MAX_COMMAND_BYTES: Final = 8 * MiB
TEMP_KEY_TTL_MS: Final = 3_600_000  # long enough for any one key, short enough for a crashed run's leftovers
TEMP_KEY_MARK: Final = b"migrate-tmp:"
CLUSTER_SLOTS: Final = 16384


class UnsupportedValueError(MigrateError):
    """A value no command sequence can rebuild (module values)."""

    default_hint = "module values need the same module on the target; use --on-incompatible skip"


def rewrite_commands(key: bytes, value: Value, *, target: Capabilities, expire_at_ms: int | None,
                     max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES, keep_field_ttls: bool,
                     now_ms: int | None = None) -> Iterator[Command]:
    """The commands that make `key` hold `value` (replacing whatever is there), expiring at `expire_at_ms`.

    A key already expired (`expire_at_ms` <= now) and hash fields already expired are not written: the sequence then
    only deletes the key. `keep_field_ttls` needs a target with HPEXPIREAT (ValueError otherwise).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if isinstance(value, ModuleValue):
        raise UnsupportedValueError(f"module value {value.type_name!r} of key {display_key(key)} cannot be rewritten")
    if keep_field_ttls and not target.hash_field_ttl:
        raise ValueError(f"{target.label} has no HPEXPIREAT: field TTLs cannot be kept")
    value = _without_expired_fields(value, now)
    if (expire_at_ms is not None and expire_at_ms <= now) or _is_empty(value):
        yield ("DEL", key)
        return
    first_two = list(itertools.islice(_writes(key, value, target, max_command_bytes, keep_field_ttls), 2))
    if len(first_two) == 1:
        yield from _direct(key, first_two[0], expire_at_ms)
    else:
        yield from _via_temp_key(key, value, target, expire_at_ms, max_command_bytes, keep_field_ttls)


def _direct(key: bytes, write: Command, expire_at_ms: int | None) -> Iterator[Command]:
    """A value that one command writes: nothing is ever half-written (SET replaces by itself, others after DEL)."""
    if write[0] != "SET":
        yield ("DEL", key)
    yield write
    if expire_at_ms is not None:
        yield ("PEXPIREAT", key, expire_at_ms)


def _via_temp_key(key: bytes, value: Value, target: Capabilities, expire_at_ms: int | None, limit: int,
                  keep_field_ttls: bool) -> Iterator[Command]:
    tmp = temp_key(key)
    writes = _writes(tmp, value, target, limit, keep_field_ttls)
    yield next(writes)
    yield ("PEXPIRE", tmp, TEMP_KEY_TTL_MS)
    yield from writes
    yield ("RENAME", tmp, key)
    yield ("PEXPIREAT", key, expire_at_ms) if expire_at_ms is not None else ("PERSIST", key)


def _writes(key: bytes, value: Value, target: Capabilities, limit: int, keep_field_ttls: bool) -> Iterator[Command]:
    if isinstance(value, bytes):
        return _string(key, value, limit)
    if isinstance(value, set):
        return batched(("SADD", key), ((m,) for m in value), limit)
    if isinstance(value, HashValue):
        return _hash(key, value, limit, keep_field_ttls)
    if isinstance(value, StreamValue):
        return _stream(key, value, target, limit)
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return batched(("ZADD", key), ((score_arg(s), m) for m, s in value), limit)
    if isinstance(value, list):
        return batched(("RPUSH", key), ((e,) for e in cast(list[bytes], value)), limit)
    raise TypeError(f"not a decoded value: {type(value).__name__}")


def _string(key: bytes, value: bytes, limit: int) -> Iterator[Command]:
    step = max(1, limit - command_bytes(("APPEND", key, b"")) - len(str(limit)))  # room for the length's digits
    yield ("SET", key, value[:step])
    for at in range(step, len(value), step):
        yield ("APPEND", key, value[at:at + step])


def _hash(key: bytes, value: HashValue, limit: int, keep_field_ttls: bool) -> Iterator[Command]:
    yield from batched(("HSET", key), value.fields.items(), limit)
    if not keep_field_ttls:
        return
    by_time: dict[int, list[bytes]] = {}
    for name, at_ms in value.field_expiry_ms.items():
        if name in value.fields:
            by_time.setdefault(at_ms, []).append(name)
    for at_ms, names in by_time.items():
        for chunk in batched((), ((n,) for n in names), limit - command_bytes(("HPEXPIREAT", key, at_ms, "FIELDS",
                                                                                 len(names)))):
            yield ("HPEXPIREAT", key, at_ms, "FIELDS", len(chunk), *chunk)


def _stream(key: bytes, value: StreamValue, target: Capabilities, limit: int) -> Iterator[Command]:
    if not value.entries:
        # An empty stream exists only through XADD + trim (or MKSTREAM); XSETID below restores its last id.
        first = value.last_id if value.last_id > (0, 0) else (0, 1)
        yield ("XADD", key, "MAXLEN", 0, stream_id(first), "_", b"")
    for entry in value.entries:
        yield ("XADD", key, stream_id(entry.id), *itertools.chain.from_iterable(entry.fields))
    yield _xsetid(key, value, target)
    for group in value.groups:
        yield from _group(key, group, target, limit)


def _xsetid(key: bytes, value: StreamValue, target: Capabilities) -> Command:
    command: Command = ("XSETID", key, stream_id(value.last_id))
    if not target.has("XSETID ENTRIESADDED"):
        return command
    # Like the servers loading an older RDB: without recorded counters, entries-added is the length.
    added = value.entries_added if value.entries_added is not None else value.length
    return (*command, "ENTRIESADDED", added, "MAXDELETEDID", stream_id(value.max_deleted_id or (0, 0)))


def _group(key: bytes, group: StreamGroup, target: Capabilities, limit: int) -> Iterator[Command]:
    create: Command = ("XGROUP", "CREATE", key, group.name, stream_id(group.last_id))
    if group.entries_read is not None and target.has("XGROUP CREATE ENTRIESREAD"):
        create = (*create, "ENTRIESREAD", _signed(group.entries_read))
    yield create
    if target.has("XGROUP CREATECONSUMER"):
        for member in group.consumers:
            yield ("XGROUP", "CREATECONSUMER", key, group.name, member.name)
    claims: dict[tuple[bytes, int, int], list[StreamId]] = {}
    for pending in group.pending:
        claims.setdefault((pending.consumer, pending.delivery_time_ms, pending.delivery_count), []).append(pending.id)
    for (consumer, at_ms, count), ids in claims.items():
        head: Command = ("XCLAIM", key, group.name, consumer, 0)
        tail: Command = ("TIME", at_ms, "RETRYCOUNT", count, "FORCE", "JUSTID")
        for chunk in batched(head, ((stream_id(i),) for i in ids), limit - command_bytes(tail)):
            yield (*chunk, *tail)


def _signed(entries_read: int) -> int:
    """entries-read "unknown" is -1 to the commands; an RDB stores it as the unsigned 2**64 - 1."""
    return entries_read - (1 << 64) if entries_read >= 1 << 63 else entries_read


def rewrite_losses(value: Value, target: Capabilities, *, keep_field_ttls: bool) -> tuple[str, ...]:
    """What rewrite_commands cannot rebuild of this value on this target, in words for the report."""
    if isinstance(value, HashValue) and value.field_expiry_ms and not (keep_field_ttls and target.hash_field_ttl):
        return ("field TTLs",)
    if isinstance(value, StreamValue):
        return _stream_losses(value, target)
    return ()


def _stream_losses(value: StreamValue, target: Capabilities) -> tuple[str, ...]:
    has = target.has
    losses = []
    if any(g.consumers for g in value.groups):
        losses.append("consumer seen-time and active-time")
    idle = sum(1 for g in value.groups for c in g.consumers if not c.pending)
    if idle and not has("XGROUP CREATECONSUMER"):
        losses.append(f"{idle} consumers without pending entries")
    missing = _pending_of_deleted_entries(value)
    if missing:
        losses.append(f"{missing} pending entries of deleted stream entries")
    if (value.entries_added is not None or value.max_deleted_id) and not has("XSETID ENTRIESADDED"):
        losses.append("stream entries-added and max-deleted-id")
    if any(g.entries_read is not None for g in value.groups) and not has("XGROUP CREATE ENTRIESREAD"):
        losses.append("consumer group entries-read")
    return tuple(losses)


def _pending_of_deleted_entries(value: StreamValue) -> int:
    wanted = {p.id for g in value.groups for p in g.pending}
    if not wanted:
        return 0
    present = {e.id for e in value.entries if e.id in wanted}
    return sum(1 for g in value.groups for p in g.pending if p.id not in present)


def _without_expired_fields(value: Value, now_ms: int) -> Value:
    if not isinstance(value, HashValue) or not value.field_expiry_ms:
        return value
    gone = {name for name, at_ms in value.field_expiry_ms.items() if at_ms <= now_ms}
    if not gone:
        return value
    return HashValue({k: v for k, v in value.fields.items() if k not in gone},
                     {k: t for k, t in value.field_expiry_ms.items() if k not in gone})


def _is_empty(value: Value) -> bool:
    if isinstance(value, HashValue):
        return not value.fields
    if isinstance(value, list | set):
        return not value
    return False


# --- arguments and sizes ---------------------------------------------------------------------------------------------

def stream_id(sid: StreamId) -> bytes:
    return b"%d-%d" % sid


def score_arg(score: float) -> bytes:
    """A zset score exactly: repr() is the shortest text that reads back as the same double ('inf', '-inf' too)."""
    return repr(float(score)).encode()


def arg_bytes(arg: Arg) -> int:
    if isinstance(arg, bytes):
        n = len(arg)
    elif isinstance(arg, str):
        n = len(arg.encode())
    else:
        n = len(repr(arg))
    return n + len(str(n)) + 5  # "$<n>\r\n<arg>\r\n"


def command_bytes(command: Sequence[Arg]) -> int:
    return len(str(len(command))) + 3 + sum(arg_bytes(a) for a in command)  # "*<argc>\r\n" + arguments


def batched(head: Command, items: Iterable[Sequence[Arg]], limit: int) -> Iterator[Command]:
    """`head` followed by as many items as fit in `limit` bytes per command; an oversized item goes alone."""
    base = command_bytes(head) + 8  # the argument count grows a few digits
    args: list[Arg] = list(head)
    size, count = base, 0
    for item in items:
        item_size = sum(arg_bytes(a) for a in item)
        if count and size + item_size > limit:
            yield tuple(args)
            args, size, count = list(head), base, 0
        args.extend(item)
        size += item_size
        count += 1
    if count:
        yield tuple(args)


# --- temporary keys in the same cluster slot -------------------------------------------------------------------------

def key_slot(key: bytes) -> int:
    """The cluster hash slot of a key (CRC16/XMODEM of its hash tag, or of the whole key), as the servers compute it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return binascii.crc_hqx(key, 0) % CLUSTER_SLOTS


def slot_tag(slot: int) -> bytes:
    """A short hash tag that lands in `slot`."""
    return _slot_tags()[slot]


@cache
def _slot_tags() -> tuple[bytes, ...]:
    """For each slot, a tag of 1-4 letters or digits hashing to it: ~200k CRC16 once per process (~0.6 s here)."""
    tags: dict[int, bytes] = {}
    for size in range(1, 5):
        for letters in itertools.product(_TAG_ALPHABET, repeat=size):
            tag = bytes(letters)
            tags.setdefault(binascii.crc_hqx(tag, 0) % CLUSTER_SLOTS, tag)
            if len(tags) == CLUSTER_SLOTS:
                return tuple(tags[slot] for slot in range(CLUSTER_SLOTS))
    raise AssertionError("62**4 tags cover every slot")


_TAG_ALPHABET: Final = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def temp_key(key: bytes) -> bytes:
    return b"{" + slot_tag(key_slot(key)) + b"}" + TEMP_KEY_MARK + os.urandom(8).hex().encode()
