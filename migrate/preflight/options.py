"""What `preflight` is asked to do: frozen options and config, built once by the CLI (or by a library caller)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.config import CommonConfig
from migrate.errors import ConfigError


@dataclass(frozen=True)
class PreflightOptions:
    sample: int = 1000  # keys examined per database (ignored with full)
    full: bool = False  # examine every key
    rate_limit: int = 0  # keys per second on the source; 0: unlimited
    batch: int = 500  # SCAN COUNT and pipeline size
    biggest: int = 10  # biggest keys reported
    examples: int = 5  # example keys kept per finding
    dump_limit: int = 8 * 1024 * 1024  # bytes: larger keys are not DUMPed to classify their payload
    dumps_per_kind: int = 5  # payloads DUMPed per (db, type, encoding) to classify the conversion
    rdb_file: str | None = None  # inspect this RDB file (offline; with or without a live source)
    aof_dir: str | None = None  # inspect this AOF directory (manifest, base format, commands)
    target_version: str | None = None  # assume a target ("valkey:8.1") when no live target is given or reachable
    dbs: tuple[int, ...] = field(default=())  # restrict the census to these databases

    def __post_init__(self) -> None:
        if self.sample < 1:
            raise ConfigError(f"--sample must be at least 1, got {self.sample}")
        if self.rate_limit < 0:
            raise ConfigError(f"--rate-limit must be >= 0 keys/s, got {self.rate_limit}")
        if not 1 <= self.batch <= 100_000:
            raise ConfigError(f"--batch must be between 1 and 100000, got {self.batch}")

    @property
    def mode(self) -> str:
        return "full" if self.full else "sample"


@dataclass(frozen=True)
class PreflightConfig:
    common: CommonConfig
    options: PreflightOptions = PreflightOptions()
