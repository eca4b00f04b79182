"""The cutover: pause the source's writes, apply the stream up to the pause, compare key counts, unpause, and report.

    MULTI; CLIENT PAUSE <max-pause ms> WRITE; INFO replication; EXEC      one transaction: the offset read is the
                                                                          cut point, no write can come after it
    apply the stream until the target acknowledged the cut offset       (bounded by --max-pause: else called off)
    INFO keyspace on both sides                                           (the marker key left out)
    CLIENT UNPAUSE                                                        pause measured: PAUSE sent -> UNPAUSE answered
    grace period: go on applying what the released clients write         counted: clients must be repointed now
    remove the marker key (sync), or the target made a primary (relay: FollowJob.finish_cutover)

Redis 6.0 has no WRITE mode and no UNPAUSE (a pause holds reads too, until its timeout): --cutover auto is refused
there (follow.refuse_auto_cutover); a manual cutover takes no pause (the operator has stopped the writes) and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import MigrationError, PermissionDeniedError
from migrate.logs import get_logger
from migrate.render import display_key, jsonable
from migrate.replication import StreamCommand
from migrate.run.options import CutoverMode, RunOptions
from migrate.run.result import CutoverReport, DbCount
from migrate.server import Server
from migrate.wire import Channel, is_error, pack

if TYPE_CHECKING:
    from migrate.run.sync.control import SyncControl
    from migrate.run.sync.follow import FollowJob, Scope
    from migrate.run.sync.state import SyncState

log = get_logger("migrate.sync")

CAUGHT_UP_BYTES: Final = 64 * 1024  # --cutover auto pauses once each link's lag is below this
CATCH_UP_SECONDS: Final = 30.0  # before pausing, the lag must come down within this (else the attempt waits)
MANUAL_DRAIN_SECONDS: Final = 30.0  # without a pause (Redis 6.0), how long the drain may take
RETRY_SECONDS: Final = 10.0  # between two --cutover auto attempts
ATTEMPTS: Final = 3  # --cutover auto gives up after this many attempts called off
NOT_WRITES: Final = frozenset({b"ping", b"select", b"multi", b"exec", b"replconf"})
NAMED_KEYS: Final = 20


class Following(Protocol):
    """A job the cutover drives: a FollowJob (one link), or one follower per primary of a cluster source."""

    state: SyncState
    control: SyncControl
    options: RunOptions
    settings: ConnectionSettings
    scope: Scope
    target: Server

    def pump(self, timeout: float = 0.2) -> int: ...

    def followed(self) -> Sequence[tuple[FollowJob, Endpoint]]: ...

    def target_counts(self) -> dict[int, int]: ...

    def note(self, text: str) -> None: ...

    def at_cut_point(self) -> None: ...

    def target_writable(self) -> bool: ...

    def finish_cutover(self) -> None: ...


def cut_over_when_asked(job: Following) -> CutoverReport:
    """Follow the stream until a cutover succeeds (auto: once caught up; manual: once asked)."""
    attempts, next_try = 0, 0.0
    while True:
        job.pump()
        job.state.cutover_requested = job.control.cutover_requested
        if job.state.phase != "streaming" or time.monotonic() < next_try or not _due(job):
            continue
        attempts += 1
        report = attempt(job, attempts)
        if report is not None:
            return report
        job.control.clear()
        if job.options.cutover is CutoverMode.AUTO and attempts >= ATTEMPTS:
            raise MigrationError(f"the cutover was called off {attempts} times: the target did not catch up within "
                                 f"--max-pause {job.options.max_pause:g} s", "raise --max-pause, or cut over when "
                                 "the source takes fewer writes (--cutover manual)")
        next_try = time.monotonic() + RETRY_SECONDS


def _due(job: Following) -> bool:
    if job.control.cutover_requested:
        return True
    if job.options.cutover is not CutoverMode.AUTO or not job.state.source_offset_read:
        return False
    links = job.followed()
    if any(f.link is None or f.applied[0] < f.link.received for f, _ in links):
        return False
    return job.state.source_offset - sum(f.applied[0] for f, _ in links) < CAUGHT_UP_BYTES * len(links)


def attempt(job: Following, number: int) -> CutoverReport | None:
    """Pause the writes of every source primary followed (one, or each of a cluster's), drain every link to its
    cut point, count, unpause; then the grace period. None when the drain did not end within --max-pause."""
    state, options = job.state, job.options
    state.phase, state.cutover_attempts = "cutover", number
    log.info("cutover", attempt=number, mode=str(options.cutover))
    links = list(job.followed())
    pausing = all(f.source.identity.capabilities.has("client pause write") for f, _ in links)
    channels = [Channel(endpoint, job.settings, "source", 0) for _, endpoint in links]
    cuts: list[int] = []
    pause_ms: float | None = None
    drained = False
    try:
        _catch_up(job, links, channels)
        asked = time.monotonic()
        try:
            for channel in channels:  # one after the other: a primary paused early only waits for the others
                cuts.append(pause_writes(channel, options.max_pause) if pausing else _offset(channel))
            points = [(f, cut) for (f, _), cut in zip(links, cuts, strict=True)]  # each link's cut point
            budget = options.max_pause - min(0.25, options.max_pause / 4) if pausing else MANUAL_DRAIN_SECONDS
            drained = _drain(job, points, asked + budget)
            counts = count_keys(job.scope, channels, job.target_counts()) if drained else ()
            if drained:
                job.at_cut_point()
        finally:
            if pausing:
                for channel in channels[:len(cuts)]:
                    unpause_writes(channel)
                pause_ms = round((time.monotonic() - asked) * 1000, 1)
    finally:
        for channel in channels:
            channel.close()
    cut = sum(cuts)
    if not drained:
        applied = sum(f.applied[0] for f, _ in links)
        job.note(f"cutover attempt {number} called off: the target had not applied the stream up to the pause "
                 f"(offset {cut}, applied {applied}) within --max-pause {options.max_pause:g} s; the source's "
                 f"writes were paused {pause_ms} ms; syncing goes on")
        state.phase = "streaming"
        return None
    log.info("cutover point reached", offset=cut, pause_ms=pause_ms)
    if job.target_writable():
        state.reach_cut(cut, pause_ms)
    after, keys = grace_period(points, options.cutover_grace, job.pump, state)
    job.finish_cutover()
    if state.cut_offset is None:  # a relay's target took writes only once promoted, after the grace period
        state.reach_cut(cut, pause_ms)
    shard_cuts = tuple((f.name, c) for f, c in points) if len(points) > 1 else ()
    report = CutoverReport(str(options.cutover), pausing, pause_ms, cut, counts, after, keys, options.cutover_grace,
                           number, instructions(pausing, pause_ms, cut, after, options.cutover_grace, len(links)),
                           shard_cuts)
    state.cutover = jsonable(report)
    return report


def _catch_up(job: Following, links: Sequence[tuple[FollowJob, Endpoint]], channels: Sequence[Channel]) -> None:
    """Bring every link's lag down before pausing, so the pause only covers the last writes."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < deadline:
        offsets = [f.read_source_offset(channel) for (f, _), channel in zip(links, channels, strict=True)]
        if all(offset is not None and f.link is not None and offset - f.applied[0] < CAUGHT_UP_BYTES
               for offset, (f, _) in zip(offsets, links, strict=True)):
            return
        job.pump(0.05)


def pause_writes(channel: Channel, max_pause: float) -> int:
    """CLIENT PAUSE WRITE and INFO in one transaction: the offset read is the last one a write can have."""
    data = b"".join(pack(c) for c in (("MULTI",), ("CLIENT", "PAUSE", int(max_pause * 1000), "WRITE"),
                                      ("INFO", "replication"), ("EXEC",)))
    replies = channel.call(data, 4)
    result = replies[3]
    failed = next((r for r in (*replies[:3], result) if is_error(r)), None)
    if failed is None and isinstance(result, list):
        failed = next((r for r in result if is_error(r)), None)
    if failed is not None or not isinstance(result, list):
        text = " ".join(str(failed).split())
        error = PermissionDeniedError if "NOPERM" in text else MigrationError
        raise error(f"the source refused to pause writes for the cutover: {text}",
                    "grant the source user +client|pause +client|unpause (README \"Minimum rights\"), or use "
                    "--cutover manual after stopping the application's writes")
    offset = _parse_offset(result[1])
    log.warning("source writes paused", max_ms=int(max_pause * 1000), offset=offset)
    return offset


def _offset(channel: Channel) -> int:
    log.warning("the source cannot pause writes (no CLIENT PAUSE WRITE): cutting over at its current offset; the "
                "application's writes must be stopped")
    return _parse_offset(channel.command("INFO", "replication"))


def _parse_offset(info: Any) -> int:
    from migrate.run.sync.follow import replication_offset

    offset = replication_offset(info)
    if offset is None:
        raise MigrationError(f"cannot read the source's replication offset (INFO replication answered {info!r:.80})")
    return offset


def unpause_writes(channel: Channel) -> None:
    reply = channel.command("CLIENT", "UNPAUSE")
    if is_error(reply):  # the pause still ends by its own timeout (--max-pause)
        log.warning("CLIENT UNPAUSE refused: the pause ends by its timeout", error=str(reply))
    else:
        log.warning("source writes unpaused")


def _drain(job: Following, cuts: Sequence[tuple[FollowJob, int]], deadline: float) -> bool:
    while any(f.applied[0] < cut for f, cut in cuts):
        if time.monotonic() > deadline:
            return False
        job.pump(0.02)
    return True


def count_keys(scope: Scope, sources: Sequence[Channel], tgt: dict[int, int]) -> tuple[DbCount, ...]:
    """Key counts per target database, while the source's writes are paused: the source's summed over `sources` (a
    cluster's primaries), the target's as `tgt` (the job's marker keys left out)."""
    src = summed_keyspace(source.command("INFO", "keyspace") for source in sources)
    mapping = scope.db_map.table() if not scope.db_map.identity else {db: db for db in set(src) | set(tgt)}
    expected: dict[int, list[int]] = {}
    for s, t in mapping.items():
        keys, volatile = src.get(s, (0, 0))
        entry = expected.setdefault(t, [0, 0])
        entry[0] += keys
        entry[1] += volatile
    out = []
    for t, (keys, volatile) in sorted(expected.items()):
        held = tgt.get(t, 0)
        verdict = "equal" if held == keys else "within expiries" if abs(held - keys) <= volatile else "differs"
        out.append(DbCount(t, keys, held, volatile, verdict))
    return tuple(out)


def target_keyspace(nodes: Sequence[Endpoint], settings: ConnectionSettings) -> dict[int, int]:
    """Keys per database of the target's `nodes` (a server, or a cluster's primaries), summed."""
    infos = []
    for node in nodes:
        channel = Channel(node, settings, "target", 0)
        try:
            infos.append(channel.command("INFO", "keyspace"))
        finally:
            channel.close()
    return {db: keys for db, (keys, _) in summed_keyspace(infos).items()}


def summed_keyspace(infos: Iterable[Any]) -> dict[int, tuple[int, int]]:
    """db -> (keys, expires), summed over INFO keyspace replies (a cluster's primaries)."""
    out: dict[int, tuple[int, int]] = {}
    for info in infos:
        for db, (keys, volatile) in _keyspace(info).items():
            before = out.get(db, (0, 0))
            out[db] = (before[0] + keys, before[1] + volatile)
    return out


def _keyspace(info: Any) -> dict[int, tuple[int, int]]:
    """db -> (keys, expires) from INFO keyspace."""
    out: dict[int, tuple[int, int]] = {}
    for line in info.splitlines() if isinstance(info, bytes) else ():
        if line.startswith(b"db") and b":" in line:
            name, _, rest = line.partition(b":")
            fields = dict(p.split(b"=", 1) for p in rest.split(b",") if b"=" in p)
            out[int(name[2:])] = (int(fields.get(b"keys", 0)), int(fields.get(b"expires", 0)))
    return out


def grace_period(cuts: Sequence[tuple[FollowJob, int]], seconds: float, pump: Callable[[float], int],
                 state: SyncState) -> tuple[int, tuple[str, ...]]:
    """Go on applying for `seconds`: writes the released clients made after the cut point (of each link: one, or
    one per shard) land on the target too, counted and the first keys named."""
    count, keys = 0, list[str]()

    def observer(cut: int) -> Observer:
        def observe(batch: list[StreamCommand]) -> None:
            nonlocal count
            for argv, offset, _ in batch:
                if offset > cut and argv[0].lower() not in NOT_WRITES:
                    count += 1
                    if len(keys) < NAMED_KEYS and len(argv) > 1:
                        keys.append(display_key(argv[1]))
            state.after_cutover_writes = count
        return observe

    for job, cut in cuts:
        job.observer = observer(cut)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            pump(min(0.1, max(0.0, end - time.monotonic())))
    finally:
        for job, _ in cuts:
            job.observer = None
    return count, tuple(dict.fromkeys(keys))


def instructions(paused: bool, pause_ms: float | None, cut: int, after: int, grace: float, links: int = 1) -> str:
    point = f"source offset {cut}" if links == 1 else f"the cut offset of each of the {links} source primaries"
    if paused:
        whose = "source's writes were" if links == 1 else f"writes of the {links} source primaries were all"
        head = f"The {whose} paused {pause_ms:.0f} ms; the target holds every write up to {point}"
    else:
        head = (f"No write pause was taken (the source cannot pause writes alone); the target holds every write up to "
                f"{point}")
    return (f"{head}, and the {after} write(s) the source took after that point during the {grace:g} s grace period. "
            "Repoint the application's clients to the target now: writes the source takes from now on are not "
            "copied. Then run `migrate verify` to prove parity.")


Observer = Callable[[list[StreamCommand]], None]
