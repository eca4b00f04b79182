"""--on-incompatible: what happens to data a target cannot hold as it is. One enum for every verb and the RDB engine
(run's policy module applies it per key; the transcoder per record)."""

from __future__ import annotations

from enum import StrEnum

from migrate.errors import ConfigError


class OnIncompatible(StrEnum):
    FAIL = "fail"  # stop at the first key the target cannot hold as it is (before anything is written, when possible)
    SKIP = "skip"  # leave such keys out, listed by name
    LOSSY = "lossy"  # write what the target can hold (e.g. a hash without its field TTLs), listed by name

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: OnIncompatible | str) -> OnIncompatible:
        try:
            return cls(str(value))
        except ValueError:
            raise ConfigError(f"unknown policy {value!r}", "use fail, skip or lossy") from None
