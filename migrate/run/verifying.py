"""--verify: `migrate verify` (migrate.verify) on the same servers and key selection, once the copy is done."""

from __future__ import annotations

from typing import Any

from migrate.run.options import RunConfig
from migrate.verify import VerifyConfig, VerifyOptions, VerifyResult, verify
from migrate.verify.report import as_json, render, verdict_line


def verify_after_run(config: RunConfig) -> VerifyResult:
    options = config.options
    checks = VerifyOptions(selection=options.selection, batch_size=options.batch_size).validate()
    common = config.common
    return verify(VerifyConfig(common.require_source(), common.require_target(), checks, common.connection))


def verify_ok(result: Any) -> bool:
    return bool(getattr(result, "ok", True))


def verify_text(result: VerifyResult, fmt: str) -> str:
    return render(result, fmt)


def verify_json(result: VerifyResult) -> dict[str, Any]:
    return as_json(result)


def verify_summary(result: VerifyResult) -> str:
    return verdict_line(result)
