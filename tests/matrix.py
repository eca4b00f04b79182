"""The server matrix as test parameters: names, roles and pytest marks (select with -m redis / -m valkey)."""

from __future__ import annotations

import pytest

SOURCES = ("redis-6.0", "redis-7.0", "redis-8.0.2", "redis-8.0.6")
TARGETS = ("valkey-8.0", "valkey-8.1", "valkey-9.1")
ALL = SOURCES + TARGETS


def params(names: tuple[str, ...] | list[str]) -> list[object]:
    """pytest.param per server, marked with its product so `-m valkey` or `-k redis-8` select versions."""
    return [pytest.param(n, id=n, marks=getattr(pytest.mark, n.split("-")[0])) for n in names]


def pairs(sources: tuple[str, ...] = SOURCES, targets: tuple[str, ...] = TARGETS) -> list[object]:
    return [pytest.param(s, t, id=f"{s}->{t}", marks=[pytest.mark.redis, pytest.mark.valkey])
            for s in sources for t in targets]
