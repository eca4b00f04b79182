"""What `convert` is asked to do: frozen options, declared once (migrate.settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from migrate.config import CommonConfig
from migrate.errors import ConfigError
from migrate.incompatible import OnIncompatible
from migrate.settings import option


@dataclass(frozen=True)
class ConvertOptions:
    input: Path | None = None  # the RDB file to convert (the CLI's first argument)
    output: Path | None = None  # the file to write: a temporary name, renamed when complete (the second argument)
    target_version: str | None = option(None, "The release that will load the file, e.g. valkey:8.1 or valkey:9.1 "
                                        "(or give --target URL of a live server).", metavar="PRODUCT:VERSION")
    on_incompatible: OnIncompatible = option(
        OnIncompatible.FAIL, "Keys the target cannot hold as they are: fail (no output is written), skip them, or "
        "write what fits (lossy). Skipped and changed keys are listed in the report.", choices=tuple(OnIncompatible),
        parse=OnIncompatible)
    keep_expired: bool = option(False, "Keep keys whose expiry has passed (a primary drops them when it loads a "
                                "file; a replica keeps them).")
    force: bool = option(False, "Overwrite the output file when it exists.")

    def validate(self) -> ConvertOptions:
        if self.input is None or self.output is None:
            raise ConfigError("convert needs an input and an output file", "e.g. migrate convert dump.rdb valkey.rdb "
                              "--target-version valkey:8.1")
        if not self.input.is_file():
            raise ConfigError(f"{self.input} is not a regular file" if self.input.exists() else
                              f"file not found: {self.input}", "give the path of an RDB file")
        if self.output.exists() and not self.force:
            raise ConfigError(f"the output {self.output} exists", "choose another path, or --force to overwrite it")
        if self.output.resolve() == self.input.resolve():
            raise ConfigError("the output is the input: it would be overwritten while it is read",
                              "write the output to another path")
        return self


@dataclass(frozen=True)
class ConvertConfig:
    common: CommonConfig  # --target, when the target is described by a live server
    options: ConvertOptions = field(default_factory=ConvertOptions)
