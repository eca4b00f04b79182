"""What `run` is asked to do: frozen options, checked once, shared by the library and the CLI."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from migrate.config import CommonConfig
from migrate.errors import ConfigError
from migrate.selection import KeySelection
from migrate.settings import group, integer, option, path, positive_number, positive_seconds, size

MiB: Final = 1024 * 1024
DEFAULT_CHECKPOINT: Final = Path("migrate-run.checkpoint.json")
DEFAULT_BIG_KEY_THRESHOLD: Final = 16 * MiB


class Strategy(StrEnum):
    REPLAY = "replay"  # SCAN + DUMP + RESTORE, converting per key
    RELOAD = "reload"  # snapshot (replication download or --from-rdb), flush the target, load every key
    REPLICAOF = "replicaof"  # the target replicates from the source natively

    def __str__(self) -> str:
        return self.value


class OnIncompatible(StrEnum):
    FAIL = "fail"  # stop at the first key the target cannot hold as it is
    SKIP = "skip"  # leave such keys out, listed by name
    LOSSY = "lossy"  # write what the target can hold (e.g. a hash without its field TTLs), listed by name

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunOptions:
    strategy: Strategy = option(Strategy.REPLAY, "replay: SCAN/DUMP/RESTORE with per-key conversion; reload: snapshot, "
                                "flush the target, load; replicaof: native replication when compatible.",
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
    resume: bool = option(False, "Continue an interrupted replay from its checkpoint.")
    checkpoint: Path = option(DEFAULT_CHECKPOINT, "Checkpoint file.", metavar="FILE", parse=path)
    on_incompatible: OnIncompatible = option(
        OnIncompatible.FAIL, "Keys the target cannot hold as they are: fail, skip them, or copy what fits (lossy). "
        "Skipped and changed keys are listed in the report.", choices=tuple(OnIncompatible), parse=OnIncompatible)
    big_key_threshold: int = option(DEFAULT_BIG_KEY_THRESHOLD, "Copy keys bigger than this in chunks (e.g. 64mb; 0: "
                                    "no size probe).", metavar="SIZE", parse=size, shown_default="16mb")
    from_rdb: Path | None = option(None, "--strategy reload: load this RDB file instead of a live snapshot.",
                                   metavar="FILE", parse=path)
    from_aof: Path | None = option(None, "--strategy reload: load this AOF instead of a live snapshot: a Redis 7+ "
                                   "appendonly directory (or its manifest), or a single appendonly.aof.",
                                   metavar="PATH", parse=path)
    spool: bool = option(True, "--strategy reload: take the live snapshot to local disk and check it before the "
                         "target is flushed (--no-spool streams it: a broken stream then leaves the target partial).",
                         switch=True)
    spool_dir: Path | None = option(None, "--strategy reload: folder for the spooled snapshot.", metavar="DIR",
                                    parse=path, shown_default="the system's temporary folder")
    promote: bool = option(False, "--strategy replicaof: REPLICAOF NO ONE once caught up.")
    verify: bool = option(False, "Run `migrate verify` on the same selection afterwards.")
    progress: bool | None = option(None, "Progress bar on stderr.", switch=True, shown_default="when a terminal")
    sync_timeout: float = option(600.0, "--strategy replicaof: wait at most this long for the sync.",
                                 metavar="SECONDS", parse=positive_seconds)
    checkpoint_interval: float = 1.0  # seconds between checkpoint writes

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
        if self.from_rdb is not None and self.strategy is not Strategy.RELOAD:
            raise ConfigError("--from-rdb needs --strategy reload")
        if self.from_rdb is not None:
            _check_input_file(self.from_rdb, "--from-rdb")
        if self.from_aof is not None:
            self._check_aof()
        if self.promote and self.strategy is not Strategy.REPLICAOF:
            raise ConfigError("--promote needs --strategy replicaof")
        if self.resume and self.strategy is not Strategy.REPLAY:
            raise ConfigError(f"--resume works with --strategy replay; {self.strategy} starts over",
                              "rerun without --resume")
        if self.resume and self.flush_target:
            raise ConfigError("--resume and --flush-target exclude each other",
                              "a resumed run keeps what the interrupted run copied")
        if self.strategy is Strategy.REPLICAOF and _filters(self.selection):
            raise ConfigError("--strategy replicaof copies the whole dataset: it takes no --match, --type, "
                              "--exclude, --db or --db-map", "use --strategy replay to copy a selection")
        return self


    def _check_aof(self) -> None:
        assert self.from_aof is not None
        if self.strategy is not Strategy.RELOAD:
            raise ConfigError("--from-aof needs --strategy reload")
        if self.from_rdb is not None:
            raise ConfigError("--from-rdb and --from-aof exclude each other", "give one input file")
        if not self.from_aof.exists():
            raise ConfigError(f"--from-aof: not found: {self.from_aof}",
                              "give the AOF directory (appenddirname), its manifest, or an appendonly.aof file")
        selection = self.selection
        if selection.match or selection.types or selection.exclude:
            raise ConfigError("--from-aof replays commands, which --match, --type and --exclude cannot select (a "
                              "command may touch several keys, of any type)",
                              "select databases with --db / --db-map, or load the whole file")

    @property
    def from_file(self) -> Path | None:
        """The input file of a reload (--from-rdb or --from-aof); None: a live snapshot."""
        return self.from_rdb or self.from_aof


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
