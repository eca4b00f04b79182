"""What `verify` is asked to do: frozen options, checked once, shared by the library and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from migrate.config import CommonConfig, ConnectionSettings, Endpoint
from migrate.errors import ConfigError
from migrate.selection import KeySelection
from migrate.settings import group, integer, non_negative_seconds, option, positive_number
from migrate.verify.routes import Digests, ValueMethod

REVERSE_SCAN = ("auto", "always")


class Level(StrEnum):
    COUNT = "count"  # DBSIZE / INFO keyspace per database
    KEYS = "keys"  # existence, type and TTL of every key
    FULL = "full"  # KEYS plus a canonical digest of every value


@dataclass(frozen=True)
class VerifyOptions:
    level: Level = option(Level.FULL, "count: key counts per db; keys: existence, type, TTL; full: values too.",
                          choices=tuple(Level), parse=Level)
    selection: KeySelection = group(KeySelection)
    # |source TTL - target TTL| allowed: the two reads are not simultaneous
    ttl_tolerance: float = option(2.0, "Allowed TTL difference between the sides.", metavar="SECONDS",
                                  parse=non_negative_seconds)
    sample: int | None = option(None, "Verify N keys chosen by a seeded hash of their names.", metavar="N",
                                parse=integer(1))
    sample_percent: float | None = option(None, "Verify about P percent of the keys.", metavar="P",
                                          parse=positive_number)
    seed: int = option(0, "Sampling seed; the same seed picks the same keys.", metavar="N", parse=integer(0))
    rounds: int = option(3, "Recheck rounds for mismatching keys.", metavar="N", parse=integer(0))
    interval: float = option(1.0, "Wait between recheck rounds.", metavar="SECONDS", parse=non_negative_seconds)
    max_report_keys: int = option(100, "Keys listed per category; more are counted.", metavar="N",
                                  parse=integer(0))
    batch_size: int = option(1000, "Keys per SCAN and per pipelined read.", metavar="N", parse=integer(1))
    chunk_size: int = 1000  # elements per read of a big list/set/zset/hash/stream
    string_chunk_bytes: int = 64 * 1024  # bytes per GETRANGE of a big string
    max_inflight_values: int = 256  # values read in the same round trip (memory: this x chunk size)
    workers: int = option(2, "Threads comparing batches while SCAN goes on; 0: none.", metavar="N",
                          parse=integer(0))
    recheck_limit: int = 100_000  # mismatching keys remembered for rechecks; beyond, counted as unrechecked
    check_nonkey: bool = option(True, "Compare functions, ACL users and config parameters.", flag="--nonkey",
                                switch=True)
    # auto: skip the reverse SCAN of the target where counting proves it would find nothing (verify/stillness.py);
    # always: scan every target key anyway.
    reverse_scan: str = option("auto", "Scan the target for extra keys: always, or auto: not where neither server "
                               "changed during the pass and the key counts prove there is none.",
                               choices=REVERSE_SCAN)
    dump_bodies: bool = option(True, "At --level full, read small values with DUMP where that costs less (off: "
                               "type-native reads only, as --value-method native).", switch=True)
    value_method: ValueMethod = option(ValueMethod.AUTO, "At --level full, how small values are read: auto (per "
                                       "type, the measured cheapest), dump (one DUMP per side, decoded where the "
                                       "bodies differ), native (type-native reads only).",
                                       choices=tuple(ValueMethod), parse=ValueMethod)
    server_digests: Digests = option(Digests.NEVER, "At --level full, settle values by DEBUG DIGEST-VALUE where both "
                                     "servers allow it: never, big (values over 16 KiB), always (no value read; "
                                     "more server CPU).", choices=tuple(Digests), parse=Digests)

    @property
    def ttl_tolerance_ms(self) -> int:
        return round(self.ttl_tolerance * 1000)

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
        if self.interval < 0 or self.ttl_tolerance < 0:
            raise ConfigError("--interval and --ttl-tolerance must be >= 0")
        return self._with_enums()

    def _with_enums(self) -> VerifyOptions:
        """The library also takes plain strings for the enumerated options: make them the enum members."""
        try:
            return replace(self, value_method=ValueMethod(self.value_method),
                           server_digests=Digests(self.server_digests))
        except ValueError as exc:
            raise ConfigError(f"invalid option value: {exc}", "--value-method auto|dump|native, "
                              "--server-digests never|big|always") from None

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
