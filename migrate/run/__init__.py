"""`migrate run`: copy the data (live replay, flush-and-reload, or native replication). Entry point: run(config)."""

from migrate.run.api import run
from migrate.run.options import OnIncompatible, RunConfig, RunOptions, Strategy
from migrate.run.result import RunResult

__all__ = ["OnIncompatible", "RunConfig", "RunOptions", "RunResult", "Strategy", "run"]
