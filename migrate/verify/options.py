"""What `verify` is asked to do: frozen options, checked once, shared by the library and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from migrate.config import CommonConfig, ConnectionSettings, Endpoint
from migrate.errors import ConfigError
from migrate.selection import KeySelection

REVERSE_SCAN = ("auto", "always")


class Level(StrEnum):
    COUNT = "count"  # DBSIZE / INFO keyspace per database
    KEYS = "keys"  # existence, type and TTL of every key
    FULL = "full"  # KEYS plus a canonical digest of every value


@dataclass(frozen=True)
class VerifyOptions:
    level: Level = Level.FULL
    selection: KeySelection = field(default_factory=KeySelection)
    ttl_tolerance_ms: int = 2000  # |source PTTL - target PTTL| allowed (reads are not simultaneous)
    sample: int | None = None  # verify about this many keys (exact count, chosen by a seeded hash of the name)
    sample_percent: float | None = None  # or this percentage of the keys
    seed: int = 0  # sampling seed: the same seed picks the same keys
    rounds: int = 3  # recheck rounds for mismatching keys (0: report every first-pass mismatch)
    interval: float = 1.0  # seconds between recheck rounds
    max_report_keys: int = 100  # keys listed per category in the report; the rest are counted
    batch_size: int = 1000  # keys per SCAN call and per pipelined round trip
    chunk_size: int = 1000  # elements per read of a big list/set/zset/hash/stream
    string_chunk_bytes: int = 64 * 1024  # bytes per GETRANGE of a big string
    max_inflight_values: int = 256  # values read in the same round trip (memory: this x chunk size)
    workers: int = 2  # threads comparing batches while the main thread scans (each with its own connections); 0: inline
    recheck_limit: int = 100_000  # mismatching keys remembered for rechecks; beyond, counted as unrechecked
    check_nonkey: bool = True  # functions, ACL users, config parameters
    # auto: skip the reverse SCAN of the target where counting proves it would find nothing (verify/stillness.py);
    # always: scan every target key anyway.
    reverse_scan: str = "auto"
    dump_bodies: bool = True  # --level full: equal DUMP bodies settle small collections (dumpeq.py)

    def validate(self) -> VerifyOptions:
        if self.sample is not None and self.sample_percent is not None:
            raise ConfigError("--sample and --sample-percent exclude each other", "give one of them")
        if self.sample is not None and self.sample < 1:
            raise ConfigError("--sample must be >= 1")
        if self.sample_percent is not None and not 0 < self.sample_percent <= 100:
            raise ConfigError("--sample-percent must be in (0, 100]")
        if self.level is Level.COUNT:
            self._validate_count_level()
        for name in ("rounds", "max_report_keys", "workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        for name in ("batch_size", "chunk_size", "string_chunk_bytes", "max_inflight_values", "recheck_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be >= 1")
        if self.reverse_scan not in REVERSE_SCAN:
            raise ConfigError(f"--reverse-scan must be one of {', '.join(REVERSE_SCAN)}")
        if self.interval < 0 or self.ttl_tolerance_ms < 0:
            raise ConfigError("--interval and --ttl-tolerance must be >= 0")
        return self

    def _validate_count_level(self) -> None:
        sel = self.selection
        if sel.match or sel.types or sel.exclude:
            raise ConfigError("--level count compares whole databases (DBSIZE); it cannot apply --match, --type "
                              "or --exclude", "use --level keys or --level full with key filters")
        if self.sample is not None or self.sample_percent is not None:
            raise ConfigError("--level count does not sample", "use --level keys or full with --sample")

    @property
    def sampling(self) -> bool:
        return self.sample is not None or self.sample_percent is not None


@dataclass(frozen=True)
class VerifyConfig:
    common: CommonConfig
    options: VerifyOptions = field(default_factory=VerifyOptions)

    @property
    def source(self) -> Endpoint:
        return self.common.require_source()

    @property
    def target(self) -> Endpoint:
        return self.common.require_target()

    @property
    def connection(self) -> ConnectionSettings:
        return self.common.connection
