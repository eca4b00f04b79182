"""`migrate verify`: prove parity between source and target, key by key, and say exactly what differs.

Library entry point: `verify(VerifyConfig(...)) -> VerifyResult`; `render(result, fmt)` for the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrate.verify.options import Level, VerifyConfig, VerifyOptions
from migrate.verify.result import DbSummary, KeyDiff, Listing, NonKeyDiff, Reason, SampleInfo, VerifyResult

if TYPE_CHECKING:
    from migrate.verify.api import verify


def __getattr__(name: str) -> Any:
    """`verify` is imported when first used: a run's report imports the result types alone (start-up time)."""
    if name == "verify":
        from migrate.verify.api import verify

        return verify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DbSummary", "KeyDiff", "Level", "Listing", "NonKeyDiff", "Reason", "SampleInfo", "VerifyConfig",
           "VerifyOptions", "VerifyResult", "verify"]
