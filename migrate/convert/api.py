"""The library entry: convert(config) -> ConvertResult. No printing: the CLI renders (migrate.convert.report)."""

from __future__ import annotations

from migrate.convert.options import ConvertConfig
from migrate.convert.result import ConvertResult
from migrate.errors import ConfigError, IncompatibleDataError, ProblemsFound
from migrate.rdb.target import TargetFormat, target_format
from migrate.rdb.transcode import TranscodeOptions, transcode


def convert(config: ConvertConfig) -> ConvertResult:
    """Write --in as a file the target release loads; nothing is left behind on failure. Under --on-incompatible fail
    a key the target cannot hold stops the conversion before any output exists (ProblemsFound, exit 5)."""
    options = config.options.validate()
    assert options.input is not None and options.output is not None
    target = _target(config)
    try:
        report = transcode(options.input, options.output, target, options.on_incompatible,
                           TranscodeOptions(drop_expired=not options.keep_expired))
    except IncompatibleDataError as exc:
        raise ProblemsFound(f"{exc.message}; no output was written", exc.hint) from None
    return ConvertResult(str(options.input), str(options.output), report)


def _target(config: ConvertConfig) -> TargetFormat:
    spec, live = config.options.target_version, config.common.target
    if spec and live:
        raise ConfigError("give --target-version or --target, not both", "one target release per conversion")
    if spec:
        return target_format(spec)
    if live is None:
        raise ConfigError("no target release given", "give --target-version valkey:8.1 (or --target URL of the "
                          "server that will load the file)")
    from migrate.identity import connect  # a live target only: no redis-py import for a file-to-file conversion

    client, identity = connect(live, config.common.connection, "target")
    client.close()
    return TargetFormat.from_identity(identity)
