"""`migrate verify`: prove parity between source and target, key by key, and say exactly what differs.

Library entry point: `verify(VerifyConfig(...)) -> VerifyResult`; `render(result, fmt)` for the report.
"""

from migrate.verify.api import verify
from migrate.verify.options import Level, VerifyConfig, VerifyOptions
from migrate.verify.result import DbSummary, KeyDiff, Listing, NonKeyDiff, Reason, SampleInfo, VerifyResult

__all__ = ["DbSummary", "KeyDiff", "Level", "Listing", "NonKeyDiff", "Reason", "SampleInfo", "VerifyConfig",
           "VerifyOptions", "VerifyResult", "verify"]
