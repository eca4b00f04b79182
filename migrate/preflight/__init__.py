"""`migrate preflight`: say exactly what will break before the cutover, and which strategy fits.

Library API: `preflight(PreflightConfig(common, PreflightOptions(...))) -> PreflightResult`; render it with
`migrate.preflight.report.render(result, "human" | "json" | "markdown")`.
"""

from migrate.preflight.api import preflight
from migrate.preflight.options import PreflightConfig, PreflightOptions
from migrate.preflight.result import SCHEMA_VERSION, PreflightResult

__all__ = ["SCHEMA_VERSION", "PreflightConfig", "PreflightOptions", "PreflightResult", "preflight"]
