"""What `preflight` is asked to do: frozen options and config, built once by the CLI (or by a library caller)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.config import CommonConfig
from migrate.errors import ConfigError
from migrate.settings import integer, option, size


@dataclass(frozen=True)
class PreflightOptions:
    sample: int = option(1000, "Keys examined per database (ignored with --full).", metavar="N", parse=integer(1))
    full: bool = option(False, "Examine every key (exact counts, all names).")
    rate_limit: int = option(0, "At most N keys per second on the source; 0: unlimited.", metavar="N",
                             parse=integer(0))
    batch: int = option(500, "SCAN COUNT and pipeline size.", metavar="N", parse=integer(1))
    biggest: int = option(10, "How many biggest keys to list.", metavar="N", parse=integer(0))
    examples: int = 5  # example keys kept per finding
    dump_limit: int = option(8 * 1024 * 1024, "Do not DUMP keys bigger than this to classify their payload.",
                             metavar="SIZE", parse=size, shown_default="8mb")
    dumps_per_kind: int = 5  # payloads DUMPed per (db, type, encoding) to classify the conversion
    rdb_file: str | None = option(None, "Inspect an RDB file (offline, or with servers).", metavar="FILE")
    aof_dir: str | None = option(None, "Inspect an AOF as a server loads it (offline, or with servers): a Redis "
                                  "7+ appendonly directory or its manifest, or a single appendonly.aof.",
                                  metavar="PATH")
    target_version: str | None = option(None, "Check against a release when no live target is given, e.g. "
                                        "valkey:8.1 or valkey:9.1:relaxed.", metavar="PRODUCT:VERSION")
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
