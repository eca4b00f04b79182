"""`migrate verify`: prove parity between source and target, key by key, and say exactly what differs.

Library entry point: `verify(VerifyConfig(...)) -> VerifyResult`; `render(result, fmt)` for the report.
"""

from migrate.verify.engine import verify
from migrate.verify.model import DbSummary, KeyDiff, Listing, NonKeyDiff, Reason, SampleInfo, VerifyResult
from migrate.verify.options import Level, VerifyConfig, VerifyOptions

__all__ = ["DbSummary", "KeyDiff", "Level", "Listing", "NonKeyDiff", "Reason", "SampleInfo", "VerifyConfig",
           "VerifyOptions", "VerifyResult", "verify"]
