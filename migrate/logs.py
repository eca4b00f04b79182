"""structlog setup: human lines on a terminal, JSON lines with --log-format json; always on stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
SECRET_KEYS = frozenset({"password", "pass", "auth", "secret", "token"})


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: a field named like a secret is never rendered."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "***"
    return event


def configure(log_format: str = "auto", level: str = "info") -> None:
    if log_format == "auto":
        log_format = "human" if sys.stderr.isatty() else "plain"
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=log_format == "human")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )


def _current_stderr(*_: Any) -> structlog.PrintLogger:
    """A logger on whatever sys.stderr is now: a stream swapped and closed later (tests) is never written to."""
    return structlog.PrintLogger(file=sys.stderr)


def get_logger(name: str) -> Any:
    # A program using the library without the CLI still gets its logs on stderr, never on stdout (structlog's default).
    if not structlog.is_configured():
        configure()
    return structlog.get_logger(name)
