"""Stage 1 of the translation: a source command that is not its own effect becomes its effect, whatever the target.

Each handler takes the command and the stream's context and returns the commands with the same effect (empty: no
data effect). Relative times become absolute ones computed from the time the command was RECEIVED (the source applied
it then; applying it later on the target must not move its expiry). Facts: migrate/stream/table.py.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from migrate.stream.model import Argv

PXAT: Final = b"PXAT"
SCRIPT_MEMORY: Final = 10_000  # script bodies remembered for EVALSHA -> EVAL (oldest forgotten first)


@dataclass
class Context:
    """What stage 1 needs besides the command: the receive time and the scripts seen so far."""

    now_ms: int = 0  # when the command was received (the caller's clock when it gives none)
    forward_publish: bool = False
    scripts: OrderedDict[bytes, bytes] = field(default_factory=OrderedDict)  # sha1 hex (lower case) -> body

    def remember(self, body: bytes) -> None:
        sha = hashlib.sha1(body, usedforsecurity=False).hexdigest().encode()
        self.scripts[sha] = body
        self.scripts.move_to_end(sha)
        if len(self.scripts) > SCRIPT_MEMORY:
            self.scripts.popitem(last=False)


Handler = Callable[[Argv, Context], tuple[Argv, ...]]


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _at(now_ms: int, amount: bytes, unit_ms: int) -> bytes | None:
    """now + amount * unit, as the absolute milliseconds a server would have computed (None: not a number)."""
    n = _int(amount)
    return None if n is None else b"%d" % (now_ms + n * unit_ms)


def _abs_ms(option: bytes, amount: bytes, now_ms: int) -> bytes | None:
    """An EX/PX/EXAT/PXAT option's time as absolute milliseconds."""
    n = _int(amount)
    if n is None:
        return None
    relative, unit = _SCALES[option]
    return b"%d" % ((now_ms if relative else 0) + n * unit)


_SCALES: Final = {b"ex": (True, 1000), b"px": (True, 1), b"exat": (False, 1000), b"pxat": (False, 1)}
"""A time option (lower case) -> (relative to the time received, its unit in milliseconds)."""

_TIME_OPTIONS: Final = frozenset(_SCALES)
RELATIVE_UNITS: Final = {option: unit for option, (relative, unit) in _SCALES.items() if relative}
"""A relative time option (lower case) -> its unit in milliseconds."""
_RELATIVE: Final = frozenset(RELATIVE_UNITS)


def _times_to_pxat(argv: Argv, start: int, options: frozenset[bytes], ctx: Context) -> tuple[Argv, ...]:
    """argv with each of `options` (EX, PX, EXAT: an option followed by a time) from `start` on as PXAT <ms>."""
    out = list(argv[:start])
    i = start
    changed = False
    while i < len(argv):
        option = argv[i].lower()
        if option in options and i + 1 < len(argv):
            at = _abs_ms(option, argv[i + 1], ctx.now_ms)
            if at is not None:
                out += (PXAT, at)
                changed = True
                i += 2
                continue
        out.append(argv[i])
        i += 1
    return (tuple(out),) if changed else (argv,)


def set_(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """SET key value [NX|XX] [GET] [EX s|PX ms|EXAT|PXAT|KEEPTTL]: EX/PX become PXAT (6.0 replication streams)."""
    if len(argv) <= 3:
        return (argv,)
    return _times_to_pxat(argv, 3, _RELATIVE, ctx)


def setex(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """SETEX key seconds value -> SET key value PXAT ms."""
    return _set_with(argv, ctx, 1000)


def psetex(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    return _set_with(argv, ctx, 1)


def _set_with(argv: Argv, ctx: Context, unit_ms: int) -> tuple[Argv, ...]:
    at = _at(ctx.now_ms, argv[2], unit_ms) if len(argv) == 4 else None
    return (argv,) if at is None else ((b"SET", argv[1], argv[3], PXAT, at),)


def expire(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """EXPIRE key seconds [NX|XX|GT|LT] -> PEXPIREAT key ms [condition]."""
    return _expire_at(argv, ctx, 1000, b"PEXPIREAT")


def pexpire(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    return _expire_at(argv, ctx, 1, b"PEXPIREAT")


def _expire_at(argv: Argv, ctx: Context, unit_ms: int, name: bytes) -> tuple[Argv, ...]:
    at = _at(ctx.now_ms, argv[2], unit_ms) if len(argv) >= 3 else None
    return (argv,) if at is None else ((name, argv[1], at, *argv[3:]),)


def getex(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """GETEX key [EX|PX|EXAT|PXAT t | PERSIST] -> PEXPIREAT key ms / PERSIST key / nothing (a plain read)."""
    if len(argv) == 2:
        return ()
    option = argv[2].lower()
    if option == b"persist":
        return ((b"PERSIST", argv[1]),)
    if option in _TIME_OPTIONS and len(argv) == 4:
        at = _abs_ms(option, argv[3], ctx.now_ms)
        if at is not None:
            return ((b"PEXPIREAT", argv[1], at),)
    return (argv,)


def getdel(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """GETDEL key -> DEL key (Redis already propagates it so)."""
    return ((b"DEL", *argv[1:]),)


def restore(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """RESTORE key ttl payload [...] with a relative ttl -> absolute ttl + ABSTTL (Redis 6.0 streams and AOFs)."""
    if len(argv) < 4 or any(a.lower() == b"absttl" for a in argv[4:]):
        return (argv,)
    ttl = _int(argv[2])
    if not ttl:
        return (argv,)
    return ((argv[0], argv[1], b"%d" % (ctx.now_ms + ttl), *argv[3:], b"ABSTTL"),)


def hexpire(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """HEXPIRE key seconds [cond] FIELDS n f... -> HPEXPIREAT key ms [cond] FIELDS n f..."""
    return _expire_at(argv, ctx, 1000, b"HPEXPIREAT")


def hpexpire(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    return _expire_at(argv, ctx, 1, b"HPEXPIREAT")


def hexpireat(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """HEXPIREAT key unix-seconds ... -> HPEXPIREAT key unix-ms ... (one form for the fallback to handle)."""
    n = _int(argv[2]) if len(argv) >= 3 else None
    return (argv,) if n is None else ((b"HPEXPIREAT", argv[1], b"%d" % (n * 1000), *argv[3:]),)


def hgetex(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """HGETEX key [EX|PX|EXAT|PXAT t | PERSIST] FIELDS n f... -> HPEXPIREAT / HPERSIST / nothing (a plain read)."""
    if len(argv) < 3:
        return (argv,)
    option = argv[2].lower()
    if option == b"fields":
        return ()
    if option == b"persist":
        return ((b"HPERSIST", argv[1], *argv[3:]),)
    if option in _TIME_OPTIONS and len(argv) >= 4:
        at = _abs_ms(option, argv[3], ctx.now_ms)
        if at is not None:
            return ((b"HPEXPIREAT", argv[1], at, *argv[4:]),)
    return (argv,)


def hgetdel(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """HGETDEL key FIELDS n f... -> HDEL key f... (what Redis propagates; Valkey 9.1 sends HGETDEL itself)."""
    if len(argv) < 5 or argv[2].lower() != b"fields":
        return (argv,)
    return ((b"HDEL", argv[1], *argv[4:]),)


def msetex(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """MSETEX numkeys k v ... [NX|XX] [EX|PX|EXAT t | PXAT | KEEPTTL]: a relative or second-based TTL -> PXAT."""
    n = _int(argv[1]) if len(argv) > 1 else None
    if n is None:
        return (argv,)
    return _times_to_pxat(argv, 2 + 2 * n, frozenset({b"ex", b"px", b"exat"}), ctx)


def eval_(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    if len(argv) > 1:
        ctx.remember(argv[1])
    return (argv,)


def evalsha(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """EVALSHA sha ... -> EVAL body ... when the body was seen (EVAL or SCRIPT LOAD earlier in the stream)."""
    body = ctx.scripts.get(argv[1].lower()) if len(argv) > 1 else None
    return (argv,) if body is None else ((b"EVAL", body, *argv[2:]),)


def script(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    """SCRIPT LOAD is sent on (the target then has the script for EVALSHA) and remembered; SCRIPT FLUSH is sent on;
    other subcommands have no effect."""
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub == b"load" and len(argv) == 3:
        ctx.remember(argv[2])
        return (argv,)
    return (argv,) if sub == b"flush" else ()


def publish(argv: Argv, ctx: Context) -> tuple[Argv, ...]:
    return (argv,) if ctx.forward_publish else ()


def set_is_its_effect(argv: Sequence[bytes]) -> bool:
    """SET without a relative expiry (EX / PX) is its own effect: `SET k v PXAT ms` as Redis 7+ AOFs write it."""
    return _RELATIVE.isdisjoint(map(bytes.lower, argv[3:]))  # in C: on the hot path of every stream


OWN_EFFECT: Final[dict[str, Callable[[Argv], bool]]] = {"set": set_is_its_effect}
"""Per EFFECT command: a test that a command needs no stage-1 handler (it is its own effect), for the hot path."""

STATELESS: Final = frozenset({"set", "setex", "psetex", "expire", "pexpire", "getex", "getdel", "restore", "hexpire",
                               "hpexpire", "hexpireat", "hgetex", "msetex"})
"""Handlers that read nothing but the command and the clock (not the scripts seen, not the options): a caller may
run one to see whether a command rewrites into one, and fall back to the full path without a trace."""

TAIL_RELATIVE: Final = frozenset({"set"})
"""Commands whose handler, when their last two arguments are a relative time (EX/PX n) and no other argument is one,
only replaces those two by PXAT <received + n>: a caller holding the source's bytes may keep the rest of them."""

HANDLERS: Final[dict[str, Handler]] = {
    "set": set_, "setex": setex, "psetex": psetex, "expire": expire, "pexpire": pexpire, "getex": getex,
    "getdel": getdel, "restore": restore, "hexpire": hexpire, "hpexpire": hpexpire, "hexpireat": hexpireat,
    "hgetex": hgetex, "hgetdel": hgetdel, "msetex": msetex, "eval": eval_, "evalsha": evalsha, "script": script,
    "publish": publish,
}
"""Handler name (table.Entry.handler) -> function."""
