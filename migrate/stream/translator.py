"""The stateful translator: one per stream. Source commands in, units of target commands out.

It follows the source's SELECTs, maps databases (run's --db / --db-map), keeps MULTI ... EXEC groups together (a group
becomes one unit, never split), and applies the --on-incompatible policy to every command a target cannot take:
- fail: IncompatibleDataError naming the command, the key, the database and the source offset; nothing of the unit
  (or the group) it belongs to has been emitted.
- skip: the command is not applied; its key is named in `tally.skipped`.
- lossy: the lossy form is applied (e.g. HSETEX -> HSET without the TTL) and the key named in `tally.changed` with
  what was lost; a command without a lossy form (VADD, JSON.SET, ...) is skipped and named as under skip.
A group containing an incompatible command is decided as a unit, before any of it is emitted: under fail the group
is refused whole; under skip and lossy the group's other commands are applied, together, and the key is named with
"inside a MULTI/EXEC group". The output is usable by the applier and, as RESP, by a relay (resp.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from migrate.errors import IncompatibleDataError
from migrate.rdb.rewrite import DEFAULT_MAX_COMMAND_BYTES
from migrate.render import display_key
from migrate.run.options import OnIncompatible
from migrate.run.tally import KeyIssue
from migrate.stream import normalize, table
from migrate.stream.fit import Fitter, Outcome, TargetProfile
from migrate.stream.model import Argv, DbMap, StreamTally, TargetCommand, Unit
from migrate.stream.table import Kind
from migrate.wire import ARG_BYTES, Splice, pack_argv, resp_size

SourceCommand = tuple[Argv, int]  # (argv, end offset)
OwnEffect = Callable[[Argv], bool]
QuickPlan = tuple[bool, int, OwnEffect | None]
_NOTHING: Final[tuple[Argv, ...]] = ()
_UNKNOWN: Final = table.Entry(Kind.WRITE)
_NO_TAIL: Final = "?"  # splice: a name not judged yet
_RELATIVE_UNITS: Final = normalize.RELATIVE_UNITS
_MS13, _MS14 = 10**12, 10**13


def now_ms() -> int:
    return int(time.time() * 1000)


class Translator:
    def __init__(self, target: TargetProfile, *, policy: OnIncompatible = OnIncompatible.FAIL,
                 db_map: DbMap | None = None, source_db: int = 0, forward_publish: bool = False,
                 tally: StreamTally | None = None, clock: Callable[[], int] = now_ms,
                 max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> None:
        """`source_db`: the source database selected where the stream starts (a resume takes it from the marker)."""
        self.target = target
        self.policy = policy
        self.db_map = db_map or DbMap()
        self.tally = tally if tally is not None else StreamTally()
        self.fitter = Fitter(target, max_command_bytes)
        self.ctx = normalize.Context(forward_publish=forward_publish)
        self.clock = clock
        self._map = self.db_map.table()
        self._identity = self.db_map.identity
        self._merged = self.db_map.merged()
        self._plans: dict[bytes, tuple[bool, str, table.Entry, int, OwnEffect | None]] = {}
        self._passed = self.tally.passed
        self._fits: dict[bytes, bool] = {}  # rewrite_one: the target takes commands of this name as they are
        self._tails: dict[bytes, str | None] = {}  # splice: the name of a TAIL_RELATIVE command the target takes
        self._spliced: dict[str, int] = {}  # splice: commands rewritten since count_passed, by name
        self._state: dict[str, Callable[[Argv], tuple[TargetCommand, ...]]] = {
            "select": self._select, "discard": self._discard, "flushall": self._flushall, "flushdb": self._flushdb,
            "swapdb": self._swapdb, "move": self._move, "copy": self._copy,
        }
        self.db = source_db
        self._tdb = self.target_db(source_db)
        self._group: list[TargetCommand] | None = None
        self._offset = 0
        self._judged = False

    # -- public ---------------------------------------------------------------------------------------------------

    @property
    def in_group(self) -> bool:
        """Inside a source MULTI whose EXEC has not arrived: the stream may only be cut before the MULTI."""
        return self._group is not None

    def target_db(self, source_db: int) -> int | None:
        """The target database of a source database; None when it is not followed."""
        if self._identity:
            return source_db
        return self._map.get(source_db)

    def new_client(self) -> None:
        """The stream continues as a new client's (each file of an AOF is replayed by one): database 0, no group."""
        self.db = 0
        self._tdb = self.target_db(0)
        self._group = None

    def quick_plan(self, name: bytes) -> QuickPlan:
        """(every command of this name passes as it is, or only with this many arguments (-1: none), or only when
        this test says so (None: never)): for a caller that forwards such commands itself (counted with
        `count_passed`), keyed by the name as the source spelled it. The translator's state (SELECT, MULTI/EXEC,
        FLUSH*, SWAPDB, MOVE, COPY) never passes."""
        plan = self._plans.get(name.lower())
        if plan is None:
            plan = self._plans[name.lower()] = self._plan(name.lower())
        return plan[0], plan[3], plan[4]

    def count_passed(self, names: dict[bytes, int]) -> None:
        """Account for commands a caller forwarded as they are (see quick_plan), by the name as spelled, and for
        those it spliced (see splice)."""
        for name, n in names.items():
            self.quick_plan(name)
            self.tally.commands += n
            self.tally.units += n
            self._passed[self._plans[name.lower()][1]] += n
        for rewritten, n in self._spliced.items():
            if n:
                self.tally.commands += n
                self.tally.units += n
                self.tally.rewritten[rewritten] += n
                self._spliced[rewritten] = 0

    def rewrite_one(self, argv: Sequence[bytes], received_ms: int | None) -> Argv | None:
        """For a caller forwarding a run of commands as they are (see quick_plan): the one command the target takes
        for a source command that rewrites into exactly one (`SET k v EX 60` -> `SET k v PXAT <ms>`: Redis 6 and
        older send relative expiries), run in the current database, counted like feed counts it; None when the
        command needs feed (a state command, inside a group, a database not followed, a judgment under the policy,
        several commands)."""
        plan = self._plans.get(argv[0].lower())
        if plan is None or self._group is not None or self._tdb is None:
            return None
        name, entry = plan[1], plan[2]
        if entry.kind is not Kind.EFFECT or entry.handler not in normalize.STATELESS:
            return None
        source = tuple(argv)
        self.ctx.now_ms = received_ms if received_ms is not None else self.clock()
        commands = normalize.HANDLERS[entry.handler](source, self.ctx)
        if len(commands) != 1:
            return None
        fits = self._fits.get(commands[0][0])
        if fits is None:
            fits = self._fits[commands[0][0]] = self.fitter.passes(commands[0][0].decode("latin-1").lower())
        if not fits:
            return None
        self.tally.commands += 1
        self.tally.units += 1
        self._judged = False
        self._count(name, source, commands)
        return commands[0]

    def splice(self, argv: Sequence[bytes], received_ms: int | None) -> Splice | None:
        """rewrite_one for a caller holding the command as the source's canonical RESP: how to splice those bytes
        into the one command the target takes. `SET k v EX 60` only has its last two arguments replaced (the
        stream of a Redis 6 source carries one in every few writes: no tuple, no re-encoding of the rest; counted
        with count_passed)."""
        name = self._tails.get(argv[0], _NO_TAIL)
        if name is _NO_TAIL:
            name = self._tails[argv[0]] = self._tail_name(argv[0])
        if name is not None and len(argv) >= 5 and self._group is None and self._tdb is not None:
            unit = _RELATIVE_UNITS.get(argv[-2].lower())
            amount = argv[-1]
            if (unit is not None and amount.isdigit() and len(amount) < 20
                    and (len(argv) == 5 or normalize.set_is_its_effect(argv[:-2]))):
                at = (received_ms if received_ms is not None else self.clock()) + int(amount) * unit
                self._spliced[name] += 1
                replaced = ARG_BYTES[2] + ARG_BYTES[len(amount)]  # `$2\r\nEX\r\n$<n>\r\n<amount>\r\n`
                if _MS13 <= at < _MS14:  # unix ms from 2001 to 2286: 13 digits
                    return replaced, b"$4\r\nPXAT\r\n$13\r\n%d\r\n" % at
                return replaced, b"$4\r\nPXAT\r\n$%d\r\n%d\r\n" % (len(str(at)), at)
        command = self.rewrite_one(argv, received_ms)
        return None if command is None else (resp_size(argv), pack_argv(command))

    def _tail_name(self, spelled: bytes) -> str | None:
        name = spelled.decode("latin-1").lower()
        if name not in normalize.TAIL_RELATIVE or not self.fitter.passes(name):
            return None
        self._spliced.setdefault(name, 0)
        return name

    @property
    def followed(self) -> bool:
        """The current source database is followed, under the identity map (a command goes to the same number)."""
        return self._identity and self._tdb is not None

    def passes(self, argv: Argv) -> bool:
        """The command goes to the target as it is and changes no translator state: a pass that only looks for what
        the target cannot take may skip it."""
        raw_name = argv[0].lower()
        plan = self._plans.get(raw_name)
        if plan is None:
            plan = self._plans[raw_name] = self._plan(raw_name)
        return plan[0] or len(argv) == plan[3] or (plan[4] is not None and plan[4](argv))

    def translate(self, commands: Iterable[SourceCommand], received_ms: int | None = None) -> Iterator[Unit]:
        for argv, end_offset in commands:
            unit = self.feed(argv, end_offset, received_ms)
            if unit is not None:
                yield unit

    def feed(self, argv: Argv, end_offset: int, received_ms: int | None = None) -> Unit | None:
        """Translate one source command that ends at `end_offset`, received at `received_ms` (unix ms; the clock when
        None). Returns the finished unit, or None inside a MULTI group."""
        self.tally.commands += 1
        raw_name = argv[0].lower()
        plan = self._plans.get(raw_name)
        if plan is None:
            plan = self._plans[raw_name] = self._plan(raw_name)
        tdb = self._tdb
        if (plan[0] or len(argv) == plan[3] or (plan[4] is not None and plan[4](argv))) and tdb is not None:
            # the hot path: a write the target takes as it is
            self._passed[plan[1]] += 1
            if self._group is not None:
                self._group.append((tdb, argv))
                return None
            self.tally.units += 1
            return Unit(((tdb, argv),), end_offset, self.db)
        return self._feed_slow(plan[1], plan[2], argv, end_offset, received_ms)

    def _plan(self, raw_name: bytes) -> tuple[bool, str, table.Entry, int, OwnEffect | None]:
        """(passes as it is, name, table entry, argument count with which it passes as it is, a test that it passes
        as it is) for a command name, decided once per name."""
        name = raw_name.decode("latin-1")
        entry = table.TABLE.get(name, _UNKNOWN)
        fits = self.fitter.passes(name)
        passes = entry.kind is Kind.WRITE and fits
        effect = entry.kind is Kind.EFFECT and fits
        return (passes, name, entry, entry.plain_argc if effect else -1,
                normalize.OWN_EFFECT.get(name) if effect else None)

    def _feed_slow(self, name: str, entry: table.Entry, argv: Argv, end_offset: int,
                   received_ms: int | None) -> Unit | None:
        self._offset = end_offset
        self._judged = False
        if entry.kind is Kind.STATE:
            if name == "exec":
                return self._exec(end_offset)
            if name == "multi":
                if self._group is None:
                    self._group = []
                return None
            return self._emit(self._state[name](argv), end_offset)
        if self._tdb is None:
            self.tally.filtered[name] += 1
            return self._emit((), end_offset)
        if entry.kind is Kind.NO_EFFECT:
            self.tally.dropped[name] += 1
            return self._emit((), end_offset)
        if entry.kind is Kind.EFFECT:
            self.ctx.now_ms = received_ms if received_ms is not None else self.clock()
            commands = normalize.HANDLERS[entry.handler](argv, self.ctx)
            if not (len(commands) == 1 and commands[0] is argv and self.fitter.passes(name)):
                commands = self._fit_all(commands, argv, entry.key_at)
        else:
            outcome = self.fitter.fit(name, argv)
            commands = (argv,) if outcome is None else self._resolve(outcome, argv, entry.key_at)
        self._count(name, argv, commands)
        tdb = self._tdb
        return self._emit(tuple([(tdb, c) for c in commands]), end_offset)

    # -- fitting and the policy -----------------------------------------------------------------------------------

    def _fit_all(self, normalized: tuple[Argv, ...], source: Argv, key_at: int) -> tuple[Argv, ...]:
        out: list[Argv] = []
        for argv in normalized:
            outcome = self.fitter.fit(argv[0].decode("latin-1").lower(), argv)
            if outcome is None:
                out.append(argv)
            else:
                out += self._resolve(outcome, source, key_at)
        return tuple(out)

    def _resolve(self, outcome: Outcome, source: Argv, key_at: int) -> tuple[Argv, ...]:
        if not outcome.reason:
            return outcome.commands
        return self._judge(source, key_at, outcome)

    def _judge(self, argv: Argv, key_at: int, outcome: Outcome) -> tuple[Argv, ...]:
        """The policy on a command the target cannot take as it is."""
        self._judged = True
        name = argv[0].decode("latin-1").upper()
        what = _what(argv, key_at)
        where = " (inside a MULTI/EXEC group: the rest of the group is applied)" if self._group is not None else ""
        if self.policy is OnIncompatible.FAIL:
            lossy = (f"; a lossy translation would drop {', '.join(outcome.losses)}"
                     if outcome.lossy is not None and outcome.losses else "")
            raise IncompatibleDataError(
                f"{name} on {what} in db {self.db} (source offset {self._offset}) cannot be applied to "
                f"{self.target.label}: {outcome.reason}{lossy}")
        if self.policy is OnIncompatible.LOSSY and outcome.lossy is not None:
            self.tally.changed.add(KeyIssue(self.db, what, f"{name}: lost: {', '.join(outcome.losses)}{where}"))
            return outcome.lossy
        reason = outcome.reason if outcome.reason.startswith(name) else f"{name}: {outcome.reason}"
        self.tally.skipped.add(KeyIssue(self.db, what, f"{reason}{where}"))
        return _NOTHING

    def _count(self, name: str, argv: Argv, commands: tuple[Argv, ...]) -> None:
        if self._judged:
            return
        if len(commands) == 1 and commands[0] is argv:
            self._passed[name] += 1
        elif commands:
            self.tally.rewritten[name] += 1
        else:
            self.tally.dropped[name] += 1

    def _emit(self, commands: tuple[TargetCommand, ...], end_offset: int) -> Unit | None:
        if self._group is not None:
            self._group += commands
            return None
        self.tally.units += 1
        return Unit(commands, end_offset, self.db)

    # -- databases and transactions -------------------------------------------------------------------------------

    def _select(self, argv: Argv) -> tuple[TargetCommand, ...]:
        if len(argv) == 2 and argv[1].isdigit():
            self.db = int(argv[1])
            self._tdb = self.target_db(self.db)
        return ()

    def _exec(self, end_offset: int) -> Unit:
        group, self._group = self._group or [], None
        self.tally.units += 1
        return Unit(tuple(group), end_offset, self.db, group=len(group) > 1)

    def _discard(self, argv: Argv) -> tuple[TargetCommand, ...]:
        self._group = None
        return ()

    def _flushall(self, argv: Argv) -> tuple[TargetCommand, ...]:
        """FLUSHALL: as it is under the identity map; else FLUSHDB in the target of every followed database."""
        if self._identity:
            self.tally.passed["flushall"] += 1
            return ((self._tdb if self._tdb is not None else 0, argv),)
        self.tally.rewritten["flushall"] += 1
        return tuple((t, (b"FLUSHDB", *argv[1:])) for t in sorted(set(self._map.values())))

    def _flushdb(self, argv: Argv) -> tuple[TargetCommand, ...]:
        tdb = self._tdb
        if tdb is None:
            self.tally.filtered["flushdb"] += 1
            return ()
        if tdb in self._merged:
            reason = (f"target db {tdb} also holds other source databases (the db map merges them): FLUSHDB of "
                      f"source db {self.db} alone cannot be expressed")
            return self._db_refused(argv, reason)
        self.tally.passed["flushdb"] += 1
        return ((tdb, argv),)

    def _swapdb(self, argv: Argv) -> tuple[TargetCommand, ...]:
        if len(argv) != 3 or not (argv[1].isdigit() and argv[2].isdigit()):
            return self._db_refused(argv, "malformed SWAPDB")
        a, b = int(argv[1]), int(argv[2])
        ta, tb = self.target_db(a), self.target_db(b)
        if ta is None and tb is None:
            self.tally.filtered["swapdb"] += 1
            return ()
        if ta is None or tb is None:
            return self._db_refused(argv, f"it swaps a followed database with one that is not followed "
                                          f"(db {a if ta is None else b}: its keys are not on the target)")
        if ta == tb or ta in self._merged or tb in self._merged:
            return self._db_refused(argv, f"the db map is not one-to-one on databases {a} and {b}")
        self._passed_if("swapdb", (ta, tb) == (a, b))
        here = self._tdb if self._tdb is not None else ta
        return ((here, (b"SWAPDB", b"%d" % ta, b"%d" % tb)),)

    def _move(self, argv: Argv) -> tuple[TargetCommand, ...]:
        if len(argv) != 3 or not argv[2].isdigit():
            return self._db_refused(argv, "malformed MOVE")
        dest = int(argv[2])
        ts, td = self._tdb, self.target_db(dest)
        if ts is None and td is None:
            self.tally.filtered["move"] += 1
            return ()
        if ts is None:
            return self._db_refused(argv, f"it moves a key from db {self.db}, which is not followed, into db "
                                          f"{dest}: its value is not on the target")
        if td is None:
            self.tally.rewritten["move"] += 1  # the key leaves the followed databases: on the target it is deleted
            return ((ts, (b"DEL", argv[1])),)
        if ts == td:
            return self._db_refused(argv, f"the db map sends databases {self.db} and {dest} to the same target db {ts}")
        self._passed_if("move", td == dest)
        return ((ts, (argv[0], argv[1], b"%d" % td)),)

    def _copy(self, argv: Argv) -> tuple[TargetCommand, ...]:
        at = next((i for i in range(3, len(argv) - 1) if argv[i].lower() == b"db"), None)
        ts = self._tdb
        if at is None or not argv[at + 1].isdigit():
            if ts is None:
                self.tally.filtered["copy"] += 1
                return ()
            self.tally.passed["copy"] += 1
            return ((ts, argv),)
        dest = int(argv[at + 1])
        td = self.target_db(dest)
        if td is None:
            self.tally.filtered["copy"] += 1  # the copy lands in a database that is not followed
            return ()
        if ts is None:
            return self._db_refused(argv, f"it copies a key of db {self.db}, which is not followed, into db {dest}: "
                                          f"its value is not on the target")
        rest = argv[:at] + argv[at + 2:]
        if ts == td:
            if argv[1] == argv[2]:
                return self._db_refused(argv, f"the db map sends databases {self.db} and {dest} to the same target "
                                              f"db {ts}, where source and destination are the same key")
            self.tally.rewritten["copy"] += 1
            return ((ts, rest),)
        self._passed_if("copy", td == dest)
        return ((ts, (*rest, b"DB", b"%d" % td)),)

    def _passed_if(self, name: str, unchanged: bool) -> None:
        (self.tally.passed if unchanged else self.tally.rewritten)[name] += 1

    def _db_refused(self, argv: Argv, reason: str) -> tuple[TargetCommand, ...]:
        key_at = table.TABLE[argv[0].decode("latin-1").lower()].key_at
        written = self._judge(argv, key_at, Outcome(reason=reason))
        return tuple((self._tdb if self._tdb is not None else 0, c) for c in written)


def _what(argv: Argv, key_at: int) -> str:
    """How the reports name what a command touches: its key, or the command itself when it has none."""
    if key_at and argv[0].lower() in (b"eval", b"evalsha"):
        key_at = key_at if len(argv) > 3 and argv[2] not in (b"0",) else 0
    if 0 < key_at < len(argv):
        return display_key(argv[key_at])
    return "(" + " ".join(display_key(a, 40) for a in argv[:3]) + ")"
