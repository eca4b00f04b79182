"""What `run` is asked to do: frozen options, checked once, shared by the library and the CLI."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from migrate.config import CommonConfig
from migrate.errors import ConfigError
from migrate.incompatible import OnIncompatible as OnIncompatible  # re-exported: part of run's API
from migrate.selection import KeySelection
from migrate.settings import (
    group,
    integer,
    non_negative_seconds,
    option,
    path,
    paths,
    positive_number,
    positive_seconds,
    size,
)

MiB: Final = 1024 * 1024
DEFAULT_CHECKPOINT: Final = Path("migrate-run.checkpoint.json")
DEFAULT_BIG_KEY_THRESHOLD: Final = 16 * MiB


class Strategy(StrEnum):
    REPLAY = "replay"  # SCAN + DUMP + RESTORE, converting per key
    RELOAD = "reload"  # snapshot (replication download or --from-rdb), flush the target, load every key
    REPLICAOF = "replicaof"  # the target replicates from the source natively
    SYNC = "sync"  # migrate is a replica of the source: snapshot, then the write stream, until a cutover
    RELAY = "relay"  # migrate between the two: a replica of the source, the primary of the target, until a cutover

    def __str__(self) -> str:
        return self.value


READ_FROM: Final = ("primary", "replica")


class LoadVia(StrEnum):
    COMMANDS = "commands"  # the target loads as a client: RESTORE per RDB key, the AOF's commands pipelined
    REPLICATION = "replication"  # the target runs REPLICAOF migrate: the RDB part as its full sync, then a stream

    def __str__(self) -> str:
        return self.value


class CutoverMode(StrEnum):
    MANUAL = "manual"  # keep syncing until the operator triggers the cutover (SIGUSR1, `migrate cutover`)
    AUTO = "auto"  # cut over as soon as the target has caught up

    def __str__(self) -> str:
        return self.value


def host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for every interface, '[::1]:PORT' for IPv6) -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class RunOptions:
    strategy: Strategy = option(Strategy.REPLAY, "replay: SCAN/DUMP/RESTORE with per-key conversion; reload: snapshot, "
                                "flush the target, load; replicaof: native replication when compatible; sync: "
                                "snapshot, then follow the source's writes until a cutover; relay: the target "
                                "replicates from migrate, which transcodes the source's snapshot and stream.",
                                choices=tuple(Strategy), parse=Strategy)
    selection: KeySelection = group(KeySelection)
    batch_size: int = option(1000, "Keys per SCAN and per pipelined round trip.", metavar="N", parse=integer(1))
    rate_limit: float | None = option(None, "Read at most this many keys per second.", metavar="KEYS/S",
                                      parse=positive_number)
    replace: bool = option(False, "Overwrite keys that exist on the target.")
    flush_target: bool = option(False, "Empty the target databases the run writes into first (needs --yes).")
    yes: bool = option(False, "Confirm: --flush-target, and execute the plan of --strategy reload / replicaof.",
                       short="-y")
    dry_run: bool = option(False, "Read and plan everything, write nothing.")
    resume: bool = option(False, "Continue an interrupted replay or sync from its checkpoint (relay: a new full "
                          "sync of the target it left).")
    checkpoint: Path = option(DEFAULT_CHECKPOINT, "Checkpoint file.", metavar="FILE", parse=path)
    on_incompatible: OnIncompatible = option(
        OnIncompatible.FAIL, "Keys the target cannot hold as they are: fail, skip them, or copy what fits (lossy). "
        "Skipped and changed keys are listed in the report.", choices=tuple(OnIncompatible), parse=OnIncompatible)
    big_key_threshold: int = option(DEFAULT_BIG_KEY_THRESHOLD, "Copy keys bigger than this in chunks (e.g. 64mb; 0: "
                                    "no size probe).", metavar="SIZE", parse=size, shown_default="16mb")
    from_rdb: tuple[Path, ...] = option((), "--strategy reload: load this RDB file instead of a live snapshot "
                                        "(repeat the flag to load several, e.g. one per source shard).",
                                        metavar="FILE", parse=paths, multiple=True)
    from_aof: Path | None = option(None, "--strategy reload: load this AOF instead of a live snapshot: a Redis 7+ "
                                   "appendonly directory (or its manifest), or a single appendonly.aof.",
                                   metavar="PATH", parse=path)
    spool: bool = option(True, "--strategy reload: take the live snapshot to local disk and check it before the "
                         "target is flushed (--no-spool streams it: a broken stream then leaves the target partial).",
                         switch=True)
    spool_dir: Path | None = option(None, "--strategy reload, sync and relay: folder for the spooled snapshot "
                                    "(relay: transcoded) and the spooled write stream.", metavar="DIR", parse=path,
                                    shown_default="the system's temporary folder")
    promote: bool = option(False, "--strategy replicaof: REPLICAOF NO ONE once caught up.")
    verify: bool = option(False, "Run `migrate verify` on the same selection afterwards.")
    progress: bool | None = option(None, "Progress bar on stderr.", switch=True, shown_default="when a terminal")
    sync_timeout: float = option(600.0, "--strategy replicaof and relay: wait at most this long for the target's "
                                 "full sync.",
                                 metavar="SECONDS", parse=positive_seconds)
    cutover: CutoverMode = option(CutoverMode.MANUAL, "--strategy sync and relay: manual: keep syncing until "
                                  "`migrate cutover` (or SIGUSR1); auto: cut over once caught up.",
                                  choices=tuple(CutoverMode), parse=CutoverMode)
    max_pause: float = option(5.0, "--strategy sync and relay: longest write pause of the source at the cutover "
                              "(CLIENT PAUSE WRITE); not drained by then, the cutover is called off and syncing goes "
                              "on.", metavar="SECONDS", parse=positive_seconds)
    cutover_grace: float = option(2.0, "--strategy sync and relay: after the cutover, keep applying writes the source "
                                  "still takes (clients released by the unpause) for this long, and count them.",
                                  metavar="SECONDS", parse=non_negative_seconds)
    diskless_sync: bool = option(True, "--strategy sync and relay: let the source stream its snapshot (it first "
                                 "waits its repl-diskless-sync-delay, 5 s by default on 7.0+); --no-diskless-sync "
                                 "makes it save an RDB on its own disk and start at once.", switch=True)
    status_file: Path | None = option(None, "--strategy sync and relay: rewrite this JSON file every second (phase, "
                                      "offsets, lag, counters, pid).", metavar="FILE", parse=path)
    metrics_address: tuple[str, int] | None = option(None, "--strategy sync and relay: serve Prometheus metrics on "
                                                     "HOST:PORT.", metavar="HOST:PORT", parse=host_port)
    relay_address: tuple[str, int] | None = option(
        None, "--strategy relay: the HOST:PORT the target reaches migrate at (migrate listens there; port 0: a free "
        "one). Needed when the target is not on this machine.", metavar="HOST:PORT", parse=host_port,
        shown_default="a free loopback port when the target is local")
    load_via: LoadVia = option(
        LoadVia.COMMANDS, "--strategy reload: commands: the target loads as a client (RESTORE per key, an AOF's "
        "commands pipelined); replication: the target runs REPLICAOF migrate and loads the snapshot (an RDB, an "
        "AOF's RDB part) with its own loader as its full sync, then an AOF's commands as the replication stream "
        "(faster; one snapshot, a standalone target that reaches --relay-address and allows REPLICAOF and CONFIG SET "
        "for the load).", choices=tuple(LoadVia), parse=LoadVia)
    read_from: str = option("primary", "--strategy replay from a cluster: read each shard on its primary, or on an "
                            "in-sync replica (spares the primaries; a shard without one is read on its primary).",
                            choices=READ_FROM)
    workers: int | None = option(None, "Shards copied at once, each in its own process (a cluster source, or a "
                                 "cluster target); --strategy reload: snapshots loaded at once (a cluster source's "
                                 "primaries, or several --from-rdb files).", metavar="N", parse=integer(1),
                                 shown_default="one per shard, at most one per CPU core")
    scheduler: str | None = option(None, "Run the per-shard tasks (reload: the snapshots' checks and loads) on this "
                                   "Dask distributed scheduler (needs the `distributed` extra); checkpoints (reload: "
                                   "--spool-dir, --from-rdb files) must be in a folder every worker shares.",
                                   metavar="tcp://HOST:PORT")
    checkpoint_dir: Path | None = option(None, "Folder of the per-shard checkpoints (shared by every worker with "
                                         "--scheduler).", metavar="DIR", parse=path,
                                         shown_default="FILE.shards beside --checkpoint")
    checkpoint_interval: float = 1.0  # seconds between checkpoint writes

    @property
    def shard_folder(self) -> Path:
        """Where the per-shard checkpoints go."""
        return self.checkpoint_dir or self.checkpoint.with_name(self.checkpoint.name + ".shards")

    def __post_init__(self) -> None:
        given: object = self.from_rdb
        if isinstance(given, str | Path):  # one file given as a path (library callers)
            object.__setattr__(self, "from_rdb", (Path(given),))

    @property
    def show_progress(self) -> bool:
        return self.progress if self.progress is not None else sys.stderr.isatty()

    def validate(self) -> RunOptions:
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError("--rate-limit must be > 0 keys/s")
        if self.big_key_threshold < 0:
            raise ConfigError("--big-key-threshold must be >= 0 bytes (0 disables the size probe)")
        if self.from_rdb and self.strategy is not Strategy.RELOAD:
            raise ConfigError("--from-rdb needs --strategy reload")
        for file in self.from_rdb:
            _check_input_file(file, "--from-rdb")
        if self.from_aof is not None:
            self._check_aof()
        if self.promote and self.strategy is not Strategy.REPLICAOF:
            raise ConfigError("--promote needs --strategy replicaof")
        if self.resume and self.strategy not in (Strategy.REPLAY, Strategy.SYNC, Strategy.RELAY):
            raise ConfigError(f"--resume works with --strategy replay, sync and relay; {self.strategy} starts over",
                              "rerun without --resume")
        if self.resume and self.flush_target:
            raise ConfigError("--resume and --flush-target exclude each other",
                              "a resumed run keeps what the interrupted run copied")
        if self.read_from not in READ_FROM:
            raise ConfigError(f"--read-from must be one of {', '.join(READ_FROM)}")
        if self.read_from == "replica" and self.strategy is not Strategy.REPLAY:
            raise ConfigError(f"--read-from replica applies to --strategy replay (each shard read on a replica); "
                              f"--strategy {self.strategy} takes its snapshots (and a sync its write stream and its "
                              "cutover's pause) from the primaries", "drop --read-from")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--workers must be >= 1")
        if self.scheduler is not None and not self.scheduler.startswith(("tcp://", "tls://", "inproc://")):
            raise ConfigError(f"--scheduler {self.scheduler!r} is not a Dask scheduler address",
                              "give tcp://HOST:PORT (the address `dask scheduler` prints)")
        if self.scheduler is not None:
            self._validate_scheduler()
        if self.strategy is Strategy.REPLICAOF and _filters(self.selection):
            raise ConfigError("--strategy replicaof copies the whole dataset: it takes no --match, --type, "
                              "--exclude, --db or --db-map", "use --strategy replay to copy a selection")
        if self.load_via is LoadVia.REPLICATION:
            self._validate_load_via()
        elif self.relay_address is not None and self.strategy is not Strategy.RELAY:
            raise ConfigError("--relay-address needs --strategy relay (or reload --load-via replication)")
        if self.strategy in (Strategy.SYNC, Strategy.RELAY):
            self._validate_follow()
        if self.strategy is Strategy.RELAY:
            self._validate_relay()
        return self

    def _validate_follow(self) -> None:
        """What sync and relay, which follow a write stream until a cutover, refuse alike."""
        sel, name = self.selection, self.strategy.value
        if sel.match or sel.types or sel.exclude:
            takes = "it takes --db and --db-map, not" if self.strategy is Strategy.SYNC else "it takes no"
            raise ConfigError(f"--strategy {name} follows whole databases: {takes} --match, --type or --exclude (a "
                              "write stream cannot be filtered by key faithfully: scripts, multi-key commands)",
                              "use --strategy replay to copy a selection of keys")
        if self.dry_run:
            raise ConfigError(f"--strategy {name} has no dry run", f"run `migrate preflight` to see what a {name} "
                              "would meet, then run it for real")
        if self.flush_target and not self.yes:
            raise ConfigError("--flush-target empties target databases: confirm with --yes")

    def _validate_relay(self) -> None:
        sel = self.selection
        if sel.dbs or sel.db_map:
            raise ConfigError("--strategy relay copies every database as it is: it takes no --db or --db-map (the "
                              "target's full sync replaces its whole dataset, database numbers included)",
                              "use --strategy sync to follow a selection of databases")
        if self.replace:
            raise ConfigError("--strategy relay replaces the target's whole dataset (a replica's full sync): "
                              "--replace does not apply", "give --flush-target --yes to let it replace a target "
                              "that holds keys")


    def _validate_scheduler(self) -> None:
        if self.strategy not in (Strategy.REPLAY, Strategy.RELOAD):
            raise ConfigError(f"--scheduler runs the per-shard tasks of --strategy replay and the snapshot loads of "
                              f"--strategy reload; {self.strategy} runs here", "drop --scheduler")
        if self.from_aof is not None:
            raise ConfigError("--scheduler does not apply to --from-aof: an AOF's commands are replayed in order, "
                              "by one client", "drop --scheduler")
        if self.from_rdb and self.replace:
            raise ConfigError("--from-rdb files with --replace load one after the other (the last file's value of a "
                              "key held twice is kept): not as tasks on --scheduler", "drop --scheduler or --replace")

    def _validate_load_via(self) -> None:
        if self.strategy is not Strategy.RELOAD:
            raise ConfigError("--load-via replication needs --strategy reload", "drop --load-via")
        if _filters(self.selection):
            raise ConfigError("--load-via replication loads every database as it is: it takes no --match, --type, "
                              "--exclude, --db or --db-map (the target's full sync replaces its whole dataset)",
                              "use --load-via commands to load a selection")
        if len(self.from_rdb) > 1:
            raise ConfigError("--load-via replication loads one snapshot (a full sync replaces the whole dataset): "
                              "not several --from-rdb files", "use --load-via commands to load several files")
        if self.scheduler is not None:
            raise ConfigError("--load-via replication runs here, not on --scheduler", "drop one of them")

    def _check_aof(self) -> None:
        assert self.from_aof is not None
        if self.strategy is not Strategy.RELOAD:
            raise ConfigError("--from-aof needs --strategy reload")
        if self.from_rdb:
            raise ConfigError("--from-rdb and --from-aof exclude each other", "give one kind of input")
        if not self.from_aof.exists():
            raise ConfigError(f"--from-aof: not found: {self.from_aof}",
                              "give the AOF directory (appenddirname), its manifest, or an appendonly.aof file")
        selection = self.selection
        if selection.match or selection.types or selection.exclude:
            raise ConfigError("--from-aof replays commands, which --match, --type and --exclude cannot select (a "
                              "command may touch several keys, of any type)",
                              "select databases with --db / --db-map, or load the whole file")

    @property
    def from_file(self) -> bool:
        """Whether a reload loads files (--from-rdb or --from-aof) rather than a live snapshot."""
        return bool(self.from_rdb) or self.from_aof is not None


def _check_input_file(path: Path, flag: str) -> None:
    if not path.exists():
        raise ConfigError(f"{flag}: file not found: {path}", f"give an existing {flag} FILE")
    if not path.is_file():
        raise ConfigError(f"{flag}: {path} is not a regular file (a device, a folder or a pipe)",
                          f"give {flag} the path of a file")


def _filters(selection: KeySelection) -> bool:
    return bool(selection.match or selection.types or selection.exclude or selection.db_map or selection.dbs)


@dataclass(frozen=True)
class RunConfig:
    common: CommonConfig
    options: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class CutoverOptions:
    """`migrate cutover`: ask a running `migrate run --strategy sync|relay --cutover manual` to cut over."""

    status_file: Path | None = option(None, "The --status-file of the running sync or relay (required).",
                                      metavar="FILE", parse=path)
    wait: float = option(120.0, "Wait at most this long for the cutover to finish (0: do not wait).",
                         metavar="SECONDS", parse=non_negative_seconds)
