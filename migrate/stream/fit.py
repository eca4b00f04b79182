"""Stage 2 of the translation: fit a (normalized) command to one target release.

A command the target has goes as it is (`Fitter.fit` returns None: the hot path allocates nothing). Otherwise the
answer is an Outcome: an exact equivalent, or an incompatibility with its lossy form if one exists. Which commands a
target has comes from its own command set (COMMAND LIST, the reliable source: modules, renamed or disabled commands)
or, without one, from the facts for its product and release (migrate.facts.commands).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import redis
from redis import exceptions as rex

from migrate.facts.commands import has_command, valkey_lacks
from migrate.identity import ServerIdentity, identify
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.run.convert import CachedPlan, Converter, Rewrite
from migrate.run.policy import Incompatibility
from migrate.stream import table
from migrate.stream.model import Argv, argv_of
from migrate.wire import Channel


@dataclass(frozen=True)
class TargetProfile:
    """The target as the translation sees it: its identity and, best, its command set (lower-case names)."""

    identity: ServerIdentity
    commands: frozenset[str] | None = None  # None: taken from the facts for its product and release

    @classmethod
    def of(cls, client: redis.Redis) -> TargetProfile:
        """Identify a live target and read its command set (COMMAND LIST, or COMMAND's names on older servers)."""
        return cls(identify(client), command_names(client))

    @property
    def label(self) -> str:
        return self.identity.label

    def has(self, name: str) -> bool:
        if self.commands is not None:
            return name in self.commands
        return _has_by_facts(self.identity, name)


def command_names(client: redis.Redis) -> frozenset[str] | None:
    """Lower-case command names the server knows (module commands included); None when it will not say.
    Read raw (redis-py's reply callback for COMMAND does not parse COMMAND LIST)."""
    wire = Channel.over(client)
    try:
        names = wire.command("COMMAND", "LIST")
        if isinstance(names, rex.ResponseError):  # before Redis 7.0: the names of COMMAND's entries
            entries = wire.command("COMMAND")
            names = entries if isinstance(entries, rex.ResponseError) else [entry[0] for entry in entries]
    finally:
        wire.close()
    if isinstance(names, rex.ResponseError):
        return None
    return frozenset(bytes(n).decode("latin-1").lower() for n in names)


def _has_by_facts(identity: ServerIdentity, name: str) -> bool:
    if any(name.startswith(prefix) for prefix in table.MODULE_COMMAND_PREFIXES):
        return False  # module commands: only a command set can say a module provides them
    if name not in table.COMMANDS:
        return True  # every release of every product has the commands the fact table does not track
    return has_command(identity.product, identity.version, name)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command the target cannot take as it is. `reason` empty: `commands` is an exact equivalent. Otherwise it is
    incompatible: `lossy` is what a lossy translation writes (None: there is none) and `losses` what that loses."""

    commands: tuple[Argv, ...] = ()
    reason: str = ""
    lossy: tuple[Argv, ...] | None = None
    losses: tuple[str, ...] = ()


Fallback = Callable[[Argv, "Fitter"], Outcome]

_PASS: Final = 0
_OPTIONS: Final = 1
_FALLBACK: Final = 2
_LACKS: Final = 3
_RESTORE: Final = 4


class Fitter:
    """Stage 2 for one target: one dict lookup per command; decisions for names outside the table are cached."""

    def __init__(self, target: TargetProfile, max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> None:
        self.target = target
        self.converter = Converter(target.identity.capabilities, max_command_bytes)
        self._rules: dict[str, int] = {}
        self._options = {name: opts for name, opts in table.OPTIONS_VALKEY_LACKS.items()
                         if target.identity.product == "valkey"}

    def passes(self, name: str) -> bool:
        """Every command of this name goes to the target as it is (no option or payload to look at)."""
        rule = self._rules.get(name)
        if rule is None:
            rule = self._rules[name] = self._rule(name)
        return rule == _PASS

    def fit(self, name: str, argv: Argv) -> Outcome | None:
        rule = self._rules.get(name)
        if rule is None:
            rule = self._rules[name] = self._rule(name)
        if rule == _PASS:
            return None
        if rule == _OPTIONS:
            return self._check_options(name, argv)
        if rule == _RESTORE:
            return self._restore(argv)
        if rule == _FALLBACK:
            return FALLBACKS[table.FALLBACKS[name].handler](argv, self)
        return Outcome(reason=self.lacks(name))

    def _rule(self, name: str) -> int:
        if name in ("restore", "restore-asking"):
            return _RESTORE
        if not self.target.has(name):
            return _FALLBACK if name in table.FALLBACKS else _LACKS
        return _OPTIONS if name in self._options else _PASS

    def lacks(self, name: str) -> str:
        target = self.target.label
        fact = valkey_lacks(name)
        if fact is not None and fact.redis is not None:
            since = ".".join(map(str, fact.redis))
            later = (f"; Valkey {'.'.join(map(str, fact.valkey))} has it" if fact.valkey else
                     "; no Valkey release has it")
            return f"{name.upper()} ({fact.family}, Redis {since}) does not exist on {target}{later}"
        module = next((m for p, m in table.MODULE_COMMAND_PREFIXES.items() if name.startswith(p)), None)
        if module is not None:
            return f"{name.upper()} is a {module} module command and {target} does not have it"
        return f"{name.upper()} is not a command of {target}"

    def _check_options(self, name: str, argv: Argv) -> Outcome | None:
        """Options of a command the target has, that the target lacks (stream deletion policies, BITOP operations)."""
        rules = self._options[name]
        found = [(i, rules[argv[i].lower()]) for i in _option_positions(name, argv) if argv[i].lower() in rules]
        if not found:
            return None
        refused = [text for _, text in found if text]
        if refused:
            return Outcome(reason=f"{refused[0]} does not exist on {self.target.label}")
        drop = {i for i, _ in found}  # only options that are Valkey's own behaviour are left: drop them
        return Outcome((tuple(a for i, a in enumerate(argv) if i not in drop),))

    def _restore(self, argv: Argv) -> Outcome | None:
        """RESTORE key ttl payload [...]: the payload converted for the target like run's per-key conversion."""
        if len(argv) < 4:
            return None
        key, payload = argv[1], argv[3]
        ttl = int(argv[2]) if argv[2].isdigit() else 0
        decided = self.converter.cached.get((payload[0], payload[-10] | (payload[-9] << 8))) if len(payload) > 10 \
            else None
        if decided is None:
            outcome = self.converter.decide(key, payload, ttl or None)
            if isinstance(outcome, Incompatibility):
                return Outcome(reason=outcome.reason)
            if isinstance(outcome, Rewrite):
                commands = tuple(argv_of(c) for c in outcome.commands)
                if outcome.losses:
                    return Outcome(reason=f"the target cannot hold {', '.join(outcome.losses)}", lossy=commands,
                                   losses=outcome.losses)
                return Outcome(commands)
            decided = outcome
        return _restamped(argv, decided)


def _option_positions(name: str, argv: Argv) -> range | list[int]:
    """Where options may stand: BITOP's operation; every argument of XTRIM; XADD's arguments before the entry id
    (field names and values after it are data, whatever they spell)."""
    if name == "bitop":
        return range(1, min(2, len(argv)))
    if name != "xadd":
        return range(2, len(argv))
    out: list[int] = []
    i = 2
    while i < len(argv):
        low = argv[i].lower()
        if low in (b"maxlen", b"minid"):
            i += 3 if i + 1 < len(argv) and argv[i + 1] in (b"=", b"~") else 2
        elif low == b"limit":
            i += 2
        elif low in (b"nomkstream", b"keepref", b"delref", b"acked"):
            out.append(i)
            i += 1
        else:
            break  # the entry id: the rest is data
    return out


def _restamped(argv: Argv, decided: CachedPlan) -> Outcome | None:
    if decided.restamp_to is None:
        return None
    return Outcome(((*argv[:3], decided.restamp(argv[3]), *argv[4:]),))


# -- fallbacks: what a target that lacks a command gets instead (table.FALLBACKS names them) ------------------------

def _fields_at(argv: Argv) -> int | None:
    """Index of FIELDS in a field-TTL command (the numfields follows it, then the fields)."""
    return next((i for i, a in enumerate(argv) if i >= 2 and a.lower() == b"fields"), None)


def hsetex_as_hset(argv: Argv, fitter: Fitter) -> Outcome:
    """HSETEX key [FNX|FXX] [EX|PX|EXAT|PXAT t | KEEPTTL] FIELDS n f v ... -> HSET key f v ...

    The condition is dropped: the source propagated the command, so it held there. Without a TTL (or with KEEPTTL:
    a target without field TTLs keeps none) the HSET is exact; with a TTL the fields lose it."""
    at = _fields_at(argv)
    if at is None or at + 2 > len(argv):
        return Outcome(reason=fitter.lacks("hsetex"))
    hset = (b"HSET", argv[1], *argv[at + 2:])
    with_ttl = any(a.lower() in (b"ex", b"px", b"exat", b"pxat") for a in argv[2:at])
    if not with_ttl:
        return Outcome((hset,))
    return Outcome(reason=f"{fitter.target.label} has no hash field TTLs (HSETEX with a TTL)", lossy=(hset,),
                   losses=(table.FIELD_TTL_LOSS,))


def nothing(argv: Argv, fitter: Fitter) -> Outcome:
    name = argv[0].decode("latin-1").lower()
    losses = table.FALLBACKS[name].losses
    if not losses:
        return Outcome(())
    return Outcome(reason=f"{fitter.target.label} has no hash field TTLs ({name.upper()})", lossy=(), losses=losses)


def msetex_as_set(argv: Argv, fitter: Fitter) -> Outcome:
    """MSETEX numkeys k v ... [NX|XX] [PXAT ms | KEEPTTL] -> SET k v [PXAT ms | KEEPTTL] per key (exact: the source
    applied it, so NX/XX held; one unit, so atomic on the target)."""
    n = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else -1
    head = 2 + 2 * n
    if n < 1 or head > len(argv):
        return Outcome(reason=fitter.lacks("msetex"))
    tail: list[bytes] = []
    options = argv[head:]
    for i, option in enumerate(options):
        low = option.lower()
        if low == b"keepttl":
            tail.append(b"KEEPTTL")
        elif low in (b"pxat", b"exat", b"ex", b"px") and i + 1 < len(options):
            tail += (option.upper(), options[i + 1])
    sets = tuple((b"SET", argv[2 + 2 * k], argv[3 + 2 * k], *tail) for k in range(n))
    return Outcome(sets)


def _policy_of(argv: Argv, start: int) -> bytes:
    return next((a.lower() for a in argv[start:] if a.lower() in (b"keepref", b"delref", b"acked")), b"keepref")


def _ids(argv: Argv) -> tuple[bytes, ...] | None:
    at = next((i for i, a in enumerate(argv) if i >= 2 and a.lower() == b"ids"), None)
    return None if at is None or at + 2 > len(argv) else argv[at + 2:]


def xdelex_as_xdel(argv: Argv, fitter: Fitter) -> Outcome:
    """XDELEX key [KEEPREF|DELREF|ACKED] IDS n id... -> XDEL key id... for KEEPREF (XDEL's own behaviour)."""
    ids = _ids(argv)
    if ids is None:
        return Outcome(reason=fitter.lacks("xdelex"))
    if _policy_of(argv, 2) != b"keepref":
        return Outcome(reason=f"XDELEX {_policy_of(argv, 2).upper().decode()} has no equivalent on "
                              f"{fitter.target.label}")
    return Outcome(((b"XDEL", argv[1], *ids),))


def xackdel_as_xack_xdel(argv: Argv, fitter: Fitter) -> Outcome:
    """XACKDEL key group [KEEPREF|DELREF|ACKED] IDS n id... -> XACK key group id... + XDEL key id... for KEEPREF."""
    ids = _ids(argv)
    if ids is None or len(argv) < 3:
        return Outcome(reason=fitter.lacks("xackdel"))
    if _policy_of(argv, 3) != b"keepref":
        return Outcome(reason=f"XACKDEL {_policy_of(argv, 3).upper().decode()} has no equivalent on "
                              f"{fitter.target.label}")
    return Outcome(((b"XACK", argv[1], argv[2], *ids), (b"XDEL", argv[1], *ids)))


FALLBACKS: Final[dict[str, Fallback]] = {
    "hsetex_as_hset": hsetex_as_hset, "nothing": nothing, "msetex_as_set": msetex_as_set,
    "xdelex_as_xdel": xdelex_as_xdel, "xackdel_as_xack_xdel": xackdel_as_xack_xdel,
}


@dataclass(frozen=True)
class TableRow:
    command: str
    decision: str  # as is | exact equivalent | lossy | incompatible | effect | translator | dropped
    detail: str = ""


def translation_table(target: TargetProfile) -> list[TableRow]:
    """The translation table as it applies to one target release: one row per command the table names."""
    fitter = Fitter(target)
    rows = []
    for name, entry in sorted(table.TABLE.items()):
        if entry.kind is table.Kind.NO_EFFECT:
            rows.append(TableRow(name, "dropped", "no data effect"))
        elif entry.kind is table.Kind.STATE:
            rows.append(TableRow(name, "translator", "database selection, db map or transaction"))
        elif entry.kind is table.Kind.EFFECT:
            rows.append(TableRow(name, "effect", f"normalize.{entry.handler}, then fitted to the target"))
        else:
            rows.append(_write_row(fitter, name))
    return rows


def _write_row(fitter: Fitter, name: str) -> TableRow:
    rule = fitter._rule(name)
    if rule == _PASS:
        return TableRow(name, "as is")
    if rule == _OPTIONS:
        refused = ", ".join(t for t in fitter._options[name].values() if t)
        return TableRow(name, "as is", f"except {refused}")
    if rule == _FALLBACK:
        fallback = table.FALLBACKS[name]
        kind = "lossy" if fallback.losses else "exact equivalent"
        return TableRow(name, kind, fallback.note)
    return TableRow(name, "incompatible", fitter.lacks(name))
