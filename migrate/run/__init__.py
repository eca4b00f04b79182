"""`migrate run`: copy the data (live replay, flush-and-reload, native replication, or an online sync until a
cutover). Entry point: run(config)."""

from migrate.run.api import run
from migrate.run.options import CutoverMode, OnIncompatible, RunConfig, RunOptions, Strategy
from migrate.run.result import RunResult

__all__ = ["CutoverMode", "OnIncompatible", "RunConfig", "RunOptions", "RunResult", "Strategy", "run"]
