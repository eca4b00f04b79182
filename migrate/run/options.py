"""What `run` is asked to do: frozen options, checked once, shared by the library and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from migrate.config import CommonConfig
from migrate.errors import ConfigError
from migrate.selection import KeySelection

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
    strategy: Strategy = Strategy.REPLAY
    selection: KeySelection = field(default_factory=KeySelection)
    batch_size: int = 1000  # keys per SCAN and per pipelined round trip
    rate_limit: float | None = None  # keys per second read from the source; None: as fast as possible
    replace: bool = False  # overwrite keys that exist on the target
    flush_target: bool = False  # FLUSHDB every target database first (needs yes)
    yes: bool = False  # confirmed: flush, reload and replicaof execute
    dry_run: bool = False  # read and plan, write nothing
    resume: bool = False  # continue from the checkpoint
    checkpoint: Path = DEFAULT_CHECKPOINT
    on_incompatible: OnIncompatible = OnIncompatible.FAIL
    big_key_threshold: int = DEFAULT_BIG_KEY_THRESHOLD  # bytes; 0: no size probe (payloads over the limit still chunk)
    from_rdb: Path | None = None  # reload from this file instead of a live snapshot
    promote: bool = False  # replicaof: REPLICAOF NO ONE once caught up
    verify: bool = False  # run `migrate verify` after the copy
    progress: bool = False  # rich progress bar on stderr
    sync_timeout: float = 600.0  # replicaof: seconds to wait for the full sync and the catch-up
    checkpoint_interval: float = 1.0  # seconds between checkpoint writes

    def validate(self) -> RunOptions:
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError("--rate-limit must be > 0 keys/s")
        if self.big_key_threshold < 0:
            raise ConfigError("--big-key-threshold must be >= 0 bytes (0 disables the size probe)")
        if self.from_rdb is not None and self.strategy is not Strategy.RELOAD:
            raise ConfigError("--from-rdb needs --strategy reload")
        if self.from_rdb is not None and not self.from_rdb.is_file():
            raise ConfigError(f"RDB file not found: {self.from_rdb}", "give an existing --from-rdb FILE")
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


def _filters(selection: KeySelection) -> bool:
    return bool(selection.match or selection.types or selection.exclude or selection.db_map or selection.dbs)


@dataclass(frozen=True)
class RunConfig:
    common: CommonConfig
    options: RunOptions = field(default_factory=RunOptions)
