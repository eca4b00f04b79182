"""`migrate convert`: an RDB file rewritten for another release (the streaming transcoder, migrate.rdb.transcode), for
backups and for seeding a self-hosted target at start-up. Entry point: convert(config)."""

from migrate.convert.api import convert
from migrate.convert.options import ConvertConfig, ConvertOptions
from migrate.convert.result import ConvertResult

__all__ = ["ConvertConfig", "ConvertOptions", "ConvertResult", "convert"]
